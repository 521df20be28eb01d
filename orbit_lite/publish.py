"""Publishing a file or a folder all at once: written under a fresh hidden name beside the target, flushed, given the
mode ``open``/``mkdir`` would give, and renamed into place, so a crash or a full disk never leaves a half-written
output. A failed write is one line naming the target, the space it needed and had, and that nothing was changed.

Every output of orbit-lite is published through :func:`publish_file` or :func:`publish_folder` (checkpoints and
personal recognizers, results folders, ONNX files, annotated videos, synthetic trees, CSVs and plots).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from orbit_lite.errors import OrbitLiteError


def umask_mode(base: int) -> int:
    """``base`` (0o666 for files, 0o777 for folders) less the process umask: the mode ``open``/``mkdir`` would give.

    Temporary files and folders are created private (0600/0700); what is renamed into place must get the usual mode.
    """
    mask = os.umask(0)  # the umask can only be read by setting it
    os.umask(mask)
    return base & ~mask


def _megabytes(n: int) -> str:
    if n >= 2**30:
        return f"{n / 2**30:.1f} GB"
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 1024:.0f} KB"


def write_failure(what: Path, error: OSError, needed: int | None = None, more_than: bool = False) -> OrbitLiteError:
    """A failed write (full disk, read-only file system, no permission) as one line: what could not be written,
    the space it needed and had, and that nothing was changed."""
    where = what if what.exists() and what.is_dir() else what.parent
    while not where.exists() and where != where.parent:
        where = where.parent
    space, more = "", "more than " if more_than else ""
    if needed is not None:
        try:
            space = f"; it needs {more}{_megabytes(needed)}, {_megabytes(shutil.disk_usage(where).free)} free"
        except OSError:
            space = f"; it needs {more}{_megabytes(needed)}"
    return OrbitLiteError(
        f"cannot write {what} ({error.strerror or error}{space}); nothing was changed there: free "
        "some space or choose another location"
    )


def _size(path: Path | None) -> int | None:
    """How much the staged file holds (what a failed write needed at least)."""
    return path.stat().st_size if path is not None and path.exists() else None


@contextmanager
def publish_file(
    path: Path | str, suffix: str = ".tmp", needed: Callable[[Path | None], int | None] = _size
) -> Iterator[Path]:
    """Yield a fresh empty file beside ``path`` to write; when the block ends it is flushed to disk and renamed over
    ``path``. On any error it is removed, and an ``OSError`` (the block's own writes included) becomes
    :func:`write_failure` with ``needed(staged file or None)`` bytes."""
    path = Path(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        tmp.chmod(umask_mode(0o666))
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise write_failure(path, e, needed(tmp)) from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


@contextmanager
def publish_folder(
    path: Path,
    install: Callable[[Path, Path], None] | None = None,
    name: tuple[str, str] = (".", ".partial"),
    needed: Callable[[Path | None], int] | None = None,
) -> Iterator[Path]:
    """Yield a fresh empty folder beside ``path`` (named ``.<path.name><name[0]>XXXX<name[1]>``) to fill; when the
    block ends it gets the usual mode and ``install(folder, path)`` puts it in place (default: a rename). On any
    error it is removed, and an ``OSError`` becomes :func:`write_failure` with ``needed(folder)`` bytes (default:
    more than what was written)."""
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}{name[0]}", suffix=name[1], dir=path.parent))
        yield tmp
        tmp.chmod(umask_mode(0o777))
        (install or Path.rename)(tmp, path)
        tmp = None
    except OSError as e:
        if needed is not None:
            raise write_failure(path, e, needed(tmp)) from None
        if tmp is None:
            raise write_failure(path, e) from None
        written = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file())
        raise write_failure(path, e, written, more_than=True) from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_bytes(path: Path | str, data: bytes | memoryview) -> None:
    """Write ``data`` to ``path`` all at once or not at all."""
    with publish_file(path, needed=lambda _: len(data)) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write ``text`` to ``path`` all at once or not at all."""
    atomic_write_bytes(path, text.encode())
