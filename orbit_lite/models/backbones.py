"""Registry of feature extractors: frames ``[B, 3, S, S]`` -> features ``[B, D]``, with FiLM-able norm layers.

Each :class:`BackboneSpec` carries what belongs to the model (timm's "pretrained configs travel with the model"):
input normalization, the weight source, the size rule, and which norm layers FiLM adapts
(:mod:`orbit_lite.models.backbone_specs`). :class:`Backbone` turns uint8 frames into features and applies FiLM by
swapping the adapted layers' affine parameters for the FiLM-ed ones (:func:`orbit_lite.models.film.film_affine`, in
the backbone's FiLM style) inside :func:`torch.func.functional_call`, without touching the module tree.

Two registered families: torchvision's ImageNet models, and the ORBIT reference code's timm models
(``tf_efficientnet_b0``, ``tf_efficientnetv2_s_in21k``, ``vit_b_32_in21k``, ``vit_b_32_clip_laion2b``), with the
reference's own weights, normalization and FiLM layers, so that its checkpoints load into them. Besides
them, any timm image model by name, ``timm/<model>[.<tag>]``, with what timm says about it and orbit-lite's
generic FiLM rule (:mod:`orbit_lite.models.timm_any`).

Normalization statistics are frozen: BatchNorm always uses its running statistics and dropout / stochastic depth are
off, even in ``train()`` mode, so a frame's features never depend on the other frames in its batch. LITE relies on
this: the rows it back-propagates through are recomputed in a different batch than the cached ones.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.ops import StochasticDepth

from orbit_lite.checkpoint import read_torch_file
from orbit_lite.errors import OrbitLiteError
from orbit_lite.models import timm_any, timm_backbones
from orbit_lite.models.backbone_specs import (
    BACKBONES,
    BackboneSpec,
    StateDict,
    available_backbones,
    backbone_spec,
    check_frame_size,
)
from orbit_lite.models.film import FILM_STYLES, film_affine
from orbit_lite.shapes import Buckets, run_bucketed

Film = dict[str, tuple[Tensor, Tensor]]
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

    def __init__(
        self,
        spec: BackboneSpec,
        net: nn.Module,
        frame_size: int,
        film_style: str = "orbit_lite",
        buckets: Buckets = Buckets(),
    ) -> None:
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
        self.film_scale_only = frozenset(
            n for n, _ in self.film_layers if getattr(net.get_submodule(n), "bias", None) is None
        )
        self.buckets = buckets  # which batch sizes the network sees (orbit_lite.shapes): the config's lite.bucket*
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

    def use_cuda_graphs(self) -> None:
        """Replay no-grad, FiLM-free CUDA calls from one CUDA graph per bucket (:mod:`orbit_lite.models.graphs`)."""
        from orbit_lite.models.graphs import GraphedForward

        self._features = GraphedForward(self._eager_features)

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
    name: str,
    weights: str = "none",
    frame_size: int = 224,
    film_style: str = "orbit_lite",
    buckets: Buckets = Buckets(),
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
        buckets: the batch sizes the network may see (default: ``LiteConfig``'s, padded on CUDA and MPS only).

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
        return Backbone(spec, build(frame_size), frame_size, film_style, buckets)
    net = spec.builder(frame_size)
    if weights in PRETRAINED and spec.local_weights is not None:
        _load_state(spec, net, spec.local_weights(net), f"pretrained weights of {name}")
    elif weights in PRETRAINED:
        _load_state(spec, net, _download(spec), f"ImageNet weights {spec.weights}")
    elif weights != "none":
        _load_state(spec, net, _read_file(spec, Path(weights)), f"weights file {weights}")
    return Backbone(spec, net, frame_size, film_style, buckets)


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


__all__ = [  # the registry lives in backbone_specs; kept importable from here
    "BACKBONES",
    "PRETRAINED",
    "Backbone",
    "BackboneSpec",
    "available_backbones",
    "backbone_spec",
    "check_frame_size",
    "create_backbone",
]
