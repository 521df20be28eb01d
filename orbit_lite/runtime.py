"""Where a model meets its device: shape buckets, channels-last, cuDNN autotuning, pinned memory, compilation,
TF32, batched context forwards, a warm-up over the buckets, fused Adam and CUDA graphs.

Every command that runs a network (train, evaluate, personalize, recognize, export's parity check) prepares it here,
so the GPU habits are decided in one place from the configuration. Each habit is "auto", "on" or "off"; "auto" turns
it on where it is expected to pay: on CUDA (and MPS for the buckets), never on the CPU, where padding and layout
changes only cost time. ``benchmarks/gpu_throughput.py`` measures them on a GPU, one at a time. Every habit that
changes how a value is computed (batched context forwards, fused Adam) gives the same values on the CPU within 1e-6
(tested); TF32 changes them (10-bit mantissas in matmuls and convolutions), so it is off where orbit-lite claims the
reference code's numbers (``model.style=reference``).
"""

from __future__ import annotations

import os
import resource
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
    tf32: bool = False
    cuda_graphs: bool = False
    batch_context: bool = False  # the training loop forwards a step's no-grad context rows together
    warmup: bool = False  # the training loop runs every bucket once before the first task
    fused_adam: bool = False


def buckets_of(lite: LiteConfig) -> Buckets:
    """The shape buckets a model is built with (``create_learner(..., buckets=buckets_of(cfg.lite))``)."""
    return Buckets(lite.buckets, lite.bucket_step, lite.bucket_largest)


def prepare_backbone(
    backbone: Backbone,
    device: torch.device,
    train: TrainConfig | None = None,
    allow_compile: bool = True,
    style: str = "orbit_lite",
) -> Runtime:
    """Apply the configured habits to ``backbone`` (already on ``device``, built with its shape buckets); defaults
    when no config is given.

    ``allow_compile=False`` for one-off commands (evaluate, personalize), where compiling costs more than it saves.
    ``style``: the model's (``model.style``); TF32's ``auto`` is off for ``reference``."""
    train = train or TrainConfig()
    if train.cuda_graphs == "on" and device.type != "cuda":
        raise OrbitLiteError(f"train.cuda_graphs=on needs a CUDA device, not {device.type}; use auto or off")
    bucketed = backbone.buckets.active(device)
    channels_last = backbone.use_channels_last(_wanted(train.channels_last, device))
    # cuDNN's per-shape autotuning pays only when shapes repeat, which the buckets guarantee.
    benchmark = device.type == "cuda" and (
        train.cudnn_benchmark == "on" or (train.cudnn_benchmark == "auto" and bucketed)
    )
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = benchmark
    tf32 = device.type == "cuda" and (train.tf32 == "on" or (train.tf32 == "auto" and style != "reference"))
    if device.type == "cuda":
        set_tf32(tf32)
    compiled = train.compile and allow_compile
    if compiled:
        backbone.compile_per_bucket()
    graphs = _wanted(train.cuda_graphs, device) and not compiled  # a compiled network is not captured again
    if graphs:
        backbone.use_cuda_graphs()
    return Runtime(
        device.type,
        bucketed,
        channels_last,
        benchmark,
        pin_memory(train, device),
        compiled,
        tf32,
        graphs,
        batch_context=_wanted(train.batch_context, device),
        warmup=_wanted(train.warmup, device) and bucketed,
        fused_adam=_wanted(train.fused_adam, device),
    )


def set_tf32(on: bool) -> None:
    """TF32 for float32 matmuls and cuDNN convolutions (process-wide, as torch keeps it)."""
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn
    if hasattr(matmul, "fp32_precision") and hasattr(getattr(conv, "conv", None), "fp32_precision"):
        matmul.fp32_precision = conv.conv.fp32_precision = "tf32" if on else "ieee"  # torch >= 2.9
    else:
        matmul.allow_tf32 = conv.allow_tf32 = on


def pin_memory(train: TrainConfig, device: torch.device) -> bool:
    """Whether task tensors should be page-locked, so their copies to the GPU can overlap with compute."""
    return device.type == "cuda" and train.pin_memory != "off"


def prepare(learner: torch.nn.Module, cfg: Config, device: torch.device, allow_compile: bool = True) -> Runtime:
    """Prepare a learner's backbone (its set encoder shares the backbone's buckets), built from ``cfg``."""
    if learner.backbone.buckets != buckets_of(cfg.lite):  # a model built without the config's buckets: a bug
        raise ValueError(f"the learner was built with {learner.backbone.buckets}, not cfg.lite's buckets")
    return prepare_backbone(learner.backbone, device, cfg.train, allow_compile, cfg.model.style)


def warm_up(learner: torch.nn.Module, lite: LiteConfig) -> int:
    """Every bucket through the backbone once, without and with a graph (forward and backward), before the first
    task: cuDNN's per-shape set-up (algorithm search, workspaces) is then paid here, in one go, not spread over the
    first hundreds of tasks. Zero frames, gradients taken with ``autograd.grad`` (nothing lands in ``.grad``) and
    frozen normalization: the learner is left exactly as it was. Returns the number of backbone calls made.

    The set encoder of FiLM learners is left out: the reference style's updates its BatchNorm statistics."""
    backbone: Backbone = learner.backbone
    device = backbone.input_scale.device
    size = backbone.frame_size
    params = [p for p in backbone.parameters() if p.requires_grad]
    largest_graph = backbone.buckets.bucket(min(max(lite.h, lite.query_chunk), backbone.buckets.largest))
    calls = 0
    for rows in backbone.buckets.sizes:
        frames = torch.zeros((rows, 3, size, size), dtype=torch.uint8, device=device)
        with torch.no_grad():
            learner.clip_features(frames, None)
        grad_rows = rows <= largest_graph  # no larger batch ever carries a graph
        if params and grad_rows:
            out = learner.clip_features(frames, None)
            torch.autograd.grad(out.sum(), params, allow_unused=True)
        calls += 1 + (bool(params) and grad_rows)
    return calls


def memory_mb(device: torch.device) -> float:
    """Peak GPU memory on CUDA; elsewhere the process's resident memory now (peak where /proc is missing)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # not Linux: peak RSS instead of current
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
