"""``orbit-lite export``: a personal recognizer as one ONNX graph for phones and other devices."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from orbit_lite.cli.common import one_line_errors, out
from orbit_lite.errors import OrbitLiteError
from orbit_lite.outputs import check_file_out, is_onnx_file, writable_parent


class Format(str, Enum):
    onnx = "onnx"


@one_line_errors
def export_command(
    model_file: Path = typer.Option(..., "--model", help="A personal recognizer from `orbit-lite personalize`."),
    out_file: Path = typer.Option(..., "--out", help="Where to write the exported model (e.g. me.onnx)."),
    format: Format = typer.Option(Format.onnx, "--format", help="Export format."),
    check: bool = typer.Option(
        True, "--check/--no-check", help="Run onnxruntime and PyTorch on the file's context clips; fail if they differ."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
) -> None:
    """Export a personal recognizer: uint8 frames in, logits and probabilities out, FiLM folded in."""
    check_file_out(out_file, overwrite, is_onnx_file, "an ONNX model")
    writable_parent(out_file)
    from orbit_lite.engine.model import open_personal
    from orbit_lite.export import export_onnx, onnx_parity  # torch: only once the options are known to be right
    from orbit_lite.publish import publish_file

    model = open_personal(model_file)
    # Written beside --out under a fresh name and moved there only once checked: a failed check leaves --out as it was.
    with publish_file(out_file, suffix=".unchecked") as staged:
        export_onnx(model, staged)
        if check:
            try:
                parity = onnx_parity(model, staged)
            except ImportError:
                raise OrbitLiteError(
                    "--check needs onnxruntime: pip install 'orbit-lite[export]' (or --no-check)"
                ) from None
            if not parity.ok:
                raise OrbitLiteError(
                    f"onnxruntime's output differs from PyTorch's {parity.summary()}; {out_file} was not written"
                )
            out.print(f"check: onnxruntime agrees with PyTorch {parity.summary()}", markup=False)
    path = out_file
    clip = f"{model.clip_length}, " if model.clip_length > 1 else ""
    side = model.frame_size
    out.print(
        f"wrote {path}: input 'frames' uint8 [batch, {clip}3, {side}, {side}], outputs 'logits', "
        f"'probabilities' over {', '.join(model.object_names)}",
        markup=False,
    )
