"""Rules for replacing output: a command replaces or continues only what carries orbit-lite's own proof.

A name is no proof: a user's own ``config.yaml`` or ``metrics.json`` looks like ours. So every folder orbit-lite
writes carries a marker file holding a random id, written by orbit-lite alone:

- a results folder (``evaluate --out``) holds ``.orbit-lite-results``: the id and the SHA-256 of every file written
  beside it. It is ours only while the folder holds exactly those files with exactly that content;
- a training run (``train --out``) holds ``.orbit-lite-run``: the run's id, which its checkpoints carry too. Only a
  marked run is continued or restarted, and only with checkpoints of the same id.

Folders without the proof are refused whatever they hold, and ``--overwrite`` never widens that. Files are known by
their content (an orbit-lite checkpoint of the right kind, an ONNX model carrying orbit-lite's metadata, a CSV with
recognize's exact header). Temporary and trash names are always fresh (``mkdtemp``/``mkstemp`` beside the target).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from orbit_lite.errors import OrbitLiteError

RESULTS_MARKER = ".orbit-lite-results"
RUN_MARKER = ".orbit-lite-run"
_RESULTS_KIND = "evaluation results"
_RUN_KIND = "training run"


def new_id() -> str:
    """A random id for a run or a results folder: the proof that a folder is orbit-lite's own."""
    return secrets.token_hex(16)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_marker(path: Path, kind: str) -> dict | None:
    """The marker's content when it is a marker orbit-lite wrote for ``kind``; None otherwise."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("orbit_lite") != kind or not isinstance(record.get("id"), str):
        return None
    return record


def results_marker(folder: Path) -> str:
    """The marker's text for a finished results folder: a fresh id and the digest of every file in ``folder``."""
    files = {p.name: sha256(p) for p in sorted(folder.iterdir()) if p.name != RESULTS_MARKER}
    return json.dumps({"orbit_lite": _RESULTS_KIND, "id": new_id(), "files": files}, indent=1) + "\n"


def results_ownership(path: Path) -> str | None:
    """None when ``path`` is a results folder exactly as orbit-lite wrote it; otherwise why it is not."""
    marker = _read_marker(path / RESULTS_MARKER, _RESULTS_KIND)
    if marker is None or not isinstance(marker.get("files"), dict):
        return "it has no orbit-lite results marker"
    listed = marker["files"]
    present = {p.name for p in path.iterdir()} - {RESULTS_MARKER}
    extra = sorted(present - set(listed))
    if extra:
        return f"it holds {extra[0]}, which orbit-lite did not write there"
    missing = sorted(set(listed) - present)
    if missing:
        return f"{missing[0]}, which orbit-lite wrote there, is gone"
    for name, digest in listed.items():
        if not (path / name).is_file() or sha256(path / name) != digest:
            return f"{name} was changed after orbit-lite wrote it"
    return None


def is_results_folder(path: Path) -> bool:
    """True when ``path`` is a results folder that orbit-lite wrote and nobody changed since."""
    return path.is_dir() and results_ownership(path) is None


def check_results_out(out: Path, overwrite: bool) -> None:
    """Refuse ``out`` unless it is absent, empty, or (with ``overwrite``) results orbit-lite wrote, unchanged."""
    if out.exists() and not out.is_dir():
        raise OrbitLiteError(f"{out} is a file; --out must be a folder (choose a new --out)")
    if not out.exists() or not any(out.iterdir()):
        return
    why = results_ownership(out)
    if why is not None:
        legacy = (out / RESULTS_MARKER).is_file() or (out / "metrics.json").is_file()
        fix = (
            f"if it holds results of an older orbit-lite, move it aside (mv {out} {out}.old) or choose a new --out"
            if legacy
            else "choose a new or empty --out"
        )
        raise OrbitLiteError(
            f"{out} is not a results folder orbit-lite can prove it wrote ({why}); it is never "
            f"replaced, even with --overwrite: {fix}"
        )
    if not overwrite:
        raise OrbitLiteError(f"{out} already holds results; pass --overwrite to replace them or choose a new --out")


