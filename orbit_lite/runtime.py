"""Where a model meets its device: shape buckets, channels-last, cuDNN autotuning, pinned memory, compilation.

Every command that runs a network (train, evaluate, personalize, recognize, export's parity check) prepares it here,
so the GPU habits are decided in one place from the configuration. Each habit is "auto", "on" or "off"; "auto" turns
it on where it is expected to pay: on CUDA (and MPS for the buckets), never on the CPU, where padding and layout
changes only cost time. ``benchmarks/gpu_throughput.py`` measures them on a GPU, one at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from orbit_lite.config import DEVICES, Config, LiteConfig, TrainConfig
from orbit_lite.errors import OrbitLiteError
from orbit_lite.models.backbones import Backbone
from orbit_lite.shapes import Buckets


def select_device(name: str, option: str = "train.device=") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU. ``option`` is how the user gave it (``train.device=`` in a
    config, ``--device `` on commands that take the flag), so that the fix names what they can change."""
    if name not in DEVICES:
        raise OrbitLiteError(f"unknown device {name!r}; expected one of {', '.join(DEVICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise OrbitLiteError(f"{option}cuda but no CUDA device is visible; use {option}cpu or {option}auto")
    if name == "mps" and not torch.backends.mps.is_available():
        raise OrbitLiteError(f"{option}mps but Apple MPS is not available; use {option}cpu or {option}auto")
    return torch.device(name)


def _wanted(setting: str, device: torch.device) -> bool:
    return setting == "on" or (setting == "auto" and device.type == "cuda")


@dataclass(frozen=True)
class Runtime:
    """What was applied to a model on ``device`` (the training loop reads ``pin_memory`` from it)."""

    device: str
    buckets: bool
    channels_last: bool
    cudnn_benchmark: bool
    pin_memory: bool
    compiled: bool


def buckets_of(lite: LiteConfig) -> Buckets:
    """The shape buckets a model is built with (``create_learner(..., buckets=buckets_of(cfg.lite))``)."""
    return Buckets(lite.buckets, lite.bucket_step, lite.bucket_largest)


def prepare_backbone(
    backbone: Backbone, device: torch.device, train: TrainConfig | None = None, allow_compile: bool = True
) -> Runtime:
    """Apply the configured habits to ``backbone`` (already on ``device``, built with its shape buckets); defaults
    when no config is given.

    ``allow_compile=False`` for one-off commands (evaluate, personalize), where compiling costs more than it saves."""
    train = train or TrainConfig()
    bucketed = backbone.buckets.active(device)
    channels_last = backbone.use_channels_last(_wanted(train.channels_last, device))
    # cuDNN's per-shape autotuning pays only when shapes repeat, which the buckets guarantee.
    benchmark = device.type == "cuda" and (
        train.cudnn_benchmark == "on" or (train.cudnn_benchmark == "auto" and bucketed)
    )
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = benchmark
    compiled = train.compile and allow_compile
    if compiled:
        backbone.compile_per_bucket()
    return Runtime(device.type, bucketed, channels_last, benchmark, pin_memory(train, device), compiled)


def pin_memory(train: TrainConfig, device: torch.device) -> bool:
    """Whether task tensors should be page-locked, so their copies to the GPU can overlap with compute."""
    return device.type == "cuda" and train.pin_memory != "off"


def prepare(learner: torch.nn.Module, cfg: Config, device: torch.device, allow_compile: bool = True) -> Runtime:
    """Prepare a learner's backbone (its set encoder shares the backbone's buckets), built from ``cfg``."""
    if learner.backbone.buckets != buckets_of(cfg.lite):  # a model built without the config's buckets: a bug
        raise ValueError(f"the learner was built with {learner.backbone.buckets}, not cfg.lite's buckets")
    return prepare_backbone(learner.backbone, device, cfg.train, allow_compile)
