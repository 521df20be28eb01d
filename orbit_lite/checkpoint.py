"""The only module that saves and loads: atomic writes, weights-only loading onto the CPU.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so ``torch.load(weights_only=True)`` reads
it without unpickling arbitrary objects. Writes go to a temporary file in the same folder, are flushed to disk and
renamed over the target, so a crash never leaves a half-written file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from orbit_lite.errors import OrbitLiteError

FORMAT = "orbit-lite"
VERSION = 1


def umask_mode(base: int) -> int:
    """``base`` (0o666 for files, 0o777 for folders) less the process umask: the mode ``open``/``mkdir`` would give.

    Temporary files and folders are created private (0600/0700); what is renamed into place must get the usual mode.
    """
    mask = os.umask(0)  # the umask can only be read by setting it
    os.umask(mask)
    return base & ~mask


def _atomic(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, umask_mode(0o666))
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write ``text`` to ``path`` all at once or not at all."""
    _atomic(Path(path), lambda f: f.write(text.encode()))


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` all at once or not at all."""
    _atomic(Path(path), lambda f: f.write(data))


def save_checkpoint(path: Path | str, payload: dict[str, Any], kind: str) -> None:
    """Save ``payload`` (tensors and plain values only) as an orbit-lite checkpoint of ``kind``."""
    record = {"format": FORMAT, "version": VERSION, "kind": kind, **payload}
    _atomic(Path(path), lambda f: torch.save(record, f))


def load_checkpoint(path: Path | str, kind: str | None = None) -> dict[str, Any]:
    """Load an orbit-lite checkpoint onto the CPU; anything else is a one-line error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise OrbitLiteError(f"{path}: no such checkpoint file")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load fails on foreign files with many error types (KeyError, UnpicklingError...)
        if "Weights only load failed" in str(e):  # a pickle asking for more than tensors: never unpickled
            reason = "it holds objects other than tensors and plain values, which are never unpickled"
        else:  # torch's own text for a text file or a cut-off one is a bare key or offset: say what it means
            reason = f"not a PyTorch file, or a truncated one: {type(e).__name__}"
        raise OrbitLiteError(f"{path}: not an orbit-lite checkpoint ({reason})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise OrbitLiteError(f"{path}: not an orbit-lite checkpoint (no orbit-lite format marker)")
    if kind is not None and record.get("kind") != kind:
        raise OrbitLiteError(f"{path}: is an orbit-lite {record.get('kind')} file, expected a {kind} checkpoint")
    return record
