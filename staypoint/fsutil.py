"""Writing a file so that nobody ever sees half of it, or a secret's bytes under the wrong mode.

Shared by every layer that writes files a crash must not tear (keys, certificates, configs,
small state files); it imports nothing of Staypoint's, so any layer may use it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> Path:
    """Write ``data`` to ``path`` via a temp file in the same folder + fsync + rename.

    The temp file has ``mode`` before any byte is written, so a secret is never readable by
    others, not even for an instant; a reader (or a crash) sees the old file or the new one,
    never half of it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
