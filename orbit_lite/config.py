"""Frozen dataclasses are the configuration schema; YAML layers and ``a.b=c`` overrides build them.

Every constant of the reference code's task sampling is an option here with the reference value as its default
(docs/reference.md 2.2, 2.4 and 10); the resolved values are saved with every run and result.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, TypeVar

import yaml

from orbit_lite.errors import OrbitLiteError
from orbit_lite.models.names import HEAD_NAMES, LEARNER_NAMES, backbone_problem
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
class Limit:
    """What a key may hold besides its declared type: a range of numbers, a set of choices, a list length.

    For a list (``tuple[...]``) the range applies to each item.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # the range excludes ``low`` itself
    high_open: bool = False
    choices: tuple[str, ...] = ()
    length: int | None = None

    def allows(self, value: Any) -> bool:
        if self.choices:
            return value in self.choices
        # comparisons are False for NaN, so NaN is never inside a range
        if self.low is not None and not (value > self.low if self.low_open else value >= self.low):
            return False
        return self.high is None or bool(value < self.high if self.high_open else value <= self.high)

    def describe(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        low = None if self.low is None else f"{'>' if self.low_open else '>='} {_number(self.low)}"
        high = None if self.high is None else f"{'<' if self.high_open else '<='} {_number(self.high)}"
        if low and high:
            return (f"in {'(' if self.low_open else '['}{_number(self.low)}, {_number(self.high)}"
                    f"{')' if self.high_open else ']'}")  # fmt: skip
        return low or high or ""


def _number(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def at_least(low: float) -> Limit:
    return Limit(low=low)


def above(low: float) -> Limit:
    return Limit(low=low, low_open=True)


def one_of(choices: tuple[str, ...]) -> Limit:
    return Limit(choices=choices)


ANY = Limit()  # only the type is checked (names resolved by a registry, file paths, switches, booleans)

# Every key of every section: the values it takes beyond its type (the dataclass annotation). One table, so that a
# new key cannot go unchecked (every field must be listed) and a mistake is found before a run writes anything.
# SamplingConfig serves train_sampling and test_sampling; cross-field rules are in each class's __post_init__.
LIMITS: dict[str, dict[str, Limit]] = {
    "sampling": {
        "way_method": one_of(WAY_METHODS),
        "object_cap": at_least(1),
        "min_way": at_least(1),
        "context_video_type": one_of(("clean",)),
        "target_video_type": one_of(("clutter", "clean")),
        "context_shot_method": one_of(SHOT_METHODS),
        "target_shot_method": one_of(SHOT_METHODS),
        "context_shot": at_least(1),
        "target_shot": at_least(1),
        "context_shot_cap": at_least(1),
        "target_shot_cap": at_least(1),
        "with_train_shot_caps": ANY,
        "context_clip_method": one_of(CLIP_METHODS),
        "target_clip_method": one_of(CLIP_METHODS),
        "clip_length": at_least(1),
        "subsample_factor": at_least(1),
        "frame_cap": at_least(1),
        "clip_cap": at_least(1),
        "clean_context_videos": at_least(1),
        "min_context_frames": at_least(1),
        "min_target_frames": at_least(1),
        "context_filter": ANY,  # tag names: checked by annotations.expand_filter
        "target_filter": ANY,
        "require_annotations": ANY,
        "drop_objects_without_target": ANY,
    },
    "data": {
        "frame_size": Limit(low=8, high=1024),  # ORBIT's frames are at most 1080 px tall: larger only upsamples
        "video_backend": one_of(("auto", "decord", "opencv")),
        "num_workers": at_least(0),
        "decode_threads": at_least(0),
    },
    "model": {
        # registry names are checked against orbit_lite.models.names: a misspelt one answers before torch loads
        "learner": ANY,  # a registered name (ModelConfig.__post_init__)
        "backbone": ANY,  # a registered name or timm/<model>: ModelConfig.__post_init__
        "weights": ANY,
        "head": ANY,  # "" (the learner's own) or a registered name (ModelConfig.__post_init__)
        "logit_scale": at_least(0.0),  # 0: the head's default
        "learn_scale": ANY,
        "film": ANY,
        "learn_backbone": ANY,
        "set_encoder_width": at_least(1),
        "film_reg_weight": at_least(0.0),
        "style": one_of(MODEL_STYLES),
    },
    "finetune": {
        "steps": at_least(1),
        "optimizer": one_of(("adam", "sgd")),
        "lr": above(0.0),
        "betas": Limit(low=0.0, high=1.0, high_open=True, length=2),
        "eps": above(0.0),
        "weight_decay": at_least(0.0),
        "momentum": at_least(0.0),
        "extractor_lr_scale": at_least(0.0),
        "batch_size": at_least(1),
        "lite": ANY,
        "h": at_least(1),
    },
    "lite": {
        "enabled": ANY,
        "h": at_least(1),
        "chunk_size": at_least(1),
        "query_chunk": at_least(1),
        "buckets": ANY,  # and the three bucket keys together: shapes.Buckets
        "bucket_step": at_least(1),
        "bucket_largest": at_least(1),
    },
    "train": {
        "epochs": at_least(0),  # 0: the checkpoint holds the learner as built (pretrained features, no meta-training)
        "tasks_per_user": at_least(1),
        "tasks_per_batch": at_least(1),
        "optimizer": one_of(("adam", "adamw")),
        "lr": above(0.0),
        "backbone_lr_scale": at_least(0.0),
        "weight_decay": at_least(0.0),
        "betas": Limit(low=0.0, high=1.0, high_open=True, length=2),
        "eps": above(0.0),
        "scheduler": one_of(("constant", "multistep", "cosine")),
        "warmup_epochs": at_least(0),
        "warmup_lr": at_least(0.0),
        "decay_epochs": at_least(1),
        "decay_rate": Limit(low=0.0, high=1.0, low_open=True),  # above 1 the "decay" would raise the rate
        "min_lr": at_least(0.0),
        "grad_clip": at_least(0.0),  # 0: off
        "val_every": at_least(1),
        "val_tasks_per_user": at_least(1),
        "seed": Limit(low=0, high=2**32 - 1),
        "bf16": ANY,
        "compile": ANY,
        "device": one_of(DEVICES),
        "channels_last": ANY,
        "pin_memory": ANY,
        "cudnn_benchmark": ANY,
        "tensorboard": ANY,  # a Switch: checked by its type
        "log_every": at_least(1),
        "checkpoint_every": at_least(0),
        "init": ANY,
    },
}


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
        check_limits(self, "sampling")
        from orbit_lite.data.annotations import expand_filter  # validates the tags

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
        # the registries' messages, before torch loads them
        if self.learner not in LEARNER_NAMES:
            raise OrbitLiteError(f"unknown learner {self.learner!r}; available: {', '.join(LEARNER_NAMES)}")
        if self.head and self.head not in HEAD_NAMES:
            raise OrbitLiteError(f"unknown head {self.head!r}; available: {', '.join(HEAD_NAMES)}")
        problem = backbone_problem(self.backbone)
        if problem:
            raise OrbitLiteError(problem)


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
        check_limits(self, "lite")
        Buckets(self.buckets, self.bucket_step, self.bucket_largest)  # validates the three together


@dataclass(frozen=True)
class FinetuneConfig:
    """How the FineTuner learners personalize: gradient steps on the context set, per task, from a zero linear head.

    Defaults are the reference code's test settings (``multi-step-learner.py``, docs/reference.md 3.6 and 7)."""

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
    """Meta-training schedule; defaults are the reference code's (docs/reference.md 5 and 7)."""

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
    channels_last: Switch = Switch("auto")  # NHWC weights and activations for convolutional backbones
    pin_memory: Switch = Switch("auto")  # page-locked task tensors, copied to the GPU without blocking
    cudnn_benchmark: Switch = Switch("auto")  # cuDNN autotuning per shape (pays once shapes are bucketed)
    tensorboard: Switch = Switch("auto")  # event files in <run>/tensorboard; auto: when the package is installed
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


def check_limits(section: Any, name: str) -> None:
    """Refuse a value of the wrong type or outside its :data:`LIMITS` entry, naming the key, the value and what is
    allowed (``train.epochs must be an integer >= 1, got True``)."""
    limits = LIMITS[name]
    for f in fields(section):
        value, hint, limit = getattr(section, f.name), _hints(type(section))[f.name], limits[f.name]
        item = typing.get_args(hint)[0] if typing.get_origin(hint) is tuple else None
        if item is not None:  # a list: its type, its length, and each item's range
            ok = isinstance(value, tuple) and all(_has_type(v, item) for v in value)
            ok = ok and (limit.length is None or len(value) == limit.length) and all(limit.allows(v) for v in value)
        else:
            ok = _has_type(value, hint) and limit.allows(value)
        if not ok:
            shown = list(value) if isinstance(value, tuple) else value  # as the user wrote it
            raise OrbitLiteError(f"{name}.{f.name} must be {_describe(hint, limit)}, got {shown!r}")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _has_type(value: Any, hint: Any) -> bool:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_has_type(value, a) for a in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:  # a bool is an int to Python, never to a user
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is Switch:
        return value in SWITCHES
    return isinstance(value, hint)


def _describe(hint: Any, limit: Limit) -> str:
    """``an integer >= 1``, ``one of adam, adamw``, ``a list of 2 numbers in [0, 1)``..."""
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        count = "" if limit.length is None else f"{limit.length} "
        kind = "numbers" if item in (int, float) else "names"
        return f"a list of {count}{kind} {limit.describe()}".rstrip()
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return "true, false or null (the learner's default)"
    if limit.choices:
        return limit.describe()
    kind = {int: "an integer", float: "a number", bool: "true or false", str: "text", Switch: "one of " +
            ", ".join(SWITCHES)}.get(hint, str(hint))  # fmt: skip
    return f"{kind} {limit.describe()}".rstrip()


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Read a YAML or ``--set`` value as the key's type where it plainly is one ("1e-3" a number, "yes" true, a bare
    YAML on/off a switch); anything else is passed on unchanged for :func:`check_limits` to refuse with the range."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            return value
        item = typing.get_args(hint)[0]
        return tuple(_coerce(v, item, where) for v in value)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return None if value is None else _coerce(value, args[0], where)
    if hint is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        return value
    if hint in (int, float):
        if isinstance(value, bool):
            return value
        try:
            out = hint(value)
        except (TypeError, ValueError, OverflowError):
            return value
        if hint is int and isinstance(value, float) and value != out:
            return value
        return out
    if hint is Switch:  # YAML reads a bare on/off as a boolean
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value
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
