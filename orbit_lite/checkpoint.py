"""The only module that saves and loads: atomic writes, weights-only loading onto the CPU.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so ``torch.load(weights_only=True)`` reads
it without unpickling arbitrary objects. It is published all at once (``orbit_lite.publish``), so a crash never
leaves a half-written file.
"""

from __future__ import annotations

import io
import pickletools
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from orbit_lite.errors import OrbitLiteError
from orbit_lite.publish import atomic_write_bytes, atomic_write_text, umask_mode, write_failure  # noqa: F401  (importable here too)

FORMAT = "orbit-lite"
VERSION = 1


def save_checkpoint(path: Path | str, payload: dict[str, Any], kind: str) -> None:
    """Save ``payload`` (tensors and plain values only) as an orbit-lite checkpoint of ``kind``."""
    record = {"format": FORMAT, "version": VERSION, "kind": kind, **payload}
    buffer = io.BytesIO()  # serialized first: a full disk then fails a plain write, with the size known
    torch.save(record, buffer)
    atomic_write_bytes(path, buffer.getbuffer())


def require_file(path: Path, what: str) -> None:
    """One line when ``path`` is missing or a folder, naming ``what`` was expected there."""
    if path.is_dir():
        raise OrbitLiteError(f"{path} is a folder; {what} must be a file: pass the file itself")
    if not path.is_file():
        raise OrbitLiteError(f"{path}: no such file (expected {what})")


_IMPORTS = {"GLOBAL", "STACK_GLOBAL", "INST"}


def pickled_code(path: Path) -> str:
    """The first global a pickle would import (``module.name``), found by reading its opcodes without running them;
    empty when the file is no pickle at all. A torch zip file's pickle is its ``data.pkl``."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                member = next(n for n in archive.namelist() if n.endswith("data.pkl"))
                data = archive.read(member)
        else:
            data = path.read_bytes()
        strings: list[str] = []
        for opcode, arg, _ in pickletools.genops(data):
            if isinstance(arg, str):
                strings.append(arg)
            if opcode.name in _IMPORTS:
                return arg.replace(" ", ".") if opcode.name != "STACK_GLOBAL" else ".".join(strings[-2:])
    except Exception:  # not a pickle (or a cut one): nothing it would import can be named
        return ""
    return ""


def _is_pickle(path: Path) -> bool:
    """A torch zip archive (its local-file magic survives a cut-off end) or a bare pickle (protocol 2-5 header)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head == b"PK\x03\x04" or (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5)


def read_torch_file(path: Path | str, what: str) -> Any:
    """``torch.load(weights_only=True)`` onto the CPU; whatever goes wrong is one line saying what the file is:
    missing, a folder, not a PyTorch file at all, a pickle that would import code (refused, never run), or cut off."""
    path = Path(path)
    require_file(path, what)
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols are not the user's business
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch.load fails on foreign files with many error types (KeyError, UnpicklingError...)
        pass
    code = pickled_code(path)
    if code:
        reason = f"a pickle that imports {code}, which would run code when loaded; refused, never unpickled"
    elif not _is_pickle(path):
        reason = "not a PyTorch file"
    else:
        reason = "a PyTorch file that is cut off or damaged"
    raise OrbitLiteError(f"{path} cannot be read as {what}: {reason}")


def load_checkpoint(path: Path | str, kind: str | None = None) -> dict[str, Any]:
    """Load an orbit-lite checkpoint onto the CPU; anything else is a one-line error naming the file."""
    path = Path(path)
    what = f"an orbit-lite {kind} file" if kind else "an orbit-lite checkpoint"
    record = read_torch_file(path, what)
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise OrbitLiteError(f"{path}: not an orbit-lite checkpoint (no orbit-lite format marker)")
    if kind is not None and record.get("kind") != kind:
        raise OrbitLiteError(f"{path}: is an orbit-lite {record.get('kind')} file, expected a {kind} checkpoint")
    if kind in SCHEMAS:
        check_structure(path, record, kind)
    return record


# What each kind of file must hold, checked on every load so that a damaged (hand-edited, cut) file is one line
# naming what is wrong instead of a KeyError or IndexError deep in the code that uses it.
SCHEMAS: dict[str, dict[str, tuple[type, ...]]] = {
    "training": {"config": (dict,), "model": (dict,)},
    "personal": {
        "user": (str,),
        "object_names": (list,),
        "frame_size": (int,),
        "clip_length": (int,),
        "backbone_name": (str,),
        "head_name": (str,),
        "learn_scale": (bool,),
        "backbone": (dict,),
        "head": (dict,),
        "film": (dict, type(None)),
        "state": (list,),
        "config": (dict,),
    },
}


def check_structure(path: Path, record: dict[str, Any], kind: str) -> None:
    """Refuse a ``kind`` file that lacks a field of :data:`SCHEMAS` or holds one of the wrong type."""
    for key, types in SCHEMAS[kind].items():
        if key not in record:
            raise OrbitLiteError(f"{path}: damaged orbit-lite {kind} file: it has no '{key}'")
        value = record[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            wanted = " or ".join("None" if t is type(None) else t.__name__ for t in types)
            raise OrbitLiteError(
                f"{path}: damaged orbit-lite {kind} file: '{key}' is a {type(value).__name__}, expected {wanted}"
            )
    if kind == "personal":
        names = record["object_names"]
        if len(names) < 2 or not all(isinstance(n, str) for n in names):
            raise OrbitLiteError(f"{path}: damaged personal recognizer: 'object_names' must list two or more names")
        if not all(isinstance(t, torch.Tensor) for t in record["state"]):
            raise OrbitLiteError(f"{path}: damaged personal recognizer: 'state' must hold tensors only")
        if record["frame_size"] < 1 or record["clip_length"] < 1:
            raise OrbitLiteError(f"{path}: damaged personal recognizer: frame_size and clip_length must be positive")
