"""Rules for replacing output: a command replaces only what orbit-lite itself wrote.

``--overwrite`` used to mean "delete whatever is there"; pointed at a data folder it wiped the data. Now every command
asks this module before it replaces a folder or a file. A results folder is recognized by what it holds (only the
files ``evaluate`` writes, metrics.json among them); a file by its content (an orbit-lite checkpoint of the right kind,
an ONNX model, a CSV of per-frame predictions). Anything else is refused, with or without ``--overwrite``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from orbit_lite.errors import OrbitLiteError

RESULTS_MARKER = ".orbit-lite-results"  # written into every results folder; older folders are known by their files
RESULTS_FILES = frozenset({"results.json", "metrics.json", "per_video.csv", "per_user.csv", "per_object.csv",
                           "config.yaml", "per_user_accuracy.png", "confusion_matrices.png",
                           "frames_to_recognition.png", RESULTS_MARKER})  # fmt: skip


def is_results_folder(path: Path) -> bool:
    """True when ``path`` is a folder holding only files that ``evaluate`` writes (metrics.json among them)."""
    if not path.is_dir():
        return False
    names = {p.name for p in path.iterdir()}
    return "metrics.json" in names and names <= RESULTS_FILES and all((path / n).is_file() for n in names)


def check_results_out(out: Path, overwrite: bool) -> None:
    """Refuse ``out`` unless it is absent, empty, or (with ``overwrite``) an orbit-lite results folder."""
    if out.exists() and not out.is_dir():
        raise OrbitLiteError(f"{out} is a file; --out must be a folder (choose a new --out)")
    if not out.exists() or not any(out.iterdir()):
        return
    if not is_results_folder(out):
        raise OrbitLiteError(
            f"{out} holds files that orbit-lite did not write as evaluation results; it is never replaced, "
            "even with --overwrite: choose a new or empty --out"
        )
    if not overwrite:
        raise OrbitLiteError(f"{out} already holds results; pass --overwrite to replace them or choose a new --out")


RUN_FILES = frozenset({"config.yaml", "metrics.jsonl", "checkpoints", "curves.png", "tensorboard"})


def check_run_out(run_dir: Path) -> None:
    """A new training run goes into a new or empty folder, or one holding only an unfinished run's files."""
    if run_dir.exists() and not run_dir.is_dir():
        raise OrbitLiteError(f"{run_dir} is a file; --out must be a folder")
    if run_dir.is_dir() and not {p.name for p in run_dir.iterdir()} <= RUN_FILES:
        raise OrbitLiteError(
            f"{run_dir} holds files that are not an orbit-lite training run; choose a new or empty --out"
        )


def check_file_out(
    path: Path, overwrite: bool, ours: Callable[[Path], bool], what: str, has_overwrite_flag: bool = True
) -> None:
    """Refuse to replace ``path`` unless (with ``overwrite``) ``ours(path)`` says orbit-lite wrote it as ``what``."""
    if path.is_dir():
        raise OrbitLiteError(f"{path} is a folder; it must name a file")
    if not path.exists():
        return
    if not ours(path):
        never = "it is never replaced, even with --overwrite" if has_overwrite_flag else "it is never replaced"
        raise OrbitLiteError(f"{path} is not {what} written by orbit-lite; {never}: choose another file name")
    if not overwrite:
        raise OrbitLiteError(f"{path} already exists; pass --overwrite to replace it")


def is_orbit_lite_checkpoint(kind: str) -> Callable[[Path], bool]:
    """A recognizer of orbit-lite checkpoint files of ``kind`` (read weights-only: nothing is executed)."""

    def check(path: Path) -> bool:
        from orbit_lite.checkpoint import load_checkpoint

        try:
            load_checkpoint(path, kind)
        except OrbitLiteError:
            return False
        return True

    return check


def is_onnx_file(path: Path) -> bool:
    """An ONNX model written by ``orbit-lite export``: exported from PyTorch with its inputs and outputs (frames in,
    logits and probabilities out); any other ONNX model, from PyTorch or not, is the user's and is never replaced."""
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # not protobuf, or onnx missing: either way not provably ours
        return False
    if "orbit_lite" in {p.key for p in model.metadata_props}:
        return True
    inputs = [i.name for i in model.graph.input]
    outputs = [o.name for o in model.graph.output]
    return model.producer_name == "pytorch" and inputs == ["frames"] and outputs == ["logits", "probabilities"]


