"""What each configuration key may hold: its type and its range (:data:`LIMITS`), checked when a section is built,
and the one-line message that names the key, the value and what is allowed."""

from __future__ import annotations

import functools
import math
import types
import typing
from dataclasses import dataclass, fields
from typing import Any

from orbit_lite.errors import OrbitLiteError
from orbit_lite.shapes import MODES as SWITCHES  # the buckets' modes are one of these switches

# "auto", "on" or "off" (YAML's bare on/off booleans are accepted too)
Switch = typing.NewType("Switch", str)
AUTO = Switch("auto")
OFF = Switch("off")

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
            return (
                f"in {'(' if self.low_open else '['}{_number(self.low)}, {_number(self.high)}"
                f"{')' if self.high_open else ']'}"
            )
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
        "learner": ANY,  # registry names: checked when the model is built, before a run writes anything
        "backbone": ANY,
        "weights": ANY,
        "head": ANY,
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
        "batch_context": ANY,
        "warmup": ANY,
        "tf32": ANY,
        "fused_adam": ANY,
        "cuda_graphs": ANY,
        "tensorboard": ANY,  # a Switch: checked by its type
        "log_every": at_least(1),
        "checkpoint_every": at_least(0),
        "init": ANY,
    },
}


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
    kind = {
        int: "an integer",
        float: "a number",
        bool: "true or false",
        str: "text",
        Switch: "one of " + ", ".join(SWITCHES),
    }.get(hint, str(hint))
    return f"{kind} {limit.describe()}".rstrip()
