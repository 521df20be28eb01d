"""The ORBIT reference code's feature extractors, built by timm.

The reference builds every backbone with ``timm.create_model(<name>, pretrained=True, num_classes=0)``; the same
architectures in today's timm carry the same state_dict keys and shapes, so its checkpoints load unchanged. This
module builds them (random or pretrained), and names the norm layers the reference tags for FiLM. timm is imported
when a timm backbone is built, so commands that never use one do not pay for the import.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.error import HTTPError
from urllib.parse import urlsplit
from urllib.request import Request, urlopen

from torch import Tensor, nn

from orbit_lite.errors import OrbitLiteError

_log = logging.getLogger(__name__)


def _options(tag: str, frame_size: int) -> dict[str, object]:
    # Dropout before the (removed) classifier is a functional call that ignores module modes; Backbone keeps features
    # deterministic, so it is switched off here, with stochastic depth (both 0 in the reference's eval anyway).
    options: dict[str, object] = {"num_classes": 0, "drop_rate": 0.0, "drop_path_rate": 0.0}
    if tag.startswith("vit_"):
        options["img_size"] = frame_size  # learned positions: timm resizes pretrained ones to this grid
    return options


def build(tag: str, frame_size: int, options: dict[str, object] | None = None) -> nn.Module:
    """A randomly initialised timm network without classifier: ``[B, 3, S, S] -> [B, D]``.

    ``options`` replace the reference backbones' creation options (any timm model: :mod:`orbit_lite.models.timm_any`).
    """
    import timm

    return timm.create_model(tag, pretrained=False, **(options or _options(tag, frame_size)))


def build_pretrained(
    tag: str, frame_size: int, options: dict[str, object] | None = None, url: str | None = None
) -> nn.Module:
    """The network with timm's pretrained weights for ``tag``, downloaded (and cached) by timm.

    Local files do not come here: timm loads them non-strictly, so :mod:`orbit_lite.models.backbones` loads them
    itself and reports any key that does not fit. ``url``: where the file is, for the message (default: timm's hub).

    Raises:
        OrbitLiteError: the weights cannot be fetched; the message names the tag and the local-file fix.
    """
    import timm

    url = url or f"https://huggingface.co/timm/{tag}/resolve/main/model.safetensors"
    if not is_cached(tag, url):
        # Asked first, in one short request: offline, the hub client would retry for about a minute and log each try.
        why = unreachable(url)
        if why is not None:
            raise OrbitLiteError(f"cannot download timm weights {tag}: {urlsplit(url).netloc} cannot be reached "
                                 f"({why}); {offline_fix(url)}")  # fmt: skip
    _log.info("loading timm weights %s (downloaded once into timm's cache)", tag)
    try:
        return timm.create_model(tag, pretrained=True, **(options or _options(tag, frame_size)))
    except Exception as exc:  # network, hub and file errors all come through timm, in many types
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        why = f"cannot download timm weights {tag} (no internet?): {reason}"
        raise OrbitLiteError(f"{why}; {offline_fix(url)}") from None


OFFLINE_BACKBONE = "efficientnet_lite0"  # its ImageNet weights install with orbit-lite (models/lite0_weights.py)


def offline_fix(url: str) -> str:
    """The fixes for weights that cannot be downloaded: the backbone that needs no download, or a local file."""
    file = url.rsplit("/", 1)[-1]
    return (f"fix: offline, use a backbone whose weights install with orbit-lite (--set model.backbone="
            f"{OFFLINE_BACKBONE}, or the recipes configs/*_lite0.yaml), or on a machine with internet download {url} "
            f"and pass it with --set model.weights=/path/to/{file}")  # fmt: skip


def is_cached(tag: str, url: str) -> bool:
    """Whether timm would find the weights of ``tag`` without the network (the Hugging Face cache, or torch.hub's
    checkpoints folder for weights hosted elsewhere)."""
    file = url.rsplit("/", 1)[-1]
    try:
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(f"timm/{tag}", file), str):
            return True
    except (ImportError, ValueError):  # no hub client, or a tag that is no valid repository name
        pass
    import torch

    return (Path(torch.hub.get_dir()) / "checkpoints" / file).is_file()


def unreachable(url: str, timeout: float = 5.0) -> str | None:
    """None when the server of ``url`` answers within ``timeout`` seconds (any HTTP status); else why not, in one
    line. The request honours the usual proxy settings, as the download would."""
    parts = urlsplit(url)
    try:
        with urlopen(Request(f"{parts.scheme}://{parts.netloc}/", method="HEAD"), timeout=timeout):
            return None
    except HTTPError:  # it answered
        return None
    except (OSError, ValueError) as exc:  # URLError, timeouts, refused connections; a malformed URL
        return " ".join(str(getattr(exc, "reason", None) or exc).split())[:200] or type(exc).__name__


def fit_positions(state: dict[str, Tensor], net: nn.Module) -> dict[str, Tensor]:
    """Resample a ViT checkpoint's learned position embedding (e.g. 7 x 7 patches at 224 px) to the built grid."""
    key = "pos_embed"
    if key in state and hasattr(net, key) and state[key].shape != net.pos_embed.shape:
        from timm.layers import resample_abs_pos_embed

        grid = net.patch_embed.grid_size
        state = {**state, key: resample_abs_pos_embed(state[key], list(grid), num_prefix_tokens=1)}
    return state


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
