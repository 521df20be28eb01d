"""The ORBIT reference code's feature extractors, built by timm (spec/orbit-checkpoints.md 2 and 4).

The reference builds every backbone with ``timm.create_model(<name>, pretrained=True, num_classes=0)``; the same
architectures in today's timm carry the same state_dict keys and shapes, so its checkpoints load unchanged. This
module builds them (random or pretrained), and names the norm layers the reference tags for FiLM. timm is imported
when a timm backbone is built, so commands that never use one do not pay for the import.
"""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn

from orbit_lite.errors import OrbitLiteError

_log = logging.getLogger(__name__)


def _options(tag: str, frame_size: int) -> dict[str, object]:
    # Dropout before the (removed) classifier is a functional call that ignores module modes; Backbone keeps features
    # deterministic, so it is switched off here, with stochastic depth (both 0 in the reference's eval anyway).
    options: dict[str, object] = {"num_classes": 0, "drop_rate": 0.0, "drop_path_rate": 0.0}
    if tag.startswith("vit_"):
        options["img_size"] = frame_size  # learned positions: timm resizes pretrained ones to this grid
    return options


def build(tag: str, frame_size: int) -> nn.Module:
    """A randomly initialised timm network without classifier: ``[B, 3, S, S] -> [B, D]``."""
    import timm

    return timm.create_model(tag, pretrained=False, **_options(tag, frame_size))


def build_pretrained(tag: str, frame_size: int, file: Path | None = None) -> nn.Module:
    """The network with timm's pretrained weights for ``tag``: downloaded (and cached) by timm, or read from ``file``.

    Raises:
        OrbitLiteError: the weights cannot be fetched or read; the message names the tag and the local-file fix.
    """
    import timm

    options = _options(tag, frame_size)
    if file is not None:
        if not file.is_file():
            raise OrbitLiteError(
                f"weights file {file} does not exist; fix: pass an existing file, 'pretrained' or 'none' as "
                "model.weights"
            )
        options["pretrained_cfg_overlay"] = {"file": str(file)}
    _log.info("loading timm weights %s%s", tag, f" from {file}" if file else " (downloaded once into timm's cache)")
    try:
        return timm.create_model(tag, pretrained=True, **options)
    except Exception as exc:  # network, hub, file and key errors all come through timm, in many types
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        if file is not None:
            raise OrbitLiteError(
                f"cannot load timm weights {tag} from {file}: {reason}; fix: pass the file timm itself downloads for "
                f"{tag} (https://huggingface.co/timm/{tag}, model.safetensors) or a timm state_dict of that model"
            ) from None
        raise OrbitLiteError(
            f"cannot download timm weights {tag} (no internet?): {reason}; fix: on a machine with internet download "
            f"https://huggingface.co/timm/{tag}/resolve/main/model.safetensors and pass it with "
            "--set model.weights=/path/to/model.safetensors"
        ) from None


def efficientnet_film(net: nn.Module) -> list[str]:
    """The reference's FiLM tags on a timm EfficientNet: stem ``bn1``, head ``bn2``, the BN after each inverted
    residual's depthwise conv (``bn2``), and ``bn1`` of every EdgeResidual / ConvBnAct block; depthwise-separable
    blocks (B0's first) are not adapted. B0: 17 layers; V2-S: 42."""
    from timm.models._efficientnet_blocks import ConvBnAct, EdgeResidual, InvertedResidual

    names = ["bn1", "bn2"]
    for name, module in net.named_modules():
        if isinstance(module, InvertedResidual):  # CondConvResidual is a subclass
            names.append(f"{name}.bn2")
        elif isinstance(module, (EdgeResidual, ConvBnAct)):
            names.append(f"{name}.bn1")
    return names


def vit_film(net: nn.Module) -> list[str]:
    """Both LayerNorms of every block and the final ``norm``; not CLIP's ``norm_pre``. ViT-B/32: 25 layers."""
    return [f"blocks.{i}.{norm}" for i in range(len(net.blocks)) for norm in ("norm1", "norm2")] + ["norm"]
