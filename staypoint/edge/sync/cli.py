"""``staypoint sync run --config node.toml`` (and the node's backup / restore commands)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from staypoint.edge import backup, sync_store
from staypoint.edge.agent_link import default_socket_path
from staypoint.edge.replica import Replica
from staypoint.edge.service import NodeService
from staypoint.edge.sync import sdnotify
from staypoint.edge.sync.agent import MqttAuthoriser, SyncAgent
from staypoint.edge.sync.config import load_node_config
from staypoint.edge.sync.link import LinkError, LinkServer


def cmd_sync_run(args: argparse.Namespace) -> None:
    """Run the agent until SIGTERM / SIGINT; the kiosk keeps working without it."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = load_node_config(Path(args.config))
    service = NodeService.open(cfg.db, keys_dir=cfg.keys)
    sync = dataclasses.replace(cfg.sync, node_id=service.node_id)
    # A bar for a bootstrap's snapshot when the CLI layer gives one (edge draws nothing itself:
    # ``staypoint`` passes ``progress.CountBar``, which draws only on a terminal).
    make_bar = getattr(args, "make_bar", None)
    bar = make_bar("resync: changes applied", quiet=args.quiet) if make_bar is not None else None
    agent = SyncAgent(service, sync, progress=bar)
    service.authoriser = MqttAuthoriser(agent, timeout=sync.auth_timeout)
    done = threading.Event()

    def stop(signum: int, frame: Any) -> None:
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # The kiosk and the desk's commands reach head office (and learn the link's state)
    # through this socket: they hold no MQTT connection of their own.
    try:
        link = LinkServer(
            agent,
            sync.link_socket or default_socket_path(cfg.db),
            group=sync.link_group,
            allowed_uids=sync.link_uids,
        )
        link.start()
    except (LinkError, OSError) as exc:
        service.close()
        sys.exit(f"error: agent socket: {exc}")
    agent.start()
    print(f"sync agent for {service.node_id} running", file=sys.stderr, flush=True)
    notifier = sdnotify.Notifier()
    notifier.ready()
    period = (sdnotify.watchdog_usec() or 20_000_000) / 2e6  # ping at half the watchdog period
    while not done.wait(min(period, 5.0)):
        # Feed systemd's watchdog only while the agent's loop turns: a hung agent is restarted.
        if time.monotonic() - agent.loop_beat < 30.0:
            notifier.watchdog_ping()
        service.maintenance()  # a passive checkpoint, off the kiosk's path
    notifier.stopping()
    link.stop()
    agent.stop()
    service.close()


def cmd_node_new_epoch(args: argparse.Namespace) -> None:
    """Start a new epoch on a replica (what a restore does after copying the file back)."""
    replica = Replica(Path(args.db))
    try:
        with replica.write():
            epoch = sync_store.start_new_epoch(replica.conn, datetime.now(UTC))
    finally:
        replica.close()
    print(epoch)


def cmd_node_backup(args: argparse.Namespace) -> None:
    """Run Litestream for the node file until SIGTERM (``[backup]`` in node.toml)."""
    try:
        status = backup.run_backup(backup.load_backup_config(Path(args.config)))
    except backup.BackupError as exc:
        sys.exit(f"error: {exc}")
    if status not in (0, -signal.SIGTERM):
        sys.exit(f"error: litestream replicate exited with status {status}")


def cmd_node_restore(args: argparse.Namespace) -> None:
    """Restore the replica from its backup and start a new epoch (prints the epoch)."""
    try:
        cfg = backup.load_backup_config(Path(args.config))
        epoch = backup.restore(cfg, from_url=args.from_url, force=args.force)
    except backup.BackupError as exc:
        sys.exit(f"error: {exc}")
    if args.json:
        print(json.dumps({"db": str(cfg.db), "epoch": epoch}))
    else:
        print(f"restored {cfg.db}; now in epoch {epoch}: start the agent to resync")


def add_backup_commands(node_sub: Any) -> None:
    """Add ``backup`` and ``restore`` under the existing ``staypoint node`` subparsers."""
    p = node_sub.add_parser("backup", help="stream the replica to its backup (Litestream, foreground)")
    p.add_argument("--config", required=True, help="node.toml with a [backup] replica")
    p.set_defaults(fn=cmd_node_backup)
    p = node_sub.add_parser("restore", help="restore the replica from its backup and start a new epoch")
    p.add_argument("--config", required=True, help="node.toml with a [backup] replica")
    p.add_argument("--from", dest="from_url", help="restore from this replica URL or path instead")
    p.add_argument("--force", action="store_true", help="replace an existing replica (services stopped)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_node_restore)


def register(sub: Any, make_bar: Callable[..., Callable[[int, bool], None]] | None = None) -> None:
    """Add ``sync run`` to the top-level subparsers; ``make_bar(description, quiet=)`` draws the
    resync's progress (the CLI layer's ``staypoint.progress.CountBar``)."""
    sync = sub.add_parser("sync", help="the node's sync agent").add_subparsers(dest="sync_cmd", required=True)
    p = sync.add_parser("run", help="run the sync agent (MQTT to head office)")
    p.add_argument("--config", required=True, help="node.toml")
    p.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="no progress bar for a resync or bootstrap snapshot (none is drawn anyway off a terminal)",
    )
    p.set_defaults(fn=cmd_sync_run, make_bar=make_bar)
    p = sync.add_parser("new-epoch", help="start a new epoch (after restoring the replica from a backup)")
    p.add_argument("--db", required=True)
    p.set_defaults(fn=cmd_node_new_epoch)


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m staypoint.edge.sync.cli sync run --config ...``)."""
    parser = argparse.ArgumentParser(prog="staypoint")
    sub = parser.add_subparsers(dest="cmd", required=True)
    register(sub)
    node = sub.add_parser("node", help="the node's backup and restore")
    add_backup_commands(node.add_subparsers(dest="node_cmd", required=True))
    args = parser.parse_args(argv)
    args.fn(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
