"""One service per store: ``<store>/orbit-lite-serve.lock`` held with an OS lock (``flock``) while a service runs.

Two services on one store would both write the same people's collections, and each one's start-up would fail the
other's running teach jobs and empty its uploads in progress; the lock makes the second one stop at once with one
line. The kernel drops the lock when its holder exits however it exits (a crash, ``kill -9``), so a server that died
never blocks the next one and there is nothing to clean up by hand. The file stays in the store (it is ours: the
store folder is), holding the last holder's pid for the message.
"""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path

from filelock import FileLock, Timeout

from orbit_lite.errors import OrbitLiteError

LOCK = "orbit-lite-serve.lock"


def hold_store(root: Path) -> FileLock:
    """The held lock of the store folder ``root`` (which exists); release it when the service stops."""
    path = root / LOCK
    # thread_local=False: the service may stop from another thread than the one that started it
    lock = FileLock(path, blocking=False, thread_local=False, fallback_to_soft=False, preserve_lock_file=True)
    try:
        lock.acquire()
    except Timeout:
        raise OrbitLiteError(
            f"the store {root} is in use by another orbit-lite serve ({_holder(path)}): stop that server first, "
            "or choose another --store"
        ) from None
    except OSError as e:
        raise OrbitLiteError(f"cannot lock the store {root} ({e.strerror or e}); choose another --store") from None
    with suppress(OSError):  # the pid is only for the message a second server prints
        path.write_text(f"{os.getpid()}\n")
    return lock


def _holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        pid = ""
    return f"process {pid}" if pid.isdigit() else "a server that is starting"