def refuse_current_folder(out: Path) -> None:
    """A results folder is replaced by renaming; the folder a shell stands in (or one above it) cannot be, or the
    shell is left in a deleted folder. It is written in place only when empty."""
    here = Path.cwd().resolve()
    target = out.resolve()
    if (target == here or target in here.parents) and out.is_dir() and any(out.iterdir()):
        raise OrbitLiteError(
            f"--out {out} is the current folder (or holds it) and is not empty; orbit-lite writes "
            "results into a new or empty folder: choose one, e.g. --out results"
        )


def install_folder(tmp: Path, out: Path) -> None:
    """Put the finished folder ``tmp`` at ``out``: renamed into place when ``out`` is absent; its files moved in
    (the marker last) when ``out`` is an empty folder; swapped when ``out`` holds results proven ours, the old ones
    going through a fresh trash folder. The caller has checked ``out``."""
    if not out.exists():
        tmp.rename(out)
        return
    if not any(out.iterdir()):  # e.g. `--out .`: the folder stays (a shell may stand in it)
        names = sorted(p.name for p in tmp.iterdir())
        for name in [n for n in names if n != RESULTS_MARKER] + [n for n in names if n == RESULTS_MARKER]:
            (tmp / name).rename(out / name)
        tmp.rmdir()
        return
    why = results_ownership(out)  # checked again right before: anything added since the start is never trashed
    if why is not None:
        raise OrbitLiteError(f"{out} changed while results were computed ({why}); nothing was replaced")
    trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
    out.rename(trash / out.name)
    try:
        tmp.rename(out)
    except BaseException:
        (trash / out.name).rename(out)  # put the old results back: nothing changed
        trash.rmdir()
        raise
    shutil.rmtree(trash, ignore_errors=True)


RUN_FILES = frozenset({RUN_MARKER, "config.yaml", "metrics.jsonl", "checkpoints", "curves.png", "tensorboard"})


def run_id_of(run_dir: Path) -> str | None:
    """The id in ``run_dir``'s run marker, or None when orbit-lite did not mark it as one of its runs."""
    marker = _read_marker(run_dir / RUN_MARKER, _RUN_KIND)
    return None if marker is None else marker["id"]


def check_run_out(run_dir: Path, overwrite: bool = False) -> str | None:
    """A new training run goes into a new or empty folder, or into a run orbit-lite marked as its own that holds
    only a run's files. Returns the run's id when the folder is such a run (its id is kept), else None.
    ``overwrite`` (``train --overwrite``) changes only the messages: it never widens what is accepted."""
    if run_dir.exists() and not run_dir.is_dir():
        raise OrbitLiteError(f"{run_dir} is a file; --out must be a folder")
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return None
    never = "it is never written into or replaced, even with --overwrite" if overwrite else "it is never written into"
    run_id = run_id_of(run_dir)
    if run_id is None:
        raise OrbitLiteError(
            f"{run_dir} is not an orbit-lite training run (no {RUN_MARKER} marker, whatever files it "
            f"holds); {never}: choose a new or empty --out"
        )
    foreign = sorted({p.name for p in run_dir.iterdir()} - RUN_FILES)
    checkpoints = run_dir / "checkpoints"
    refuse_links_in_run(run_dir)
    if checkpoints.is_dir():  # last.pt, best.pt and the temporaries of their atomic writes (after a kill)
        foreign += [
            f"checkpoints/{p.name}"
            for p in sorted(checkpoints.iterdir())
            if not re.fullmatch(r"(last|best)\.pt|\.(last|best)\.pt\..+\.tmp", p.name)
        ]
    if foreign:
        raise OrbitLiteError(
            f"{run_dir} holds {foreign[0]}, which is not part of an orbit-lite training run; {never}: choose a new "
            "or empty --out"
        )
    return run_id


_RUN_FOLDERS = frozenset({"checkpoints", "tensorboard"})


