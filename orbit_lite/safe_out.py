"""Where a command may write, checked before any work: links, name lengths, two outputs on one path, other
commands' pictures.

- A symbolic link given as an output is written *through*, deliberately: the command works on the path the link
  names (so the link stays a link and the new output is where it points). A link to nothing is refused: there is
  nothing there to write through to, and replacing the link would lose where the user meant it to point.
- A name longer than the file system takes (less the room orbit-lite's temporary names beside it need) is one line,
  not an OSError after the work.
- Two outputs of one command on the same file would overwrite each other: refused.
- A picture is replaced only by the command that made it (``recognize --plot`` marks its own), and never inside an
  evaluation's results or a training run: those folders belong to the command that wrote them.
"""

from __future__ import annotations

import os
from pathlib import Path

from orbit_lite.errors import OrbitLiteError
from orbit_lite.outputs import RESULTS_MARKER, RUN_MARKER

# Temporary names beside an output add at most this many bytes: ".NAME.XXXXXXXX.partial", "NAME.lock", ".NAME.old.X"
_TEMP_ROOM = 32
PLOT_MAKER_KEY = "orbit-lite command"  # a PNG text chunk: which command drew the picture
RECOGNIZE_PLOT = "recognize --plot"


def _name_max(folder: Path) -> int:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def output_path(path: Path, option: str) -> Path:
    """The path a command writes ``path`` at (``option`` is how the user gave it, e.g. ``--csv``), refusing before
    any work a link to nothing and names too long for the file system."""
    if path.is_symlink():
        target = os.readlink(path)
        if not path.exists():
            raise OrbitLiteError(f"{option} {path} is a symbolic link to {target}, which does not exist; orbit-lite "
                                 "writes through a link only to what is there: create it, or give another "
                                 "path")  # fmt: skip
        path = Path(os.path.realpath(path))  # written through, deliberately: the link itself stays as it is
    longest = _name_max(path.parent) - _TEMP_ROOM
    for part in Path(os.path.abspath(path)).parts:
        size = len(os.fsencode(part))
        if size > longest:
            shown = part if len(part) <= 40 else f"{part[:20]}...{part[-12:]}"
            raise OrbitLiteError(f"{option} {shown}: a name of {size} bytes; this file system takes names up to "
                                 f"{longest} bytes here (orbit-lite writes a temporary name beside it): choose a "
                                 "shorter name")  # fmt: skip
    return path


def distinct_outputs(outputs: dict[str, Path | None]) -> None:
    """Refuse two options of one command that name the same file (``--csv same.png --plot same.png``)."""
    seen: dict[str, str] = {}
    for option, path in outputs.items():
        if path is None:
            continue
        key = os.path.realpath(path)
        if key in seen:
            raise OrbitLiteError(f"{seen[key]} and {option} both name {path}; each output needs its own file")
        seen[key] = option


def outside_other_outputs(path: Path, option: str) -> None:
    """Refuse a file inside an evaluation's results folder or a training run: those hold only their command's
    files (their proofs list them), and a picture written there would replace theirs."""
    folder = Path(os.path.realpath(path)).parent
    for marker, what in ((RESULTS_MARKER, "evaluation results"), (RUN_MARKER, "a training run")):
        if (folder / marker).exists():
            raise OrbitLiteError(f"{option} {path}: {folder} holds {what}, written by another command; "
                                 "choose a file outside it")  # fmt: skip


def is_recognize_plot(path: Path) -> bool:
    """A PNG that ``recognize --plot`` drew: its text chunks name orbit-lite and that command. The figures of
    ``evaluate`` and ``train`` are orbit-lite's too, but not recognize's to replace."""
    try:
        from PIL import Image

        with Image.open(path) as image:
            text = dict(getattr(image, "text", {}) or {})
    except Exception:  # not an image, or one Pillow cannot read: either way not provably recognize's
        return False
    return str(text.get("Software", "")).startswith("orbit-lite") and text.get(PLOT_MAKER_KEY) == RECOGNIZE_PLOT
