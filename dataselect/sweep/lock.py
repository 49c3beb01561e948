"""One sweep per study folder: a lock file naming its holder, kept alive by a heartbeat.

Two sweeps writing one study folder would interleave Tune experiments,
manifests and reports. :class:`StudyLock` creates ``<study>/sweep.lock``
holding the holder's pid, host, start time, a random token and its lease
(``lease_s``). The file is created with its full content in one step
(written beside, then ``os.link``, which fails when the lock exists), so a
reader never sees a half-written lock.

The holder's heartbeat thread touches the lock every ``lease_s / 6`` seconds.
Its age is judged by the file system's own clock (the lock's mtime against
the mtime of a file just written beside it), so hosts whose clocks disagree
still agree on it. A second sweep is refused with one line naming the holder,
unless the holder is gone:

* on this host: its pid is gone, or now belongs to a process started after
  the lock (taken over at once);
* on another host (every KubeRay RayJob runs on a new head pod): its
  heartbeat is older than its lease, so the sweep that held it stopped
  (taken over once the lease has run out). A lock written before leases
  existed (no ``lease_s``) from another host is never taken over.

A takeover is done under a second, exclusive file (``.sweep.lock.takeover``,
created with ``os.link``): only its holder may remove a stale lock, and only
after reading it again and finding the same stale record, so of two sweeps
taking over at once exactly one gets the lock. A takeover file left by a
sweep that died in those few milliseconds is removed after
:data:`TAKEOVER_STALE_S`. A holder that finds its lock taken over (it stalled
past its lease) logs an error once.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from dataselect.core.errors import UserError

log = logging.getLogger(__name__)

LOCK_NAME = "sweep.lock"
LEASE_S = 120.0
"""Default lease: a lock whose heartbeat is older is taken over from any host."""
TAKEOVER_STALE_S = 30.0
"""A takeover file older than this was left by a sweep that died while taking over."""


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


def _fs_now(probe: Path) -> float:
    """The file system's clock: the mtime ``probe`` (a file of ours beside the lock) gets now."""
    os.utime(probe, None)
    return probe.stat().st_mtime


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two lock records are one holder's (token where both have one)."""
    return (a.get("token"), a.get("pid"), a.get("started")) == (b.get("token"), b.get("pid"), b.get("started"))