def refuse_links_in_run(run_dir: Path) -> None:
    """A run's outputs are written into its own folders only, never through a link the user put there (their
    ``best.pt`` or log would be replaced) nor over a file where a run keeps a folder (or the reverse)."""
    entries = [p for p in run_dir.iterdir() if p.name in RUN_FILES]
    if (run_dir / "checkpoints").is_dir() and not (run_dir / "checkpoints").is_symlink():
        entries += list((run_dir / "checkpoints").iterdir())
    for entry in entries:
        name = entry.relative_to(run_dir)
        if entry.is_symlink():
            raise OrbitLiteError(f"{run_dir} holds {name}, a symbolic link; a run writes only into files and folders "
                                 "of its own, never through a link: remove the link or choose a new --out")  # fmt: skip
        folder = entry.name in _RUN_FOLDERS and entry.parent == run_dir
        if folder != entry.is_dir() or not (entry.is_dir() or entry.is_file()):
            kind = "a folder" if folder else "a file"
            raise OrbitLiteError(f"{run_dir} holds {name}, which is not {kind} as a run's {name} is; it is never "
                                 "written over: move it aside or choose a new --out")  # fmt: skip


def mark_run(run_dir: Path, run_id: str) -> None:
    """Write ``run_dir``'s marker (before any other file of the run)."""
    from orbit_lite.publish import atomic_write_text

    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / RUN_MARKER, json.dumps({"orbit_lite": _RUN_KIND, "id": run_id}) + "\n")


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


ONNX_MARKER = "orbit_lite_export_id"  # metadata key that `orbit-lite export` writes, with a random id


def is_onnx_file(path: Path) -> bool:
    """An ONNX model written by ``orbit-lite export`` (it carries orbit-lite's metadata with an export id); any other
    ONNX model, from PyTorch or not and whatever its inputs are called, is the user's and is never replaced."""
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # not protobuf, or onnx missing: either way not provably ours
        return False
    return any(p.key == ONNX_MARKER and len(p.value) == 32 for p in model.metadata_props)


PREDICTIONS_HEADER = ("input", "frame", "prediction", "probability")  # then one p_<object> column per object


def is_predictions_csv(path: Path) -> bool:
    """A per-frame predictions CSV written by ``orbit-lite recognize --csv``: recognize's exact header (its four
    columns, then only ``p_<object>`` columns) and rows of that width."""
    import csv

    try:
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    if not rows:
        return False
    header = rows[0]
    probs = header[len(PREDICTIONS_HEADER) :]
    if tuple(header[: len(PREDICTIONS_HEADER)]) != PREDICTIONS_HEADER or not probs:
        return False
    return all(c.startswith("p_") for c in probs) and all(len(r) == len(header) for r in rows[1:])


PNG_SOFTWARE = "orbit-lite"  # the Software text chunk of every PNG orbit-lite writes starts with this


def is_orbit_lite_png(path: Path) -> bool:
    """A PNG written by orbit-lite: its Software text chunk (read before the image data) names orbit-lite."""
    from PIL import Image  # only when a PNG is checked: the command line starts without it

    try:
        with Image.open(path, formats=["PNG"]) as image:
            return str(image.info.get("Software", "")).startswith(PNG_SOFTWARE)
    except (OSError, ValueError, Image.DecompressionBombError):  # not a PNG (UnidentifiedImageError), unreadable
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


def writable_parent(path: Path, option: str = "--out") -> None:
    """Fail now, not after hours of work, when ``path``'s folder cannot be created or written (``option`` is how the
    user gave ``path``: the fix names it)."""
    probe = path.parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise OrbitLiteError(f"{probe} is a file, so {path} cannot be written there: choose another {option}")
    try:  # create a file there: permission bits say nothing to root, nor about a read-only file system or /proc
        with tempfile.NamedTemporaryFile(prefix=".orbit-lite-probe.", dir=probe):
            pass
    except OSError as e:
        raise OrbitLiteError(
            f"{probe} is not writable ({e.strerror or e}; permissions or a read-only file system): choose another "
            f"{option}"
        ) from None
