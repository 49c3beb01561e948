"""One sweep per study folder: a lock file naming its holder.

Two sweeps writing one study folder would interleave Tune experiments,
manifests and reports. :class:`StudyLock` creates ``<study>/sweep.lock``
holding the holder's pid, host and start time. The file is created with
its full content in one step (written beside, then ``os.link``, which fails
when the lock exists), so a reader never sees a half-written lock.

A second sweep is refused with one line naming the holder. A lock whose
holder was on this host and is gone (no such pid, or the pid now belongs
to a process started after the lock) is taken over with a warning; a lock
from another host cannot be checked and is never taken over.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from dataselect.core.errors import UserError

log = logging.getLogger(__name__)

LOCK_NAME = "sweep.lock"


class LockedError(UserError):
    """The study folder is held by another sweep."""


def _pid_alive(pid: int, since: float | None) -> bool:
    """Whether ``pid`` runs on this host and could be the process that wrote the lock."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    if since is None:
        return True
    try:
        import psutil

        # A recycled pid: the process now holding it started after the lock.
        return psutil.Process(pid).create_time() <= since + 1.0
    except Exception:  # noqa: BLE001 - psutil missing or process gone in between
        return True


class StudyLock:
    """Exclusive hold on a study folder for the lifetime of one sweep.

    Use as a context manager; :meth:`acquire` raises :class:`LockedError`
    when another live sweep holds the folder.
    """

    def __init__(self, study_dir: str | Path):
        self.path = Path(study_dir) / LOCK_NAME
        self.info: dict[str, Any] | None = None

    def read(self) -> dict[str, Any] | None:
        """The current holder's record, ``{}`` when unreadable, None when unlocked."""
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}

    def acquire(self) -> StudyLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        now = time.time()
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": now,
                "started_iso": _dt.datetime.fromtimestamp(now).isoformat(timespec="seconds"),
                "argv": sys.argv}
        tmp = self.path.with_name(f".{LOCK_NAME}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(info), encoding="utf-8")
        try:
            for _ in range(3):
                try:
                    os.link(tmp, self.path)
                    self.info = info
                    return self
                except FileExistsError:
                    holder = self.read()
                    if holder is None:
                        continue  # released in between: try again
                    self._take_over_or_refuse(holder)
            raise LockedError(f"study folder {self.path.parent}: could not take the lock {self.path}")
        finally:
            tmp.unlink(missing_ok=True)

    def _take_over_or_refuse(self, holder: dict[str, Any]) -> None:
        pid, host = holder.get("pid"), holder.get("host")
        since = holder.get("started")
        who = (f"pid {pid} on {host}, started {holder.get('started_iso', '?')}" if pid else
               "an unreadable lock")
        if isinstance(pid, int) and host == socket.gethostname() and not _pid_alive(pid, since):
            log.warning("study folder %s: taking over the lock of a sweep that is gone (%s)",
                        self.path.parent, who)
            stale = self.path.with_name(f".{LOCK_NAME}.stale-{os.getpid()}")
            # Rename, not unlink: of two sweeps taking over at once only one
            # moves this lock away; the other's link then fails and it re-reads.
            try:
                os.rename(self.path, stale)
            except FileNotFoundError:
                return
            try:
                moved = json.loads(stale.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                moved = {}
            if (moved.get("pid"), moved.get("started")) != (pid, since):
                # Another sweep took the dead lock over first and we moved its fresh
                # lock: put it back and yield to it.
                with contextlib.suppress(FileExistsError):
                    os.link(stale, self.path)
                stale.unlink(missing_ok=True)
                raise LockedError(f"study folder {self.path.parent} is in use by another sweep "
                                  f"(pid {moved.get('pid')} on {moved.get('host')})")
            stale.unlink(missing_ok=True)
            return
        raise LockedError(f"study folder {self.path.parent} is in use by another sweep ({who}); "
                          f"wait for it, or if no sweep is running there, delete {self.path}")

    def release(self) -> None:
        """Remove the lock if this process still holds it."""
        if self.info is None:
            return
        holder = self.read()
        if holder and holder.get("pid") == self.info["pid"] and holder.get("started") == self.info["started"]:
            self.path.unlink(missing_ok=True)
        self.info = None

    def __enter__(self) -> StudyLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
