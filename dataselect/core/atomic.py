"""Atomic file writes: a reader sees the old file or the new one, never a part.

Every cache file is written under a temporary name in its own folder and
moved into place with ``os.replace`` (atomic on POSIX, also on NFS for one
client); a write that fails removes its temporary file, so a crash or a full
disk leaves no half-written file under the final name and no litter beside it.
Databases do the same (write-ahead, then rename): nothing is overwritten in place.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text"]


def _tmp_name(path: Path) -> Path:
    # pid + random: two processes (or threads) writing one path never share a temp file.
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object], *,
                 fsync: bool = False) -> Path:
    """Call ``write(tmp)`` to fill a temporary file beside ``path``, then rename it onto ``path``.

    ``write`` receives the temporary path and must create that file (``df.to_parquet(tmp)``,
    ``np.save`` through an open handle...). ``fsync``: flush the file to disk before the
    rename (for caches that must survive a power cut, not only a crash).
    """
    path = Path(path)
    tmp = _tmp_name(path)
    try:
        write(tmp)
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, fsync: bool = False) -> Path:
    """``data`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), fsync=fsync)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, fsync: bool = False) -> Path:
    """``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), fsync=fsync)
