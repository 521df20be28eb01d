"""Any timm image model as a backbone: ``model.backbone: timm/<model>[.<pretrained tag>]``.

Everything that belongs to the model comes from timm's own pretrained config and the built network: input
normalization (mean/std), the default frame size, whether it is built for one input size (learned position embeddings,
attention windows), the feature dimension (the pooled, pre-classifier output) and the classifier's name, which is left
out. Nothing is hard-coded per family.

**Frame sizes.** Frames are never interpolated inside the model; the size rule says which sides it takes as they are:

- convolutional nets (timm's ``fixed_input_size`` false) pool globally: any side >= their total stride;
- patch transformers built for one size (ViT, DeiT, EVA, DINOv2, SigLIP ...): a multiple of the patch side; they are
  built at the frame size, and pretrained position embeddings are resampled to the new grid when weights load;
- hierarchical transformers built for one size (Swin, MaxViT, CoAtNet ...): a multiple of their total stride (32).

The chosen size is then checked by running the network once on the ``meta`` device (shapes only: no memory, no
weights), which also gives the feature dimension and the multiply-accumulates (:func:`probe`).

**FiLM rule** (:func:`film_layer_names`): FiLM adapts every normalization layer of the feature trunk that has a learned
per-channel scale: modules that are torch's BatchNorm / SyncBatchNorm / InstanceNorm, LayerNorm, GroupNorm or RMSNorm
(or subclass them: timm's LayerNorm2d, BatchNormAct2d, GroupNorm1 ...), or timm's RmsNorm, SimpleNorm and EvoNorm
layers, whose ``weight`` is a 1-d parameter; nothing under the classifier (``pretrained_cfg['classifier']``). A layer
with a bias gets a scale and a shift; a layer without one (RMSNorm, LayerNorm(bias=False)) gets a scale only.

timm is imported only inside these functions, so commands that never use a timm model do not pay for the import.
"""

from __future__ import annotations

import contextlib
import difflib
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache

import torch
from torch import Tensor, nn

from orbit_lite.errors import OrbitLiteError

PREFIX = "timm/"