def is_predictions_csv(path: Path) -> bool:
    """A per-frame predictions CSV written by ``orbit-lite recognize --csv`` (known by its header)."""
    try:
        with open(path, encoding="utf-8") as f:
            header = f.readline().strip()
    except (OSError, UnicodeDecodeError):
        return False
    return header.startswith("input,frame,")


PNG_SOFTWARE = "orbit-lite"  # the Software text chunk of every PNG orbit-lite writes starts with this
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def is_orbit_lite_png(path: Path) -> bool:
    """A PNG written by orbit-lite: its Software text chunk (before the image data) names orbit-lite."""
    try:
        with open(path, "rb") as f:
            if f.read(8) != _PNG_SIGNATURE:
                return False
            while True:
                head = f.read(8)
                if len(head) < 8:
                    return False
                size, kind = int.from_bytes(head[:4], "big"), head[4:]
                if kind in (b"IDAT", b"IEND") or size > 2**20:  # text chunks come first; past them, none is ours
                    return False
                data = f.read(size + 4)[:size]  # the chunk and its CRC
                if kind == b"tEXt" and data.startswith(b"Software\x00" + PNG_SOFTWARE.encode()):
                    return True
    except OSError:
        return False


# An MP4 may end with a top-level "free" box that players skip; orbit-lite ends its annotated videos with this one.
VIDEO_MARK = b"orbit-lite annotated video"
VIDEO_MARK_BOX = (8 + len(VIDEO_MARK)).to_bytes(4, "big") + b"free" + VIDEO_MARK


def is_annotated_video(path: Path) -> bool:
    """A video written by ``orbit-lite recognize --annotate`` (it ends with orbit-lite's free box)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() < len(VIDEO_MARK_BOX):
                return False
            f.seek(-len(VIDEO_MARK_BOX), os.SEEK_END)
            return f.read() == VIDEO_MARK_BOX
    except OSError:
        return False


def writable_parent(path: Path) -> None:
    """Fail now, not after hours of work, when ``path``'s folder cannot be created or written."""
    probe = path.parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise OrbitLiteError(f"{probe} is a file, so {path} cannot be written there: choose another --out")
    try:  # create a file there: permission bits say nothing to root, nor about a read-only file system or /proc
        with tempfile.NamedTemporaryFile(prefix=".orbit-lite-probe.", dir=probe):
            pass
    except OSError as e:
        raise OrbitLiteError(
            f"{probe} is not writable ({e.strerror or e}; permissions or a read-only file system): choose another --out"
        ) from None


_MIN_FREE_BYTES = 16 * 2**20  # room for a results folder's files: less than this and the write at the end would fail


@contextmanager
def claim_out(out: Path) -> Iterator[Path]:
    """Hold ``<out>.lock`` (created exclusively, holding our pid) while a command works towards writing ``out``.

    Two runs into the same ``out`` would otherwise both work for hours and the later rename would silently replace
    the earlier results; the lock makes the second one stop at once. Creating the lock also proves, before any work,
    that ``out``'s folder can be written (a read-only file system, a full disk).
    """
    out = Path(os.path.abspath(out))  # "." and ".." have no name to put a lock next to
    if not out.name:
        raise OrbitLiteError(f"{out} cannot be an output folder: choose a new --out")
    lock = out.with_name(out.name + ".lock")
    writable_parent(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except FileExistsError:
        holder = _lock_holder(lock)
        raise OrbitLiteError(
            f"{out} is being written by another orbit-lite run ({holder}); wait for it, or if no such run is going "
            f"on, remove {lock}"
        ) from None
    except OSError as e:
        raise OrbitLiteError(f"cannot write next to {out} ({e.strerror or e}): choose another --out") from None
    try:
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")
            f.flush()
            os.fsync(f.fileno())
        if shutil.disk_usage(out.parent).free < _MIN_FREE_BYTES:
            raise OSError(28, "no space left on device")
    except OSError as e:
        lock.unlink(missing_ok=True)
        raise OrbitLiteError(f"cannot write next to {out} ({e.strerror or e}): choose another --out") from None
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)


def _lock_holder(lock: Path) -> str:
    try:
        pid = int(lock.read_text().strip())
    except (OSError, ValueError):
        return "its lock file holds no process id"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"process {pid}, which is no longer running: a stale lock"
    except PermissionError:
        pass
    return f"process {pid}"
