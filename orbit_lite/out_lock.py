"""One writer per output: ``<out>.lock`` held with an OS lock (``flock``) while a command works towards ``out``.

Two runs into the same ``out`` would otherwise both work for hours and the later rename would silently replace the
earlier results; the lock makes the second one stop at once with one line. The kernel drops the lock when its holder
exits however it exits (a crash, ``kill -9``, a lost session), so a lock can never go stale and there is nothing to
clean up by hand.

The lock file is orbit-lite's only when it holds the tag line below. A file of that name without it (a user's own
notes, another tool's lock) is refused and never written to or removed. While held, the file also names the holder's
pid, for the message the second run prints. The holder removes the file before it lets go of the lock; a run that
was killed leaves it behind, and the next run takes it over.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from filelock import FileLock, Timeout

from orbit_lite.errors import OrbitLiteError
from orbit_lite.outputs import writable_parent

_TAG = "orbit-lite lock"
_MIN_FREE_BYTES = 16 * 2**20  # room for a results folder's files: less than this and the write at the end would fail


def _record(pid: int) -> bytes:
    # Fixed width, tag first: rewriting the pid in place never shows a reader a file without the tag.
    return f"{_TAG}\n{pid:>10}\n".encode()


def _is_ours(text: str) -> bool:
    return _TAG in text.splitlines()[:2]  # earlier versions wrote "<pid>\n<tag>\n"


def _holder(text: str) -> str:
    pids = [line.strip() for line in text.splitlines()[:2] if line.strip().isdigit()]
    return f"process {pids[0]}" if pids else "a run that is starting"


@contextmanager
def claim_out(out: Path) -> Iterator[Path]:
    """Hold ``<out>.lock`` while the block works towards writing ``out``; yields the lock file's path.

    Taking the lock also proves, before any work, that ``out``'s folder can be written (a read-only file system, a
    full disk).
    """
    out = Path(os.path.abspath(out))  # "." and ".." have no name to put a lock next to
    if not out.name:
        raise OrbitLiteError(f"{out} cannot be an output folder: choose a new --out")
    path = out.with_name(out.name + ".lock")
    writable_parent(out)
    cannot = f"cannot write next to {out} ({{}}): choose another --out"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        seen = _place(path)
        borrowed: list[int] = []
        lock = FileLock(path, blocking=False, fallback_to_soft=False, on_acquired=borrowed.append)
        lock.acquire()
    except Timeout:
        raise OrbitLiteError(
            f"{out} is being written by another orbit-lite run ({_holder(_read(path))}); wait for it to finish, or "
            "choose another --out"
        ) from None
    except OSError as e:
        raise OrbitLiteError(cannot.format(e.strerror or e)) from None
    try:
        fd = borrowed[-1]  # filelock's descriptor, valid while held
        held = os.fstat(fd)
        text = os.pread(fd, 4096, 0).decode(errors="replace")
        # Empty and not the file seen before locking: it was made in between (the last holder removed its file and
        # filelock made a new one for us). Anything else without the tag is someone else's.
        if not _is_ours(text) and (text or os.path.samestat(held, seen)):
            raise OrbitLiteError(
                f"{path} exists and was not written by orbit-lite; it is never removed: choose another --out"
            )
        try:
            record = _record(os.getpid())
            os.pwrite(fd, record, 0)
            os.ftruncate(fd, len(record))
            if shutil.disk_usage(out.parent).free < _MIN_FREE_BYTES:
                raise OSError(28, "no space left on device")
        except OSError as e:
            _remove_if_held(path, held)
            raise OrbitLiteError(cannot.format(e.strerror or e)) from None
        try:
            yield path
        finally:
            _remove_if_held(path, held)
    finally:
        lock.release()


def _place(path: Path) -> os.stat_result:
    """Make ``path`` holding the tag, all at once (written aside, then hard-linked in), unless it exists; its stat."""
    fd, aside = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_record(os.getpid()))
        with suppress(FileExistsError):  # link never replaces: a file already there is left as it is
            os.link(aside, path)
    finally:
        os.unlink(aside)
    return os.lstat(path)


def _remove_if_held(path: Path, held: os.stat_result) -> None:
    """Remove the lock file while still holding its lock, if it is the file we hold: a run that opened it in the
    meantime finds its inode gone once it gets the lock, and filelock then refuses it (it says busy, which was true)."""
    with suppress(OSError):  # left behind, it harms no one: the next run takes it over
        if os.path.samestat(os.lstat(path), held):
            path.unlink()


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
