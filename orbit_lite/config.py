"""Frozen dataclasses are the configuration schema; YAML layers and ``a.b=c`` overrides build them.

Every constant of the reference code's task sampling is an option here with the reference value as its default;
the resolved values are saved with every run and result.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import yaml

from orbit_lite.coerce import apply_overrides, from_dict, merge, to_dict
from orbit_lite.errors import OrbitLiteError
from orbit_lite.limits import (
    AUTO,
    CLIP_METHODS,
    DEVICES,
    LIMITS,
    OFF,
    SHOT_METHODS,
    WAY_METHODS,
    Switch,
    check_limits,
)
from orbit_lite.shapes import Buckets
from orbit_lite.tags import expand_filter

T = TypeVar("T")


@dataclass(frozen=True)
class SamplingConfig:
    """How one kind of task (train or test) is drawn from a user's videos.

    Defaults are the reference code's *training* settings; :func:`evaluation_sampling` gives the test protocol's.
    """

    SHARED_SECTION: typing.ClassVar[str] = "sampling"  # train_sampling and test_sampling: messages name the one

    way_method: str = "random"
    object_cap: int = 15
    min_way: int = 2
    context_video_type: str = "clean"
    target_video_type: str = "clutter"
    context_shot_method: str = "random"
    target_shot_method: str = "random"
    context_shot: int = 5
    target_shot: int = 2
    context_shot_cap: int = 15
    target_shot_cap: int = 15
    with_train_shot_caps: bool = False
    context_clip_method: str = "uniform"
    target_clip_method: str = "random"
    clip_length: int = 1
    subsample_factor: int = 30
    frame_cap: int = 1000
    clip_cap: int = 200
    clean_context_videos: int = 5  # clean/clean split: first min(5, n-1) clean videos (by name) are context
    min_context_frames: int = 1
    min_target_frames: int = 50
    context_filter: tuple[str, ...] = ()
    target_filter: tuple[str, ...] = ()
    require_annotations: bool = False
    drop_objects_without_target: bool = True

    def __post_init__(self) -> None:
        check_limits(self, "sampling")
        for name in ("context_filter", "target_filter"):
            try:
                expand_filter(getattr(self, name))
            except OrbitLiteError as e:
                raise OrbitLiteError(f"sampling.{name}: {e}") from None


def training_sampling(**overrides: Any) -> SamplingConfig:
    """Reference training tasks (spec 2.2): random way, random shots, uniform context / random target clips."""
    return SamplingConfig(**overrides)


def evaluation_sampling(**overrides: Any) -> SamplingConfig:
    """The ORBIT 2022 test protocol (spec 2.4): all objects, all videos, uniform context, 200 random target frames
    per video from the frames where the object is present; a video with under 50 such frames is left out, but its
    object stays in the task (orbit-lite decision 10.6)."""
    base = dict(
        way_method="max",
        context_shot_method="max",
        target_shot_method="max",
        context_clip_method="uniform",
        target_clip_method="random_200",
        target_filter=("no_object_not_present_issue",),
        drop_objects_without_target=False,
    )
    base.update(overrides)
    return SamplingConfig(**base)


@dataclass(frozen=True)
class DataConfig:
    """Where frames come from and how they are decoded."""

    frame_size: int = 224
    video_backend: str = "auto"
    num_workers: int = 2
    decode_threads: int = 0  # JPEG-decoding threads outside loader workers (evaluation); 0: up to 8, 1 in workers

    def __post_init__(self) -> None:
        check_limits(self, "data")


@dataclass(frozen=True)
class ModelConfig:
    """Which recognizer: a learner (registry name) over a backbone, with its head and adaptation.

    Empty / None values take the learner's defaults (see ``orbit_lite.learners``).
    """

    learner: str = "protonets"
    backbone: str = "efficientnet_b0"
    weights: str = "imagenet"  # "imagenet" or "pretrained" (the backbone's own), "none" (random init) or a local file
    head: str = ""
    logit_scale: float = 0.0  # 0: the head's default
    learn_scale: bool = False
    film: bool | None = None
    learn_backbone: bool | None = None
    set_encoder_width: int = 64
    film_reg_weight: float = 0.001
    # "orbit_lite": our FiLM (gamma * norm(x) + beta), GroupNorm set encoder and Versa networks. "reference": the ORBIT
    # reference code's FiLM formula, BatchNorm set encoder on the backbone's normalized frames, 1-wide Versa bias
    # network and one-frame Mahalanobis covariance, so that its published checkpoints compute what they computed there.
    style: str = "orbit_lite"

    def __post_init__(self) -> None:
        check_limits(self, "model")


@dataclass(frozen=True)
class LiteConfig:
    """LITE: back-propagate ``h`` random context clips per task; forward everything else in no-grad chunks."""

    enabled: bool = True
    h: int = 16
    chunk_size: int = 256  # clips per no-grad forward of the context set (and per test-time chunk)
    query_chunk: int = 256  # query clips per forward/backward
    # Shape discipline (orbit_lite.shapes): the networks see batch sizes 1, 2, 4, ... bucket_step, then multiples of
    # bucket_step up to bucket_largest. auto: padded on CUDA/MPS, where each new shape costs a cuDNN set-up.
    buckets: Switch = AUTO
    bucket_step: int = 32
    bucket_largest: int = 256

    def __post_init__(self) -> None:
        check_limits(self, "lite")
        Buckets(self.buckets, self.bucket_step, self.bucket_largest)  # validates the three together


@dataclass(frozen=True)
class FinetuneConfig:
    """How the FineTuner learners personalize: gradient steps on the context set, per task, from a zero linear head.

    Defaults are the reference code's test settings (``multi-step-learner.py``)."""

    steps: int = 50
    optimizer: str = "adam"  # adam | sgd
    lr: float = 1e-3
    betas: tuple[float, ...] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    momentum: float = 0.0  # sgd only
    # Learning-rate factor of the tuned backbone parameters (FiLM). The reference puts it in the optimizer's parameter
    # group as "lr_scale", which torch's Adam and SGD ignore; model.style=reference keeps that (no effect).
    extractor_lr_scale: float = 1.0
    batch_size: int = 1024  # context clips per forward/backward when gradients reach the backbone (reference: 1024)
    # finetuner_film: LITE at personalization, h random context clips back-propagated per step (all of them when N <= h)
    lite: bool = True
    h: int = 16

    def __post_init__(self) -> None:
        check_limits(self, "finetune")


