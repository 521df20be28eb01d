"""Frozen dataclasses are the configuration schema; YAML layers and ``a.b=c`` overrides build them.

Every constant of the reference code's task sampling is an option here with the reference value as its default
(spec orbit.md 2.2, 2.4 and 10.7); the resolved values are saved with every run and result.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, TypeVar

import yaml

from orbit_lite.errors import OrbitLiteError
from orbit_lite.shapes import MODES as SWITCHES  # the buckets' modes are one of these switches
from orbit_lite.shapes import Buckets

# "auto", "on" or "off" (YAML's bare on/off booleans are accepted too)
Switch = typing.NewType("Switch", str)

T = TypeVar("T")

WAY_METHODS = ("random", "max")
SHOT_METHODS = ("random", "max", "fixed", "specific")
CLIP_METHODS = ("random", "max", "uniform", "random_200")
MODEL_STYLES = ("orbit_lite", "reference")
DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class SamplingConfig:
    """How one kind of task (train or test) is drawn from a user's videos.

    Defaults are the reference code's *training* settings; :func:`evaluation_sampling` gives the test protocol's.
    """

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
        _choice("way_method", self.way_method, WAY_METHODS)
        _choice("context_shot_method", self.context_shot_method, SHOT_METHODS)
        _choice("target_shot_method", self.target_shot_method, SHOT_METHODS)
        _choice("context_clip_method", self.context_clip_method, CLIP_METHODS)
        _choice("target_clip_method", self.target_clip_method, CLIP_METHODS)
        _choice("context_video_type", self.context_video_type, ("clean",))
        _choice("target_video_type", self.target_video_type, ("clutter", "clean"))
        for name in ("object_cap", "min_way", "context_shot_cap", "target_shot_cap", "clip_length",
                     "subsample_factor", "frame_cap", "clip_cap", "clean_context_videos"):  # fmt: skip
            if getattr(self, name) < 1:
                raise OrbitLiteError(f"sampling.{name} must be >= 1, got {getattr(self, name)}")
        from orbit_lite.data.annotations import expand_filter  # validates the tags

        expand_filter(self.context_filter)
        expand_filter(self.target_filter)


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
        if self.frame_size < 8:
            raise OrbitLiteError(f"data.frame_size must be >= 8, got {self.frame_size}")
        _choice("video_backend", self.video_backend, ("auto", "decord", "opencv"))
        for name in ("num_workers", "decode_threads"):
            if getattr(self, name) < 0:
                raise OrbitLiteError(f"data.{name} must be >= 0, got {getattr(self, name)}")


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
        _choice("model.style", self.style, MODEL_STYLES)


@dataclass(frozen=True)
class LiteConfig:
    """LITE: back-propagate ``h`` random context clips per task; forward everything else in no-grad chunks."""

    enabled: bool = True
    h: int = 16
    chunk_size: int = 256  # clips per no-grad forward of the context set (and per test-time chunk)
    query_chunk: int = 256  # query clips per forward/backward
    # Shape discipline (orbit_lite.shapes): the networks see batch sizes 1, 2, 4, ... bucket_step, then multiples of
    # bucket_step up to bucket_largest. auto: padded on CUDA/MPS, where each new shape costs a cuDNN set-up.
    buckets: Switch = Switch("auto")
    bucket_step: int = 32
    bucket_largest: int = 256

    def __post_init__(self) -> None:
        for name in ("h", "chunk_size", "query_chunk"):
            if getattr(self, name) < 1:
                raise OrbitLiteError(f"lite.{name} must be >= 1, got {getattr(self, name)}")
        Buckets(self.buckets, self.bucket_step, self.bucket_largest)  # validates the three together


@dataclass(frozen=True)
class FinetuneConfig:
    """How the FineTuner learners personalize: gradient steps on the context set, per task, from a zero linear head.

    Defaults are the reference code's test settings (``multi-step-learner.py``, spec orbit.md 3.6 and 7)."""

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
        _choice("finetune.optimizer", self.optimizer, ("adam", "sgd"))
        for name in ("steps", "batch_size", "h"):
            if getattr(self, name) < 1:
                raise OrbitLiteError(f"finetune.{name} must be >= 1, got {getattr(self, name)}")
        for name, strict in (("lr", True), ("eps", True), ("weight_decay", False), ("momentum", False),
                             ("extractor_lr_scale", False)):  # fmt: skip
            value = getattr(self, name)
            if not math.isfinite(value) or not (value > 0 if strict else value >= 0):
                raise OrbitLiteError(
                    f"finetune.{name} must be {'a positive number' if strict else '>= 0'}, got {value}"
                )
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise OrbitLiteError(f"finetune.betas needs two numbers in [0, 1), got {list(self.betas)}")


