"""FineTuners from the command line: a recipe instead of a checkpoint, a checkpoint's backbone, and their cost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from orbit_lite.checkpoint import load_checkpoint
from orbit_lite.cli.main import app
from orbit_lite.config import ModelConfig
from orbit_lite.cost import measure
from orbit_lite.data.layout import index_tree
from orbit_lite.learners import create_learner
from orbit_lite.models.backbones import create_backbone
from orbit_lite.personal import load_personal

runner = CliRunner()


def recipe(tmp_path: Path, learner: str, weights: str) -> Path:
    path = tmp_path / f"{learner}.yaml"
    path.write_text(yaml.safe_dump({
        "data": {"frame_size": 32, "num_workers": 0},
        "model": {"learner": learner, "backbone": "tiny_cnn", "weights": weights},
        "finetune": {"steps": 5, "lr": 0.01},
        "test_sampling": {"subsample_factor": 4, "clip_cap": 20},
    }))  # fmt: skip
    return path


@pytest.fixture
def backbone_file(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "tiny.pt"
    torch.save(create_backbone("tiny_cnn", "none", 32).net.state_dict(), path)  # a plain state_dict of the network
    return path


def test_train_says_why_there_is_nothing_to_meta_train(tiny_frames: Path, backbone_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["train", "--data", str(tiny_frames), "--config", str(recipe(tmp_path, "finetuner", str(backbone_file)))]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 1 and "nothing to meta-train" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()


def test_personalize_from_a_recipe_and_recognize(tiny_frames: Path, backbone_file: Path, tmp_path: Path) -> None:
    user = index_tree(tiny_frames).users("test")[0]
    model_file = tmp_path / "me.pt"
    config = recipe(tmp_path, "finetuner_film", str(backbone_file))
    args = ["personalize", "--config", str(config), "--out", str(model_file), "--device", "cpu"]
    result = runner.invoke(app, [*args, "--user", user.user_id, "--data", str(tiny_frames)])
    assert result.exit_code == 0, result.output
    personal = load_personal(model_file)
    assert personal.recognizer.head.name == "linear"
    w, b = personal.recognizer.state
    assert w.shape == (len(user.objects), 64) and w.abs().sum() > 0 and b.shape == (len(user.objects),)
    # The tuned FiLM values live in the file's backbone: only FiLM layers' weight and bias moved from the file's.
    start = torch.load(backbone_file, weights_only=True)
    tuned = personal.recognizer.backbone.net.state_dict()
    changed = {k for k in start if not torch.equal(start[k], tuned[k])}
    film = {f"{layer}.{p}" for layer, _ in personal.recognizer.backbone.film_layers for p in ("weight", "bias")}
    assert changed and changed <= film
    clip = next(v for v in user.videos() if v.video_type == "clutter")
    seen = runner.invoke(app, ["recognize", "--model", str(model_file), str(clip.path), "--json", "--device", "cpu"])
    assert seen.exit_code == 0, seen.output
    report = json.loads(seen.stdout)["inputs"][0]
    frame_macs = measure(lambda: personal.recognizer.predict(torch.zeros(1, 3, 32, 32, dtype=torch.uint8)))[1].macs
    assert report["inference_macs_per_frame"] == pytest.approx(frame_macs, rel=1e-6) and frame_macs > 0
    assert report["inference_seconds_per_frame"] > 0
    neither = runner.invoke(app, ["personalize", "--out", str(tmp_path / "x.pt"), "--videos", str(tmp_path)])
    assert neither.exit_code == 1 and "either --checkpoint" in neither.stderr
    meta = recipe(tmp_path, "simple_cnaps", "none")
    refused = runner.invoke(app, ["personalize", "--config", str(meta), "--out", str(tmp_path / "y.pt"),
                                  "--user", user.user_id, "--data", str(tiny_frames)])  # fmt: skip
    assert refused.exit_code == 1 and "needs --checkpoint" in refused.stderr


def test_a_checkpoints_backbone_in_a_finetuner(tiny_frames: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    user = index_tree(tiny_frames).users("test")[0]
    args = ["personalize", "--checkpoint", str(tiny_checkpoint), "--set", "model.learner=finetuner",
            "--set", "finetune.steps=3", "--out", str(tmp_path / "me.pt"), "--user", user.user_id,
            "--data", str(tiny_frames), "--device", "cpu"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    personal = load_personal(tmp_path / "me.pt")
    assert personal.config["model"]["learner"] == "finetuner"
    trained = load_checkpoint(tiny_checkpoint, "training")["model"]
    for key, value in personal.recognizer.backbone.state_dict().items():
        assert torch.equal(value, trained[f"backbone.{key}"])


def test_evaluate_from_a_recipe_reports_the_cost(tiny_frames: Path, backbone_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    config = recipe(tmp_path, "finetuner", str(backbone_file))
    args = ["evaluate", "--data", str(tiny_frames), "--config", str(config), "--out", str(out), "--tasks", "2"]
    result = runner.invoke(app, [*args, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "GMACs" in result.stdout and "to personalise" in result.stdout
    tasks = next(iter(json.loads((out / "results.json").read_text()).values()))
    metrics = json.loads((out / "metrics.json").read_text())
    cost = metrics["cost"]
    # One personalization serves both tasks (deterministic context), and each task carries its whole cost.
    assert tasks[0]["task_macs_to_personalise"] == tasks[1]["task_macs_to_personalise"] > 0
    assert cost["task_macs_to_personalise"] == tasks[0]["task_macs_to_personalise"]
    # FineTuner: the backbone once per context frame, then steps on a head of K x D + K numbers.
    frame = cost["inference_macs_per_frame"]
    context = metrics["frames_encoded"]["context"]
    assert context * frame <= cost["task_macs_to_personalise"] <= context * frame * 1.05
    assert cost["task_params_added"] == len(tasks[0]["task_object_list"]) * 65


@pytest.mark.slow
@pytest.mark.heavy  # minutes on a 2-core CPU: `make test-all`
def test_efficientnet_b0_costs_what_orbit_reports() -> None:
    # tf_efficientnet_b0 at 224 px: about 0.39 GMACs per frame (timm's figure; FlopCounterMode counts convolutions
    # and matrix products only, 0.3845); a FineTuner's task costs its context frames' forwards plus the head's steps,
    # nothing per step through the backbone.
    model = ModelConfig(learner="finetuner", backbone="tf_efficientnet_b0", weights="none")
    learner = create_learner(model, 224).eval()
    frame = torch.zeros(1, 3, 224, 224, dtype=torch.uint8)
    macs = measure(lambda: learner.backbone(frame))[1].macs
    assert 0.38e9 <= macs <= 0.40e9
    clips = torch.randint(0, 256, (4, 1, 3, 224, 224), dtype=torch.uint8)
    personal, cost = measure(lambda: learner.personalize(clips, torch.tensor([0, 1, 0, 1]), 2))
    head = 50 * 2 * 4 * 2 * 1280  # 50 steps x (forward + the weight's gradient) x N x K x D; no grad to features
    assert cost.macs == pytest.approx(4 * macs + head, rel=1e-3)
    assert personal.state[0].shape == (2, 1280)