@dataclass(frozen=True)
class TrainConfig:
    """Meta-training schedule; defaults are the reference code's."""

    epochs: int = 30
    tasks_per_user: int = 50
    tasks_per_batch: int = 16
    optimizer: str = "adam"
    lr: float = 5e-6
    backbone_lr_scale: float = 1.0
    weight_decay: float = 0.2
    betas: tuple[float, ...] = (0.9, 0.98)
    eps: float = 1e-6
    scheduler: str = "multistep"
    warmup_epochs: int = 5
    warmup_lr: float = 1e-6
    decay_epochs: int = 15
    decay_rate: float = 0.5
    min_lr: float = 1e-6
    grad_clip: float = 0.0  # 0: off
    val_every: int = 1
    val_tasks_per_user: int = 30
    seed: int = 1991
    bf16: bool = False
    compile: bool = False  # torch.compile the backbone, once per batch-size bucket
    device: str = "auto"
    # GPU habits (orbit_lite.runtime), each "auto", "on" or "off"; auto applies them on CUDA.
    channels_last: Switch = AUTO  # NHWC weights and activations for convolutional backbones
    pin_memory: Switch = AUTO  # page-locked task tensors, copied to the GPU without blocking
    cudnn_benchmark: Switch = AUTO  # cuDNN autotuning per shape (pays once shapes are bucketed)
    batch_context: Switch = AUTO  # the no-grad context forwards of a step's tasks in one batch (same values)
    warmup: Switch = AUTO  # every bucket through the backbone once before the first task (per-shape set-up)
    tf32: Switch = AUTO  # TF32 matmuls and convolutions on CUDA; auto: on, but off for model.style=reference
    fused_adam: Switch = AUTO  # the optimizer's fused kernel (one launch per step, no per-tensor loop)
    cuda_graphs: Switch = OFF  # no-grad backbone forwards replayed from one CUDA graph per bucket (CUDA only)
    tensorboard: Switch = AUTO  # event files in <run>/tensorboard; auto: when the package is installed
    log_every: int = 1  # optimizer steps between metrics.jsonl lines
    checkpoint_every: int = 0  # optimizer steps between mid-epoch saves of last.pt; 0: at the end of epochs only
    init: str = ""  # a training checkpoint (e.g. from `orbit-lite import-orbit`) whose weights a new run starts from

    def __post_init__(self) -> None:
        check_limits(self, "train")
        if self.min_lr > self.lr:  # the schedules decay towards min_lr
            raise OrbitLiteError(f"train.min_lr must be <= train.lr ({self.lr:g}), got {self.min_lr:g}")


@dataclass(frozen=True)
class Config:
    """The whole configuration: data, sampling, model, LITE, training and fine-tuning (FineTuner learners)."""

    data: DataConfig = field(default_factory=DataConfig)
    train_sampling: SamplingConfig = field(default_factory=training_sampling)
    test_sampling: SamplingConfig = field(default_factory=evaluation_sampling)
    model: ModelConfig = field(default_factory=ModelConfig)
    lite: LiteConfig = field(default_factory=LiteConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)


def load_config(paths: list[str] | None = None, overrides: list[str] | None = None, cls: type[T] = Config) -> T:
    """Defaults <- each YAML file in order <- ``key=value`` overrides."""
    values: dict[str, Any] = {}
    for path in paths or []:
        try:
            with open(path) as f:
                layer = yaml.safe_load(f) or {}
        except OSError as e:
            raise OrbitLiteError(f"{path}: cannot read config ({e.strerror})") from None
        except UnicodeDecodeError:
            raise OrbitLiteError(f"{path}: not a text file; a config is a YAML file") from None
        except yaml.YAMLError as e:
            raise OrbitLiteError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(layer, Mapping):
            raise OrbitLiteError(f"{path}: a config file must be a mapping of sections")
        values = merge(values, layer)
    values = apply_overrides(values, overrides or [])
    return from_dict(cls, values)


__all__ = [  # the schema, and what building it takes (kept importable from here)
    "CLIP_METHODS",
    "DEVICES",
    "LIMITS",
    "SHOT_METHODS",
    "WAY_METHODS",
    "Config",
    "DataConfig",
    "FinetuneConfig",
    "LiteConfig",
    "ModelConfig",
    "SamplingConfig",
    "TrainConfig",
    "apply_overrides",
    "check_limits",
    "evaluation_sampling",
    "from_dict",
    "load_config",
    "merge",
    "to_dict",
    "training_sampling",
]
