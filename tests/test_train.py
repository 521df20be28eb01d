from __future__ import annotations

import importlib.util
import itertools
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from orbit_lite.checkpoint import load_checkpoint
from orbit_lite.cli.main import app
from orbit_lite.config import Config, TrainConfig, from_dict
from orbit_lite.engine.schedule import learning_rate
from orbit_lite.engine.train import Monitor, train
from tests.conftest import TINY_RECIPE

runner = CliRunner()

RECIPE = TINY_RECIPE


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    return path


def run_train(data: Path, recipe: Path, out: Path, *extra: str):
    return runner.invoke(app, ["train", "--data", str(data), "--config", str(recipe), "--out", str(out), *extra])


def test_two_epoch_run_writes_config_metrics_and_checkpoints(tiny_frames: Path, recipe: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run_train(tiny_frames, recipe, out, "--set", "lite.h=3")
    assert result.exit_code == 0, result.output
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["lite"]["h"] == 3 and resolved["model"]["backbone"] == "tiny_cnn"
    assert resolved["test_sampling"]["way_method"] == "max"  # defaults are filled in
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["type"] == "train"]
    validation = [r for r in records if r["type"] == "validation"]
    assert [r["epoch"] for r in validation] == [0, 1]
    assert all(0 <= r["frame_accuracy"] <= 1 and r["videos"] > 0 for r in validation)
    assert train and all(r["loss"] > 0 and r["lr"] == pytest.approx(1e-3) for r in train)
    assert train[-1]["step"] == 4  # 2 users x 2 tasks per epoch / 2 tasks per step x 2 epochs
    last = load_checkpoint(out / "checkpoints" / "last.pt", "training")
    best = load_checkpoint(out / "checkpoints" / "best.pt", "training")
    assert last["progress"]["epoch"] == 2 and last["progress"]["step"] == 4
    assert best["progress"]["best"] == max(r["frame_accuracy"] for r in validation)
    assert not list((out / "checkpoints").glob("*.tmp"))  # atomic writes leave no temporaries


def test_resumed_run_ends_with_the_same_weights(tiny_frames: Path, recipe: Path, tmp_path: Path) -> None:
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert run_train(tiny_frames, recipe, whole).exit_code == 0
    assert run_train(tiny_frames, recipe, split, "--set", "train.epochs=1").exit_code == 0
    result = run_train(tiny_frames, recipe, split, "--resume", "--set", "train.epochs=2")
    assert result.exit_code == 0, result.output
    a = load_checkpoint(whole / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(split / "checkpoints" / "last.pt")["model"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key

    def losses(run: Path) -> list[float]:
        lines = (run / "metrics.jsonl").read_text().splitlines()
        return [json.loads(line)["loss"] for line in lines if json.loads(line)["type"] == "train"]

    assert losses(whole) == losses(split)
    assert (split / "curves.png").is_file()  # redrawn from the whole metrics.jsonl after the resume
    if importlib.util.find_spec("tensorboard") is not None:  # the resumed run continues the same event files
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        def scalars(run: Path, tag: str) -> list[tuple[int, float]]:
            events = EventAccumulator(str(run / "tensorboard"))
            events.Reload()
            return [(e.step, e.value) for e in events.Scalars(tag)]

        for tag in ("train/loss", "validation/frame_accuracy"):
            assert scalars(split, tag) == scalars(whole, tag) and scalars(whole, tag), tag


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.backbone=resnet99", "unknown backbone 'resnet99'"),
        ("model.learner=maml", "unknown learner 'maml'; available: protonets"),
        ("model.bogus=1", "unknown key config.model.bogus; valid keys:"),
        ("lite.h=0", "lite.h must be an integer >= 1, got 0"),
        ("train.optimizer=sgd", "train.optimizer must be one of adam, adamw, got 'sgd'"),
        ("train.lr=.nan", "train.lr must be a number > 0, got nan"),
        ("train.weight_decay=-0.1", "train.weight_decay must be a number >= 0, got -0.1"),
        ("train.seed=-1", "train.seed must be an integer in [0, 4294967295], got -1"),
        ("train.device=tpu", "train.device must be one of auto, cpu, cuda, mps, got 'tpu'"),
    ],
)
def test_bad_settings_are_one_line_errors(
    tiny_frames: Path, recipe: Path, tmp_path: Path, override: str, message: str
) -> None:
    out = tmp_path / "run"
    result = run_train(tiny_frames, recipe, out, "--set", override)
    assert result.exit_code == 1
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()  # nothing half-written: no run folder, no config.yaml


