"""What a backbone is, without its weights: ``orbit-lite backbones [NAME]``.

Every number comes from the network built on the ``meta`` device (shapes, no memory), so it costs the same for a
ViT-g at 518 px as for the test nets: feature dimension, parameters, FiLM layers and their norm types, and the
multiply-accumulates of one frame at the chosen size (:class:`torch.utils.flop_counter.FlopCounterMode`, half its
FLOPs). ONNX support is a real trial export of the network, also on the meta device, when asked for.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch

from orbit_lite.models.backbones import Backbone, BackboneSpec, backbone_spec, check_frame_size
from orbit_lite.models.timm_any import is_timm_name, resolve, rule

NAMED_DEFAULT_SIZE = 224  # the ORBIT reference's frame size, for the registered backbones


@dataclass(frozen=True)
class BackboneInfo:
    """One backbone at one frame size.

    Attributes:
        name: the backbone's (canonical) name.
        feature_dim: D.
        parameters: number of parameters of the network without classifier.
        film_layers: number of FiLM-adapted norm layers (:attr:`Backbone.film_layers`).
        film_scale_only: how many of them have no bias (FiLM scales them only).
        film_norms: norm class name -> count among the FiLM layers.
        mean, std: input normalization of frames in [0, 1].
        default_size: the frame side its weights were trained at (the reference's 224 for registered backbones).
        size_rule: which frame sides it takes as they are.
        frame_size: the side the numbers below are for.
        macs: multiply-accumulates per frame at ``frame_size``.
        onnx: "yes", the reason it does not export, or None when not checked.
        notes: weights and pooling.
    """

    name: str
    feature_dim: int
    parameters: int
    film_layers: int
    film_scale_only: int
    film_norms: dict[str, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    default_size: int
    size_rule: str
    frame_size: int
    macs: float
    onnx: str | None
    notes: str

    def as_dict(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items()}


def default_size(spec: BackboneSpec) -> int:
    if is_timm_name(spec.name):
        return resolve(spec.name).default_size
    return NAMED_DEFAULT_SIZE


def _size_rule(spec: BackboneSpec) -> str:
    if is_timm_name(spec.name):
        return rule(resolve(spec.name)) + (" (built for that size)" if spec.fixed_size else "")
    return spec.size_rule() + (" (built for that size)" if spec.fixed_size else "")


def meta_backbone(spec: BackboneSpec, frame_size: int) -> Backbone:
    """The backbone on the meta device: its structure and shapes, no memory."""
    with torch.device("meta"):
        return Backbone(spec, spec.builder(frame_size), frame_size)


def count_macs(backbone: Backbone, frame_size: int) -> float:
    """Multiply-accumulates of one ``frame_size`` frame through ``backbone`` (FlopCounterMode's FLOPs / 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    frames = torch.zeros(1, 3, frame_size, frame_size, dtype=torch.uint8, device=next(backbone.parameters()).device)
    counter = FlopCounterMode(display=False)
    with counter:  # grad enabled: the counter's module tracker hooks into autograd
        backbone(frames)
    return counter.get_total_flops() / 2


def onnx_support(backbone: Backbone, frame_size: int) -> str:
    """ "yes" when ``backbone`` (uint8 frames in, features out) exports to ONNX, else the exporter's reason.

    The trial runs on the meta device without the graph optimizer (which needs real weights); what can fail to export,
    an operator or a control flow, fails here too.
    """
    import logging
    import warnings

    frames = torch.zeros(1, 3, frame_size, frame_size, dtype=torch.uint8, device="meta")
    quiet = [logging.getLogger(n) for n in ("torch.onnx", "onnxscript", "onnx_ir", "torch.export")]
    levels = [log.level for log in quiet]
    for log in quiet:
        log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                backbone.eval(), (frames,), None, dynamo=True, optimize=False, verbose=False, opset_version=18
            )
    except Exception as exc:  # the exporter fails in many types (dynamo, export, onnxscript): all mean "no"
        return f"no: {' '.join(str(exc).split())[:200] or type(exc).__name__}"
    finally:
        for log, level in zip(quiet, levels, strict=True):
            log.setLevel(level)
    return "yes"


def describe(name: str, frame_size: int | None = None, check_onnx: bool = False) -> BackboneInfo:
    """Everything :class:`BackboneInfo` holds for ``name`` at ``frame_size`` (default: its default size).

    Raises:
        OrbitLiteError: unknown name, or a frame size the backbone cannot take (naming the sizes it can).
    """
    spec = backbone_spec(name)
    size = frame_size or default_size(spec)
    check_frame_size(spec, size)
    backbone = meta_backbone(spec, size)
    scale_only = backbone.film_scale_only
    norms = Counter(type(backbone.net.get_submodule(n)).__name__ for n, _ in backbone.film_layers)
    return BackboneInfo(
        name=spec.name,
        feature_dim=spec.feature_dim,
        parameters=sum(p.numel() for p in backbone.parameters()),
        film_layers=len(backbone.film_layers),
        film_scale_only=len(scale_only),
        film_norms=dict(sorted(norms.items())),
        mean=tuple(spec.mean),
        std=tuple(spec.std),
        default_size=default_size(spec),
        size_rule=_size_rule(spec),
        frame_size=size,
        macs=count_macs(backbone, size),
        onnx=onnx_support(backbone, size) if check_onnx else None,
        notes=spec.notes,
    )
