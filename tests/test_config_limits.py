"""Every key of the configuration schema refuses a wrong type, zero, a negative or an out-of-range value (where each
is invalid) with one line naming the key and the value, before a command writes anything.

The bad and good values are written out here key by key, independently of ``config.LIMITS``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from orbit_lite.cli.main import app
from orbit_lite.config import Config, load_config, to_dict
from orbit_lite.errors import OrbitLiteError
from tests.conftest import TINY_RECIPE

runner = CliRunner()

WRONG_TYPE_INT = ("true", "abc", "1.5", "[1]")
COUNT = (*WRONG_TYPE_INT, "0", "-1")  # an integer >= 1
SIZE = (*WRONG_TYPE_INT, "-1")  # an integer >= 0
NUMBER = ("true", "abc", ".nan", ".inf", "-1")  # a number >= 0
POSITIVE = (*NUMBER, "0")  # a number > 0
FLAG = ("2", "maybe", "[true]")  # true or false
TEXT = ("1", "[a]", "{a: 1}")  # free text (names checked by a registry, file paths)
SWITCH = ("maybe", "2", "[on]")  # auto, on or off

SAMPLING = {
    "way_method": ("nope", "1", "MAX"),
    "object_cap": COUNT,
    "min_way": COUNT,
    "context_video_type": ("clutter", "1"),
    "target_video_type": ("nope", "1"),
    "context_shot_method": ("nope", "1"),
    "target_shot_method": ("nope", "1"),
    "context_shot": (*COUNT, "-3"),
    "target_shot": COUNT,
    "context_shot_cap": COUNT,
    "target_shot_cap": COUNT,
    "with_train_shot_caps": FLAG,
    "context_clip_method": ("nope", "1"),
    "target_clip_method": ("nope", "1"),
    "clip_length": COUNT,
    "subsample_factor": COUNT,
    "frame_cap": COUNT,
    "clip_cap": COUNT,
    "clean_context_videos": COUNT,
    "min_context_frames": COUNT,
    "min_target_frames": COUNT,
    "context_filter": ("[nope]", "[1]", "5"),
    "target_filter": ("[nope]", "[1]", "5"),
    "require_annotations": FLAG,
    "drop_objects_without_target": FLAG,
}

BAD: dict[str, tuple[str, ...]] = {
    "data.frame_size": (*COUNT, "7", "100000"),
    "data.video_backend": ("nope", "1"),
    "data.num_workers": SIZE,
    "data.decode_threads": SIZE,
    **{f"train_sampling.{k}": v for k, v in SAMPLING.items()},
    **{f"test_sampling.{k}": v for k, v in SAMPLING.items()},
    "model.learner": TEXT,
    "model.backbone": TEXT,
    "model.weights": TEXT,
    "model.head": TEXT,
    "model.logit_scale": NUMBER,
    "model.learn_scale": FLAG,
    "model.film": FLAG,
    "model.learn_backbone": FLAG,
    "model.set_encoder_width": COUNT,
    "model.film_reg_weight": NUMBER,
    "model.style": ("nope", "1"),
    "finetune.steps": COUNT,
    "finetune.optimizer": ("adamw", "1"),
    "finetune.lr": POSITIVE,
    "finetune.betas": ("[0.9]", "[1.0, 0.9]", "[a, b]", "true"),
    "finetune.eps": POSITIVE,
    "finetune.weight_decay": NUMBER,
    "finetune.momentum": NUMBER,
    "finetune.extractor_lr_scale": NUMBER,
    "finetune.batch_size": COUNT,
    "finetune.lite": FLAG,
    "finetune.h": COUNT,
    "lite.enabled": FLAG,
    "lite.h": COUNT,
    "lite.chunk_size": COUNT,
    "lite.query_chunk": COUNT,
    "lite.buckets": SWITCH,
    "lite.bucket_step": (*COUNT, "3", "48"),  # a power of two
    "lite.bucket_largest": (*COUNT, "100"),  # a multiple of bucket_step
    "train.epochs": SIZE,  # 0 is allowed: the learner as built, no meta-training
    "train.tasks_per_user": COUNT,
    "train.tasks_per_batch": COUNT,
    "train.optimizer": ("sgd", "1"),
    "train.lr": POSITIVE,
    "train.backbone_lr_scale": NUMBER,
    "train.weight_decay": (*NUMBER, "-0.1"),
    "train.betas": ("[0.9]", "[0.9, 0.98, 0.99]", "[1.0, 0.9]", "[-0.1, 0.9]", "[a, b]", "0.9", "true"),
    "train.eps": POSITIVE,
    "train.scheduler": ("nope", "1"),
    "train.warmup_epochs": SIZE,
    "train.warmup_lr": NUMBER,
    "train.decay_epochs": COUNT,
    "train.decay_rate": (*POSITIVE, "2"),
    "train.min_lr": (*NUMBER, "1e-3"),  # above train.lr (5e-6 by default)
    "train.grad_clip": NUMBER,
    "train.val_every": COUNT,
    "train.val_tasks_per_user": COUNT,
    "train.seed": (*SIZE, "4294967296"),
    "train.bf16": FLAG,
    "train.compile": FLAG,
    "train.device": ("tpu", "1"),
    "train.channels_last": SWITCH,
    "train.pin_memory": SWITCH,
    "train.cudnn_benchmark": SWITCH,
    "train.batch_context": SWITCH,
    "train.warmup": SWITCH,
    "train.tf32": SWITCH,
    "train.fused_adam": SWITCH,
    "train.cuda_graphs": SWITCH,
    "train.tensorboard": SWITCH,
    "train.log_every": COUNT,
    "train.checkpoint_every": SIZE,
    "train.init": TEXT,
}

# the edges of what is allowed, which must still load
GOOD = [
    "data.frame_size=8", "data.frame_size=1024", "data.num_workers=0", "data.decode_threads=0",
    "train_sampling.context_shot=1",
    "test_sampling.min_target_frames=1", "train_sampling.context_filter=[no_issues]", "model.logit_scale=0",
    "model.film=null", "model.film_reg_weight=0", "model.set_encoder_width=1", "lite.buckets=on", "lite.bucket_step=1",
    "train.lr=1", "train.min_lr=0", "train.min_lr=5.0e-6", "train.warmup_epochs=0", "train.decay_rate=1",
    "train.betas=[0, 0.999]", "train.seed=0", "train.seed=4294967295", "train.grad_clip=0", "train.checkpoint_every=0",
    "train.epochs=3.0", "train.bf16=yes", "train.channels_last=off", "train.backbone_lr_scale=0",
]  # fmt: skip


def schema_keys() -> set[str]:
    return {f"{s.name}.{k.name}" for s in dataclasses.fields(Config) for k in dataclasses.fields(s.default_factory())}


def test_the_table_covers_every_key_of_the_schema() -> None:
    assert set(BAD) == schema_keys()


@pytest.mark.parametrize("key", sorted(BAD))
def test_a_bad_value_is_one_line_naming_the_key(key: str) -> None:
    for value in BAD[key]:
        with pytest.raises(OrbitLiteError) as caught:
            load_config([], [f"{key}={value}"])
        message = str(caught.value)
        assert message.startswith(f"{key} must be ") or message.startswith(f"{key}: "), (value, message)
        assert "\n" not in message


def test_the_edges_of_each_range_load() -> None:
    for override in GOOD:
        key, _, value = override.partition("=")
        cfg = to_dict(load_config([], [override]))
        section, name = key.split(".")
        assert cfg[section][name] == yaml.safe_load(value) or name in ("buckets", "channels_last"), override


def test_the_message_names_the_value_and_the_allowed_range() -> None:
    cases = {
        "train.epochs=true": "train.epochs must be an integer >= 0, got True",
        "train_sampling.context_shot=-3": "train_sampling.context_shot must be an integer >= 1, got -3",
        "test_sampling.target_shot=0": "test_sampling.target_shot must be an integer >= 1, got 0",
        "model.set_encoder_width=0": "model.set_encoder_width must be an integer >= 1, got 0",
        "test_sampling.min_target_frames=0": "test_sampling.min_target_frames must be an integer >= 1, got 0",
        "model.film_reg_weight=-1": "model.film_reg_weight must be a number >= 0, got -1.0",
        "train.min_lr=1e-3": "train.min_lr must be <= train.lr (5e-06), got 0.001",
        "train.betas=[0.9]": "train.betas must be a list of 2 numbers in [0, 1), got [0.9]",
        "train.optimizer=sgd": "train.optimizer must be one of adam, adamw, got 'sgd'",
        "train.seed=4294967296": "train.seed must be an integer in [0, 4294967295], got 4294967296",
    }
    for override, message in cases.items():
        with pytest.raises(OrbitLiteError) as caught:
            load_config([], [override])
        assert str(caught.value) == message


def test_values_built_in_code_are_checked_too() -> None:
    from orbit_lite.config import TrainConfig

    with pytest.raises(OrbitLiteError, match=r"train\.epochs must be an integer >= 0, got True"):
        TrainConfig(epochs=True)
    with pytest.raises(OrbitLiteError, match=r"train\.min_lr must be <= train\.lr"):
        TrainConfig(lr=1e-4, min_lr=1e-3)


@pytest.mark.parametrize("recipe", sorted(Path(__file__).parent.parent.glob("configs/*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipe_loads(recipe: Path) -> None:
    cfg = load_config([str(recipe)])
    assert cfg.train.min_lr <= cfg.train.lr


# for each key, its first bad value; and names that only a registry or the file system can judge
TRAIN_CASES = [f"{key}={values[0]}" for key, values in BAD.items()] + [
    "model.learner=nope", "model.backbone=nope", "model.head=nope", "model.weights=missing.pt", "train.init=missing.pt",
    "train_sampling.context_shot=-3", "train_sampling.target_shot=0", "model.set_encoder_width=0",
]  # fmt: skip


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("recipe") / "recipe.yaml"
    path.write_text(yaml.safe_dump(TINY_RECIPE))
    return path


@pytest.mark.parametrize("override", TRAIN_CASES)
def test_train_with_a_bad_setting_writes_nothing(
    override: str, tiny_frames: Path, recipe: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    args = ["train", "--data", str(tiny_frames), "--config", str(recipe), "--out", str(out), "--set", override]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no run folder, no lock, no stub config
