"""``train --overwrite``: a new training run replaces an earlier one in ``--out``, never anything else, and never
leaves it half-deleted.

The earlier run must be proven orbit-lite's before any work: its run marker, only a run's files
(:func:`orbit_lite.outputs.check_run_out`) and checkpoints carrying the marker's id. When the new run is about to
write its first file, the old one is renamed whole into a fresh trash folder beside it (one rename: it is either all
in place or all aside), and the new run is written at ``--out``. When the new run ends, the trash is deleted; when it
fails or is interrupted (an error, Ctrl-C), its partial folder (marked with its own fresh id) is removed and the old
run renamed back, so nothing changed. A process killed outright (``kill -9``, a power cut) leaves the old run whole in
the trash folder; the next run into ``--out`` names it and leaves it for the user to keep or delete.
"""

from __future__ import annotations

import glob
import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from orbit_lite.errors import OrbitLiteError
from orbit_lite.outputs import RUN_MARKER, check_run_out, is_orbit_lite_png, run_id_of

log = logging.getLogger(__name__)


def _trash_prefix(run_dir: Path) -> str:
    return f".{run_dir.name}.old."


def old_run(run_dir: Path, resume: bool) -> str | None:
    """With ``--overwrite``: the id of the run in ``run_dir`` to replace (None when there is none: absent or empty).
    Anything orbit-lite cannot prove is one of its runs is refused, before any work."""
    if resume:
        raise OrbitLiteError("--resume continues the run in --out and --overwrite replaces it: pass only one of them")
    run_id = check_run_out(run_dir, overwrite=True)
    if run_id is None:
        return None
    here, target = Path.cwd().resolve(), run_dir.resolve()
    if target == here or target in here.parents:  # renamed away, it would leave the shell in a moved folder
        raise OrbitLiteError(f"--out {run_dir} is the current folder (or holds it); --overwrite moves the old run "
                             "aside: run the command from outside it, or choose a new --out")  # fmt: skip
    _own_files(run_dir, run_id)
    return run_id


def _own_files(run_dir: Path, run_id: str) -> None:
    """Refuse a marked run holding a checkpoint it did not write (another run's best.pt copied in: the user's), a
    curves.png orbit-lite did not draw, or anything but event files in its TensorBoard folder."""
    from orbit_lite.checkpoint import load_checkpoint

    if (run_dir / "curves.png").exists() and not is_orbit_lite_png(run_dir / "curves.png"):
        raise OrbitLiteError(f"{run_dir} holds curves.png, which orbit-lite did not draw; that run is never replaced: "
                             "move it out of the run, or choose a new --out")  # fmt: skip
    events = run_dir / "tensorboard"
    for path in sorted(events.iterdir()) if events.is_dir() else []:
        if not path.name.startswith("events.out.tfevents.") or path.is_symlink() or not path.is_file():
            raise OrbitLiteError(f"{run_dir} holds tensorboard/{path.name}, which a run does not write; that run is "
                                 "never replaced: move it out of the run, or choose a new --out")  # fmt: skip
    folder = run_dir / "checkpoints"
    for path in sorted(folder.glob("*.pt")) if folder.is_dir() else []:
        try:
            ours = load_checkpoint(path, "training").get("run_id") == run_id
        except OrbitLiteError:  # not an orbit-lite training checkpoint at all
            ours = False
        if not ours:
            raise OrbitLiteError(f"{path} was not written by the run marked in {run_dir / RUN_MARKER}; that run is "
                                 "never replaced: move the file out of it, or choose a new --out")  # fmt: skip


def _leftovers(run_dir: Path) -> list[Path]:
    """Runs that an earlier ``--overwrite`` moved aside and, killed outright, could neither delete nor put back."""
    if not run_dir.parent.is_dir():
        return []
    found = sorted(run_dir.parent.glob(glob.escape(_trash_prefix(run_dir)) + "*"))  # a name may hold [ or *
    return [p / run_dir.name for p in found if run_id_of(p / run_dir.name) is not None]


@contextmanager
def replacing(run_dir: Path, old_id: str | None, new_id: str) -> Iterator[None]:
    """Around the block that writes the new run (marked ``new_id``) at ``run_dir``: the old run (``old_id``, from
    :func:`old_run`; None: nothing to replace) is moved aside first, deleted when the block ends, put back when it
    fails. Called while ``run_dir``'s lock is held, so no other run moves anything there meanwhile."""
    for leftover in _leftovers(run_dir):
        log.warning("%s is a run an interrupted --overwrite of %s moved aside; it is kept: delete it or move it back",
                    leftover, run_dir)  # fmt: skip
    if old_id is None:
        yield
        return
    if old_run(run_dir, resume=False) != old_id:  # checked again right before: the folder may have changed since
        raise OrbitLiteError(f"{run_dir} changed while the new run was being prepared; nothing was replaced")
    trash = None
    try:
        trash = Path(tempfile.mkdtemp(prefix=_trash_prefix(run_dir), dir=run_dir.parent))
        run_dir.rename(trash / run_dir.name)
    except OSError as e:
        if trash is not None:
            trash.rmdir()
        raise OrbitLiteError(f"cannot move {run_dir} aside to replace it ({e.strerror or e}); nothing was changed: "
                             "check the permissions of its folder, or choose a new --out") from None  # fmt: skip
    try:
        yield
    except BaseException:
        _put_back(run_dir, trash / run_dir.name, new_id)
        raise
    shutil.rmtree(trash, ignore_errors=True)


def _put_back(run_dir: Path, aside: Path, new_id: str) -> None:
    """The new run failed: remove what it wrote (only if the folder is still the one it marked) and rename the old
    run back. Anything else keeps both where they are, with a warning naming them."""
    try:
        if run_dir.exists():
            if run_id_of(run_dir) != new_id:
                raise OSError(f"{run_dir} is not the new run's folder")
            shutil.rmtree(run_dir)
        aside.rename(run_dir)
        aside.parent.rmdir()
    except OSError as e:
        log.warning("the run that --overwrite was replacing is kept in %s (%s); move it back to %s", aside, e, run_dir)