class StudyLock:
    """Exclusive hold on a study folder for the lifetime of one sweep.

    Use as a context manager; :meth:`acquire` raises :class:`LockedError`
    when another live sweep holds the folder. ``lease_s``: how long a lock
    of this holder outlives its last heartbeat (for a sweep on another host).
    """

    def __init__(self, study_dir: str | Path, *, lease_s: float = LEASE_S):
        if not lease_s > 0:
            raise ValueError(f"lease_s must be > 0; got {lease_s!r}")
        self.path = Path(study_dir) / LOCK_NAME
        self.lease_s = float(lease_s)
        self.info: dict[str, Any] | None = None
        self.lost = False
        """Set when the heartbeat found the lock taken over by another sweep."""
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    @property
    def _takeover(self) -> Path:
        return self.path.with_name(f".{LOCK_NAME}.takeover")

    def read(self) -> dict[str, Any] | None:
        """The current holder's record, ``{}`` when unreadable, None when unlocked."""
        try:
            got = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}
        return got if isinstance(got, dict) else {}

    def acquire(self) -> StudyLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        now = time.time()
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": now,
                "started_iso": _dt.datetime.fromtimestamp(now).isoformat(timespec="seconds"),
                "argv": sys.argv, "token": uuid.uuid4().hex, "lease_s": self.lease_s}
        tmp = self.path.with_name(f".{LOCK_NAME}.{os.getpid()}-{info['token'][:8]}.tmp")
        try:
            tmp.write_text(json.dumps(info), encoding="utf-8")
            for _ in range(5):
                try:
                    os.link(tmp, self.path)
                except FileExistsError:
                    holder = self.read()
                    if holder is not None:
                        self._take_over_or_refuse(holder, tmp)
                    continue  # released or removed as stale in between: try again
                self.info = info
                self._start_heartbeat()
                return self
            raise LockedError(f"study folder {self.path.parent}: could not take the lock {self.path} "
                              "(other sweeps keep taking it); try again")
        finally:
            tmp.unlink(missing_ok=True)

    # ------------------------------------------------------------------ takeover
    def _stale_reason(self, holder: dict[str, Any], tmp: Path) -> str | None:
        """Why ``holder`` is gone (its lock may be taken over), or None; raises when it is not."""
        pid, host, since = holder.get("pid"), holder.get("host"), holder.get("started")
        who = (f"pid {pid} on {host}, started {holder.get('started_iso', '?')}" if pid else
               "an unreadable lock")
        delete = f"if no sweep is running there, delete {self.path}"
        if isinstance(pid, int) and host == socket.gethostname():
            if _pid_alive(pid, since):
                raise LockedError(f"study folder {self.path.parent} is in use by another sweep ({who}); "
                                  f"wait for it, or {delete}")
            return f"a sweep that is gone ({who})"
        lease = holder.get("lease_s") if holder else LEASE_S
        if not isinstance(lease, int | float) or isinstance(lease, bool):
            # Written before leases existed: nothing says when its sweep stopped.
            raise LockedError(f"study folder {self.path.parent} is in use by another sweep ({who}); "
                              f"wait for it, or {delete}")
        try:
            age = _fs_now(tmp) - self.path.stat().st_mtime
        except FileNotFoundError:
            return None  # released in between
        if age <= lease:
            raise LockedError(
                f"study folder {self.path.parent} is in use by another sweep ({who}; last heartbeat "
                f"{max(age, 0):.0f} s ago); a sweep that stopped is taken over once its heartbeat is "
                f"{lease:.0f} s old: wait for it, or rerun in {lease - max(age, 0) + 1:.0f} s")
        return f"a sweep whose heartbeat stopped {age:.0f} s ago, past its {lease:.0f} s lease ({who})"

    def _take_over_or_refuse(self, holder: dict[str, Any], tmp: Path) -> None:
        reason = self._stale_reason(holder, tmp)
        if reason is None:
            return
        mutex = self._takeover
        try:
            os.link(tmp, mutex)
        except FileExistsError:
            # Another sweep is taking over right now (or died doing so long ago).
            with contextlib.suppress(FileNotFoundError):
                if _fs_now(tmp) - mutex.stat().st_mtime > TAKEOVER_STALE_S:
                    mutex.unlink()
            time.sleep(0.05)
            return
        try:
            # Under the takeover file: read again, and remove only the record judged stale.
            again = self.read()
            if again is None or not _same(again, holder) or self._stale_reason(again, tmp) is None:
                return
            log.warning("study folder %s: taking over the lock of %s", self.path.parent, reason)
            self.path.unlink(missing_ok=True)
        finally:
            mutex.unlink(missing_ok=True)

    # ------------------------------------------------------------------ heartbeat
    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self.lost = False
        self._beat = threading.Thread(target=self._heartbeat, name="dataselect-sweep-lock", daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.lease_s / 6):
            if not self.beat():
                return

    def beat(self) -> bool:
        """Touch the lock if this sweep still holds it; False (and one error) when it does not."""
        if self.info is None:
            return False
        holder = self.read()
        if holder is not None and _same(holder, self.info):
            try:
                os.utime(self.path, None)  # the file system's time: what takers compare with
            except FileNotFoundError:
                holder = None
            except OSError as err:
                log.warning("study folder %s: lock heartbeat failed (%s); trying again", self.path.parent, err)
                return True
            else:
                return True
        if not self.lost:
            self.lost = True
            by = (f"pid {holder.get('pid')} on {holder.get('host')}" if holder else "nobody (it was removed)")
            log.error("study folder %s: this sweep's lock %s is now held by %s: another sweep may be "
                      "writing the study folder too", self.path.parent, self.path, by)
        return False

    def release(self) -> None:
        """Stop the heartbeat and remove the lock if this process still holds it."""
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
            self._beat = None
        if self.info is None:
            return
        holder = self.read()
        if holder and _same(holder, self.info):
            self.path.unlink(missing_ok=True)
        self.info = None

    def __enter__(self) -> StudyLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
