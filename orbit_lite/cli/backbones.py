"""``orbit-lite backbones [NAME]``: the registered backbones, or what one backbone (any timm model) is."""

from __future__ import annotations

import json

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from orbit_lite.cli.common import err, one_line_errors, out
from orbit_lite.errors import OrbitLiteError


@one_line_errors
def backbones_command(
    name: str = typer.Argument(None, help="A registered backbone or any timm model: timm/<model>[.<tag>]."),
    frame_size: int = typer.Option(None, "--frame-size", help="Frame side for the MACs [default: the model's]."),
    onnx: bool = typer.Option(False, "--onnx", help="Try an ONNX export of the network (tens of seconds)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """List the registered backbones, or describe one: feature dim, parameters, FiLM layers, sizes, MACs, ONNX."""
    # torch, torchvision and timm load here, not when the CLI starts
    from orbit_lite.models.backbone_info import describe, meta_backbone
    from orbit_lite.models.backbones import BACKBONES, available_backbones, backbone_spec

    if name is None:
        rows = []
        for registered in available_backbones():
            spec = BACKBONES[registered]
            film = len(meta_backbone(spec, max(spec.min_size, 64)).film_layers)
            weights = pretrained_weights(spec)
            sizes = f">= {spec.min_size}" + (f", multiple of {spec.size_multiple}" if spec.size_multiple > 1 else "")
            rows.append(
                {
                    "name": registered,
                    "feature_dim": spec.feature_dim,
                    "film_layers": film,
                    "sizes": sizes,
                    "weights": weights,
                    "notes": spec.notes,
                }
            )
        if as_json:
            out.print_json(json.dumps(rows))
            return
        caption = "and any timm model as timm/<model>[.<tag>]; backbones NAME describes one"
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, caption=caption)  # fits an 80-column terminal
        for column in ("name", "dim", "FiLM", "frame sizes", "pretrained weights"):
            justify = "right" if column in ("dim", "FiLM") else "left"
            table.add_column(column, justify=justify, no_wrap=True, min_width=len(column))
        for registered, row in zip(available_backbones(), rows, strict=True):
            sizes = row["sizes"].replace(", multiple of ", ", x")
            cells = (row["name"], str(row["feature_dim"]), str(row["film_layers"]), sizes,
                     short_weights(BACKBONES[registered]))  # fmt: skip
            table.add_row(*(Text(cell) for cell in cells))
        out.print(table)
        return
    if onnx:
        err.print("trying an ONNX export (on the meta device: no weights, no memory) ...")
    if frame_size is not None:  # the range data.frame_size takes: 0 is no size, 100000 px no frame
        from orbit_lite.config import LIMITS

        limit = LIMITS["data"]["frame_size"]
        if not limit.allows(frame_size):
            raise OrbitLiteError(f"--frame-size must be {limit.describe()} pixels, got {frame_size}")
    info = describe(name, frame_size, check_onnx=onnx, option="--frame-size")
    if as_json:
        out.print_json(json.dumps(info.as_dict()))
        return
    norms = ", ".join(f"{kind} x{count}" for kind, count in info.film_norms.items()) or "none"
    scale_only = f"; {info.film_scale_only} without bias are scaled only" if info.film_scale_only else ""
    rows = [
        ("feature dim", str(info.feature_dim)),
        ("parameters", f"{info.parameters:,} ({info.parameters / 1e6:.1f} M)"),
        ("FiLM layers", f"{info.film_layers} ({norms}){scale_only}"),
        ("pretrained weights", pretrained_weights(backbone_spec(name))),
        ("input normalization", f"mean {_floats(info.mean)}, std {_floats(info.std)}"),
        ("default frame size", str(info.default_size)),
        ("frame sizes", info.size_rule),
        (f"MACs per frame at {info.frame_size} px", f"{info.macs / 1e9:.3f} G"),
        ("ONNX export", info.onnx or "not checked (add --onnx)"),
        ("notes", info.notes),
    ]
    table = Table(title=info.name, box=box.SIMPLE_HEAD, pad_edge=False, show_header=False)
    table.add_column("", justify="left")
    table.add_column("", justify="left", overflow="fold")
    for key, value in rows:
        table.add_row(Text(key), Text(value))
    out.print(table)


def _floats(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def pretrained_weights(spec: object) -> str:
    """Where ``model.weights=pretrained`` takes a backbone's weights from, and whether that needs the internet."""
    if getattr(spec, "local_weights", None) is not None:
        return "ImageNet, installed with orbit-lite (offline)"
    if getattr(spec, "timm_tag", None):
        return f"timm {spec.timm_tag} (downloaded once)"
    if getattr(spec, "weights", None) is not None:
        return f"torchvision {spec.weights.name} (downloaded once)"
    return "none"


def short_weights(spec: object) -> str:
    """:func:`pretrained_weights` in a few words, for the table (``--json`` and ``backbones NAME`` give the tag)."""
    if getattr(spec, "local_weights", None) is not None:
        return "ImageNet, offline"
    if getattr(spec, "timm_tag", None):
        return "timm hub download"
    if getattr(spec, "weights", None) is not None:
        return "torchvision download"
    return "none"