@dataclass(frozen=True)
class TrainConfig:
    """Meta-training schedule; defaults are the reference code's (spec orbit.md 5 and 7)."""

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
    # GPU habits (orbit_lite.engine.runtime), each "auto", "on" or "off"; auto applies them on CUDA.
    channels_last: Switch = Switch("auto")  # NHWC weights and activations for convolutional backbones
    pin_memory: Switch = Switch("auto")  # page-locked task tensors, copied to the GPU without blocking
    cudnn_benchmark: Switch = Switch("auto")  # cuDNN autotuning per shape (pays once shapes are bucketed)
    log_every: int = 1  # optimizer steps between metrics.jsonl lines
    checkpoint_every: int = 0  # optimizer steps between mid-epoch saves of last.pt; 0: at the end of epochs only
    init: str = ""  # a training checkpoint (e.g. from `orbit-lite import-orbit`) whose weights a new run starts from

    def __post_init__(self) -> None:
        _choice("train.optimizer", self.optimizer, ("adam", "adamw"))
        _choice("train.scheduler", self.scheduler, ("constant", "multistep", "cosine"))
        _choice("train.device", self.device, DEVICES)
        for name in ("channels_last", "pin_memory", "cudnn_benchmark"):
            _choice(f"train.{name}", getattr(self, name), SWITCHES)  # also when built in code
        for name in ("epochs", "tasks_per_user", "tasks_per_batch", "val_every", "val_tasks_per_user", "log_every"):
            if getattr(self, name) < 1:
                raise OrbitLiteError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_epochs", "checkpoint_every", "seed"):
            if getattr(self, name) < 0:
                raise OrbitLiteError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        # `x > 0` is False for NaN, so every check below also refuses NaN (and the finite check refuses infinity)
        for name, low, strict in (("lr", 0.0, True), ("warmup_lr", 0.0, False), ("min_lr", 0.0, False),
                                  ("weight_decay", 0.0, False), ("eps", 0.0, True), ("decay_rate", 0.0, True),
                                  ("grad_clip", 0.0, False), ("backbone_lr_scale", 0.0, False)):  # fmt: skip
            value = getattr(self, name)
            if not math.isfinite(value) or not (value > low if strict else value >= low):
                need = "a positive number" if strict else "a number >= 0"
                raise OrbitLiteError(f"train.{name} must be {need}, got {value}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise OrbitLiteError(f"train.betas needs two numbers in [0, 1), got {list(self.betas)}")
        if self.scheduler == "multistep" and self.decay_epochs < 1:  # the schedule divides by it
            raise OrbitLiteError(
                f"train.decay_epochs must be >= 1 with the multistep scheduler, got {self.decay_epochs}"
            )


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


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise OrbitLiteError(f"{name}={value!r} is not one of: {', '.join(choices)}")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise OrbitLiteError(f"{where}: expected a list, got {value!r}")
        item = typing.get_args(hint)[0]
        return tuple(_coerce(v, item, where) for v in value)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return None if value is None else _coerce(value, args[0], where)
    if hint is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        if not isinstance(value, bool):
            raise OrbitLiteError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint in (int, float):
        try:
            out = hint(value)
        except (TypeError, ValueError):
            raise OrbitLiteError(f"{where}: expected a number, got {value!r}") from None
        if hint is int and isinstance(value, float) and value != out:
            raise OrbitLiteError(f"{where}: expected an integer, got {value!r}")
        return out
    if hint is Switch:  # YAML reads a bare on/off as a boolean
        value = {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value
        if value not in SWITCHES:
            raise OrbitLiteError(f"{where}: expected auto, on or off, got {value!r}")
        return value
    if hint is str and not isinstance(value, str):
        raise OrbitLiteError(f"{where}: expected text, got {value!r}")
    return value


def from_dict(cls: type[T], values: Mapping[str, Any], where: str = "config", base: T | None = None) -> T:
    """Build dataclass ``cls`` from a (nested) mapping on top of ``base`` (default: the class defaults).

    Nested sections start from the field's own default, so ``test_sampling: {frame_cap: 500}`` keeps every other
    test-protocol default. Unknown keys are an error that lists the valid ones.
    """
    if not isinstance(values, Mapping):
        raise OrbitLiteError(f"{where}: expected a mapping of keys, got {values!r}")
    hints = typing.get_type_hints(cls)
    by_name = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(by_name))
    if unknown:
        raise OrbitLiteError(f"unknown key {where}.{unknown[0]}; valid keys: {', '.join(sorted(by_name))}")
    kwargs = {}
    for key, value in values.items():
        hint, here = hints[key], f"{where}.{key}"
        if is_dataclass(hint):
            sub_base = getattr(base, key) if base is not None else _field_default(by_name[key])
            kwargs[key] = from_dict(hint, value, here, sub_base)
        else:
            kwargs[key] = _coerce(value, hint, here)
    try:
        return dataclasses.replace(base, **kwargs) if base is not None else cls(**kwargs)
    except OrbitLiteError as e:
        # SamplingConfig serves two sections and names itself "sampling."; say which one the user wrote
        section = where.removeprefix("config.")
        if cls is SamplingConfig and str(e).startswith("sampling.") and section != "config":
            raise OrbitLiteError(f"{section}.{str(e).removeprefix('sampling.')}") from None
        raise


def _field_default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) for YAML/JSON."""

    def plain(v: Any) -> Any:
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(config))


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=c`` overrides (YAML-parsed values) to a nested dict, returning a new dict."""
    out = _deep_copy(values)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise OrbitLiteError(f"override {item!r} is not key=value (e.g. data.frame_size=84)")
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise OrbitLiteError(f"override {item!r}: {part} is not a section")
        node[parts[-1]] = yaml.safe_load(raw) if raw else ""
    return out


def _deep_copy(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in values.items()}


def merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: ``top`` wins."""
    out = _deep_copy(base)
    for k, v in top.items():
        out[k] = merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


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