def test_multistep_with_zero_decay_epochs_fails_before_writing(tiny_frames: Path, recipe: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run_train(tiny_frames, recipe, out, "--set", "train.scheduler=multistep", "--set", "train.decay_epochs=0")
    assert result.exit_code == 1 and "train.decay_epochs must be an integer >= 1, got 0" in result.stderr
    assert not out.exists()


def test_a_config_that_is_not_text_is_a_one_line_error(tiny_frames: Path, tmp_path: Path) -> None:
    binary = tmp_path / "weights.yaml"
    binary.write_bytes(bytes(range(128, 256)) * 4)
    result = run_train(tiny_frames, binary, tmp_path / "run")
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert f"{binary}: not a text file; a config is a YAML file" in result.stderr
    assert not (tmp_path / "run").exists()


def test_data_without_training_users(tiny_frames: Path, recipe: Path, tmp_path: Path) -> None:
    only_test = tmp_path / "only_test"
    shutil.copytree(tiny_frames / "test", only_test / "test")
    result = run_train(only_test, recipe, tmp_path / "run")
    assert result.exit_code == 1 and "no training users" in result.stderr


def test_existing_run_needs_resume_and_resume_needs_a_run(tiny_frames: Path, recipe: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    missing = run_train(tiny_frames, recipe, out, "--resume")
    assert missing.exit_code == 1 and "nothing to resume" in missing.stderr
    assert run_train(tiny_frames, recipe, out, "--set", "train.epochs=1").exit_code == 0
    again = run_train(tiny_frames, recipe, out)
    assert again.exit_code == 1 and "already holds a training run" in again.stderr
    other = run_train(tiny_frames, recipe, out, "--resume", "--set", "model.learner=simple_cnaps")
    assert other.exit_code == 1 and "different model (model.learner='protonets'" in other.stderr


def test_a_single_object_user_is_skipped_with_a_warning(
    tiny_frames: Path, recipe: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = Path(shutil.copytree(tiny_frames, tmp_path / "data"))
    lonely = sorted((data / "train").iterdir())[0]
    for obj in sorted(lonely.iterdir())[1:]:
        shutil.rmtree(obj)
    result = run_train(data, recipe, tmp_path / "run", "--set", "train.epochs=1")
    assert result.exit_code == 0, result.output
    assert f"user {lonely.name} has fewer than two objects" in caplog.text


class _Interrupt(Exception):
    pass


class _StopAfter(Monitor):
    def __init__(self, tasks: int) -> None:
        self.left = tasks

    def task_done(self, loss: float, accuracy: float, memory_mb: float) -> None:
        self.left -= 1
        if self.left == 0:
            raise _Interrupt


def test_resume_from_the_middle_of_an_epoch(tiny_frames: Path, tmp_path: Path) -> None:
    # Stop a run after 3 of an epoch's 4 tasks (a checkpoint was saved after each optimizer step), resume it, and
    # compare with an uninterrupted run: same weights, same logged losses.
    cfg = from_dict(Config, {**RECIPE, "train": {**RECIPE["train"], "tasks_per_batch": 1, "checkpoint_every": 1}})
    train(cfg, tiny_frames, tmp_path / "whole")
    with pytest.raises(_Interrupt):
        train(cfg, tiny_frames, tmp_path / "split", monitor=_StopAfter(7))
    assert load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")["progress"]["position"] == 2
    train(cfg, tiny_frames, tmp_path / "split", resume=True)
    a = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    whole = (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()
    split = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["loss"] for x in whole if '"train"' in x] == [
        json.loads(x)["loss"] for x in split if '"train"' in x
    ]


def _reference_multistep(cfg: TrainConfig) -> list[float]:
    # Written from the reference's set-up, not from learning_rate: timm's multistep scheduler counts the milestones
    # range(decay_epochs, epochs, decay_epochs) that are <= t + 1, warms up linearly for t < warmup_t, and the
    # reference steps it with epoch + 1 after each epoch; epoch 0 runs at the lr the scheduler was built with.
    milestones = list(range(cfg.decay_epochs, cfg.epochs, cfg.decay_epochs))

    def at(t: int) -> float:
        if t < cfg.warmup_epochs:
            return cfg.warmup_lr + t * (cfg.lr - cfg.warmup_lr) / cfg.warmup_epochs
        return cfg.lr * cfg.decay_rate ** sum(1 for m in milestones if m <= t + 1)

    first = cfg.warmup_lr if cfg.warmup_epochs else cfg.lr
    return [first] + [at(epoch) for epoch in range(1, cfg.epochs)]


def _timm_multistep(cfg: TrainConfig) -> list[float]:
    # timm's own scheduler (the reference used 0.6.12; the multistep maths is unchanged since), set up as the
    # reference's utils/optim.py sets it up (milestones [epochs + 1] when decay_epochs >= epochs; create_scheduler
    # leaves warmup_prefix False for multistep) and driven as it drives it: an epoch runs, then step(epoch + 1).
    from timm.scheduler import MultiStepLRScheduler

    if cfg.decay_epochs >= cfg.epochs:
        milestones = [cfg.epochs + 1]
    else:
        milestones = list(range(cfg.decay_epochs, cfg.epochs, cfg.decay_epochs))
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    scheduler = MultiStepLRScheduler(
        optimizer,
        decay_t=milestones,
        decay_rate=cfg.decay_rate,
        warmup_t=cfg.warmup_epochs,
        warmup_lr_init=cfg.warmup_lr,
        warmup_prefix=False,
    )
    lrs = []
    for epoch in range(cfg.epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        scheduler.step(epoch + 1)
    return lrs


MULTISTEP_RUNS = [
    {},  # the default run: 30 epochs, warm-up 5, decay 0.5 at epoch 15
    {"epochs": 40, "decay_epochs": 10, "warmup_epochs": 3, "lr": 1e-3, "warmup_lr": 1e-4},
    {"epochs": 6, "decay_epochs": 2, "warmup_epochs": 0, "lr": 1e-3},  # the timm run
    {"epochs": 10, "decay_epochs": 10},  # decay_epochs >= epochs: no milestone, no decay
    {"epochs": 8, "decay_epochs": 20, "warmup_epochs": 2},
    {"epochs": 5, "decay_epochs": 1, "warmup_epochs": 0, "decay_rate": 0.1},
]


def _run_id(changes: dict) -> str:
    return "-".join(f"{k}={v}" for k, v in changes.items()) or "default"


@pytest.mark.parametrize("changes", MULTISTEP_RUNS, ids=_run_id)
def test_multistep_schedule_matches_the_reference_at_every_epoch(changes: dict) -> None:
    cfg = TrainConfig(**changes)
    ours = [learning_rate(e, cfg) for e in range(cfg.epochs)]
    assert ours == pytest.approx(_reference_multistep(cfg), rel=1e-12)
    assert ours == pytest.approx(_timm_multistep(cfg), rel=1e-12)


def test_default_schedule_is_the_reference_table() -> None:
    # the reference's default schedule: 1.0, 1.8, 2.6, 3.4, 4.2e-6 during warm-up, 5e-6 for epochs 5-13, 2.5e-6 from
    # epoch 14 to the end
    lrs = [learning_rate(e, TrainConfig()) for e in range(30)]
    assert lrs == pytest.approx([1.0e-6, 1.8e-6, 2.6e-6, 3.4e-6, 4.2e-6] + [5e-6] * 9 + [2.5e-6] * 16, rel=1e-12)
    # 40 epochs, decay every 10, no warm-up: milestones 10, 20, 30, each one epoch early (stepped with epoch + 1)
    lrs = [learning_rate(e, TrainConfig(epochs=40, decay_epochs=10, warmup_epochs=0, lr=1.0)) for e in range(40)]
    assert lrs == pytest.approx([1.0] * 9 + [0.5] * 10 + [0.25] * 10 + [0.125] * 11, rel=1e-12)


@pytest.mark.parametrize("warmup", [0, 3])
def test_cosine_schedule_is_the_half_cosine_after_the_warm_up(warmup: int) -> None:
    cfg = TrainConfig(scheduler="cosine", warmup_epochs=warmup, epochs=12, lr=1e-3, warmup_lr=1e-5, min_lr=1e-6)
    span = cfg.epochs - warmup
    expected = [cfg.warmup_lr + e * (cfg.lr - cfg.warmup_lr) / warmup for e in range(warmup)] + [
        cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * t / span)) for t in range(span)
    ]
    assert [learning_rate(e, cfg) for e in range(cfg.epochs)] == pytest.approx(expected, rel=1e-12)


def test_cosine_schedule_falls_towards_min_lr() -> None:
    cosine = TrainConfig(scheduler="cosine", warmup_epochs=0, epochs=10, lr=1e-3, min_lr=1e-5)
    values = [learning_rate(e, cosine) for e in range(10)]
    assert values[0] == pytest.approx(1e-3) and all(a > b for a, b in itertools.pairwise(values))
    assert values[-1] > 1e-5


def test_resume_with_changed_settings_keeps_config_yaml_and_logs_the_change(
    tiny_frames: Path, recipe: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    assert run_train(tiny_frames, recipe, run, "--set", "train.epochs=1").exit_code == 0
    started = (run / "config.yaml").read_text()
    result = run_train(tiny_frames, recipe, run, "--resume", "--set", "train.epochs=2", "--set", "lite.h=3")
    assert result.exit_code == 0, result.output
    assert (run / "config.yaml").read_text() == started
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    resumes = [r for r in records if r["type"] == "resume"]
    assert resumes == [{"type": "resume", "epoch": 1, "step": 2,
                        "changed": {"lite.h": {"was": 2, "now": 3}, "train.epochs": {"was": 1, "now": 2}}}]  # fmt: skip
    assert records.index(resumes[0]) == next(i for i, r in enumerate(records) if r.get("epoch") == 1)


def test_a_new_run_starts_from_train_init(tiny_frames: Path, tiny_checkpoint: Path, recipe: Path, tmp_path: Path):
    out = tmp_path / "tuned"
    flags = ["--set", f"train.init={tiny_checkpoint}", "--set", "train.epochs=1", "--set", "train.lr=1e-12",
             "--set", "train.min_lr=0"]  # fmt: skip
    result = run_train(tiny_frames, recipe, out, *flags)
    assert result.exit_code == 0, result.output
    start = load_checkpoint(tiny_checkpoint, "training")["model"]
    tuned = load_checkpoint(out / "checkpoints" / "last.pt", "training")
    assert tuned["progress"]["step"] > 0  # a new run: its own optimizer and counters
    for key, value in start.items():  # with a vanishing learning rate the weights are still the init's
        torch.testing.assert_close(tuned["model"][key], value, rtol=0, atol=1e-6)
    result = run_train(tiny_frames, recipe, tmp_path / "other", *flags, "--set", "model.backbone=tiny_vit")
    assert result.exit_code == 1 and "does not fit the configured model" in result.output
    assert "model.backbone=tiny_cnn" in " ".join(result.output.split())


def test_zero_epochs_saves_the_learner_as_built(tiny_frames: Path, recipe: Path, tmp_path: Path) -> None:
    """Pretrained features with no meta-training: epochs 0 writes the built learner, untouched, as best.pt."""
    from orbit_lite.learners import create_learner

    out = tmp_path / "run"
    result = run_train(tiny_frames, recipe, out, "--set", "train.epochs=0")
    assert result.exit_code == 0, result.output
    record = load_checkpoint(out / "checkpoints" / "best.pt", "training")
    assert record["progress"]["step"] == 0 and (out / "checkpoints" / "last.pt").is_file()
    torch.manual_seed(RECIPE["train"]["seed"])  # the seed train builds the learner under
    cfg = from_dict(Config, RECIPE)
    built = create_learner(cfg.model, cfg.data.frame_size).state_dict()
    assert built.keys() == record["model"].keys()
    assert all(torch.equal(built[k], record["model"][k]) for k in built)