@dataclass(frozen=True)
class TimmModel:
    """What orbit-lite needs to know about one timm model, read from timm without building real weights.

    Attributes:
        name: canonical backbone name, ``timm/<arch>.<tag>`` (``timm/<arch>`` when timm has no weights for it).
        arch: timm's architecture name.
        tag: ``<arch>.<tag>`` when timm publishes weights for it, else None.
        mean, std: the pretrained config's input normalization.
        default_size: the pretrained config's input side.
        sized: built for one input size (``img_size=frame_size`` is passed to timm).
        min_size, size_multiple: the size rule (see the module docstring).
        feature_dim: D, the network's output without classifier.
        classifier: names of the classifier modules (left out of FiLM, and out of loaded state_dicts).
        weights_url: where the pretrained file lives (for the offline message), or "".
    """

    name: str
    arch: str
    tag: str | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    default_size: int
    sized: bool
    min_size: int
    size_multiple: int
    feature_dim: int
    classifier: tuple[str, ...]
    weights_url: str

    def build_options(self, frame_size: int) -> dict[str, object]:
        # Dropout and stochastic depth need no options: orbit-lite keeps a timm model in eval mode (Backbone).
        return {"num_classes": 0, **({"img_size": frame_size} if self.sized else {})}

    def nearest_sizes(self, frame_size: int) -> list[int]:
        """The allowed sides nearest to ``frame_size`` (one below when there is one, one above)."""
        step = self.size_multiple
        above = max(self.min_size, -(-frame_size // step) * step)
        below = frame_size // step * step
        return ([below] if self.min_size <= below < above else []) + [above]


def is_timm_name(name: str) -> bool:
    return name.startswith(PREFIX)


def _closest(arch: str) -> str:
    import timm

    names = timm.list_models()
    close = difflib.get_close_matches(arch, names, n=5, cutoff=0.6)
    close += [n for n in names if arch and arch in n and n not in close][: 5 - len(close)]
    return ", ".join(PREFIX + n for n in close) or "none (see timm.list_models())"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # timm warns about options some architectures ignore (e.g. a missing pretrained tag); the messages we raise say it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _meta_net(tag: str, options: dict[str, object]) -> nn.Module:
    """The network's skeleton on the meta device: shapes and structure, no memory, no initialization cost."""
    import timm

    with torch.device("meta"), _quiet():
        return timm.create_model(tag, pretrained=False, **options).eval()


def _patch_size(net: nn.Module) -> int | None:
    from timm.layers import PatchEmbed

    for module in net.modules():
        if isinstance(module, PatchEmbed):
            return int(module.patch_size[0])
    return None


@cache
def resolve(name: str) -> TimmModel:
    """Parse and check ``timm/<arch>[.<tag>]``; read its pretrained config and the built network's shapes.

    Raises:
        OrbitLiteError: timm has no such model (the message lists the closest names) or no such pretrained tag.
    """
    import timm
    from timm.models import get_pretrained_cfg, split_model_name_tag

    arch, tag = split_model_name_tag(name.removeprefix(PREFIX))
    if not timm.is_model(arch):
        raise OrbitLiteError(f"timm has no model {arch!r} (from backbone {name!r}); closest: {_closest(arch)}")
    tags = [t.split(".", 1)[1] for t in timm.list_pretrained(f"{arch}.*")]
    if tag and tag not in tags:
        known = ", ".join(tags) or "none: use model.weights=none or a local file"
        raise OrbitLiteError(f"timm has no pretrained tag {tag!r} for {arch}; its tags: {known}")
    cfg = get_pretrained_cfg(f"{arch}.{tag}" if tag else arch)
    tag = tag or (cfg.tag if cfg is not None and cfg.tag in tags else "")
    full = f"{arch}.{tag}" if tag else arch
    cfg = get_pretrained_cfg(full) if tag else cfg
    mean = tuple(cfg.mean) if cfg is not None else (0.485, 0.456, 0.406)
    std = tuple(cfg.std) if cfg is not None else (0.229, 0.224, 0.225)
    default = int(cfg.input_size[-1]) if cfg is not None else 224
    sized = bool(cfg.fixed_input_size) if cfg is not None else False
    classifier = cfg.classifier if cfg is not None and cfg.classifier else ()
    classifier = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    try:
        net = _meta_net(full, {"num_classes": 0, **({"img_size": default} if sized else {})})
    except TypeError:  # a fixed-size model whose builder takes no img_size: it takes its default size only
        net, sized = _meta_net(full, {"num_classes": 0}), False
    info = getattr(net, "feature_info", None) or [{"reduction": 32}]
    stride = int(info[-1].get("reduction", 32))
    patch = _patch_size(net)
    if sized:
        multiple = patch if patch and stride <= patch else stride
        minimum = multiple
    else:
        multiple, minimum = 1, stride
    url = ""
    if tag and cfg is not None:
        url = f"https://huggingface.co/{cfg.hf_hub_id}/resolve/main/model.safetensors" if cfg.hf_hub_id else cfg.url
    dim = _feature_dim(net, default)
    return TimmModel(
        PREFIX + full,
        arch,
        full if tag else None,
        mean,
        std,
        default,
        sized,
        minimum,
        multiple,
        dim,
        classifier,
        url or "",
    )


def _feature_dim(net: nn.Module, size: int) -> int:
    with torch.no_grad():
        return int(net(torch.empty(1, 3, size, size, device="meta")).shape[-1])


@cache
def probe(name: str, frame_size: int, count_macs: bool = False) -> tuple[int, float | None] | str:
    """Run the model once at ``frame_size`` on the meta device: ``(feature_dim, MACs per frame)``, or why it cannot.

    MACs (when ``count_macs``) are counted by :class:`torch.utils.flop_counter.FlopCounterMode`, half its FLOPs (one
    multiply-accumulate is two operations); the meta device gives shapes without memory, so this costs the same at any
    size.
    """
    from torch.utils.flop_counter import FlopCounterMode

    model = resolve(name)
    counter = FlopCounterMode(display=False) if count_macs else contextlib.nullcontext()
    frames = torch.empty(1, 3, frame_size, frame_size, device="meta")
    try:
        net = _meta_net(model.tag or model.arch, model.build_options(frame_size))
        # grad stays enabled while counting: the counter's module tracker hooks into autograd
        with counter, _quiet(), torch.set_grad_enabled(count_macs):
            out = net(frames)
    except (RuntimeError, AssertionError, ValueError, TypeError) as exc:
        return " ".join(str(exc).split())[:160] or type(exc).__name__
    macs = counter.get_total_flops() / 2 if isinstance(counter, FlopCounterMode) else None
    return int(out.shape[-1]), macs


def size_error(name: str, frame_size: int) -> str | None:
    """None when the model takes ``frame_size`` as it is, else why not and the nearest sides it takes."""
    model = resolve(name)
    why = ""
    if frame_size >= model.min_size and frame_size % model.size_multiple == 0:
        if frame_size == model.default_size:
            return None  # resolve() ran the network at this size
        outcome = probe(name, frame_size)
        if isinstance(outcome, tuple):
            return None
        why = f"the network fails at that size ({outcome}); "
    nearest = [s for s in model.nearest_sizes(frame_size) if s != frame_size and isinstance(probe(name, s), tuple)]
    sizes = ", ".join(str(s) for s in nearest) or "none near"
    return f"{why}it takes {rule(model)}: nearest {sizes} (default {model.default_size})"


def rule(model: TimmModel) -> str:
    text = f"a side >= {model.min_size}"
    return text + (f" that is a multiple of {model.size_multiple}" if model.size_multiple > 1 else "")


# ---- FiLM rule ----


def film_norm_types() -> tuple[type[nn.Module], ...]:
    """torch's normalization layers and timm's own (classes defined in timm.layers' norm modules)."""
    import inspect

    from timm.layers import evo_norm, norm, norm_act

    torch_norms = (
        nn.BatchNorm1d,
        nn.BatchNorm2d,
        nn.BatchNorm3d,
        nn.SyncBatchNorm,
        nn.InstanceNorm1d,
        nn.InstanceNorm2d,
        nn.InstanceNorm3d,
        nn.LayerNorm,
        nn.GroupNorm,
        nn.RMSNorm,
    )
    timm_norms = tuple(
        cls
        for module in (norm, norm_act, evo_norm)
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, nn.Module) and cls.__module__ == module.__name__
    )
    return torch_norms + timm_norms


def film_layer_names(net: nn.Module, classifier: tuple[str, ...], types: tuple[type[nn.Module], ...]) -> list[str]:
    """The FiLM rule (module docstring): affine norm layers with a 1-d weight, outside the classifier."""
    names = []
    for name, module in net.named_modules():
        if any(name == c or name.startswith(f"{c}.") for c in classifier) or not isinstance(module, types):
            continue
        weight = getattr(module, "weight", None)
        if isinstance(weight, nn.Parameter) and weight.ndim == 1:
            names.append(name)
    return names


# ---- weights ----


def checkpoint_filter(arch: str) -> Callable[[dict[str, Tensor], nn.Module], dict[str, Tensor]] | None:
    """timm's own state_dict filter for the architecture: resamples position embeddings to the built grid, converts
    original-repository layouts; the one timm applies to its hub weights. None when the family has none."""
    from timm.models import model_entrypoint

    module = sys.modules.get(model_entrypoint(arch).__module__)
    return getattr(module, "checkpoint_filter_fn", None)


def adapt_state(model: TimmModel, state: dict[str, Tensor], net: nn.Module) -> dict[str, Tensor]:
    """A timm state_dict (hub safetensors, ``model.state_dict()``) made to fit ``net``: filtered as timm filters its
    own weights, then without the classifier, which ``net`` does not have."""
    filter_fn = checkpoint_filter(model.arch)
    if filter_fn is not None:
        with _quiet():
            state = filter_fn(dict(state), net)
    return {k: v for k, v in state.items() if not any(k.startswith(f"{c}.") for c in model.classifier)}
