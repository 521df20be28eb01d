"""The CPU demo recipe, end to end: it must learn something that transfers to unseen users."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from orbit_lite.config import load_config
from orbit_lite.data.layout import index_tree
from orbit_lite.data.synth import synthesize
from orbit_lite.engine.evaluate import evaluate_users, make_protocol
from orbit_lite.engine.model import Checkpoint, open_model
from orbit_lite.engine.train import train
from orbit_lite.metrics import mean_ci95

RECIPE = Path(__file__).parent.parent / "configs" / "cpu_demo.yaml"


@pytest.mark.slow
@pytest.mark.heavy  # the demo's full training (minutes on 2 cores); `make demo` runs the same recipe
def test_cpu_demo_beats_chance_on_the_test_users(tmp_path: Path) -> None:
    data = synthesize(tmp_path / "data", "demo", frame_size=64, seed=0).root
    cfg = load_config([str(RECIPE)], ["data.num_workers=0"])
    train(cfg, data, tmp_path / "run")
    learner, cfg = open_model(Checkpoint(tmp_path / "run" / "checkpoints" / "best.pt"), torch.device("cpu"))
    users = index_tree(data).users("test")
    # One task per user: the demo's clutter videos are short, so every task would score the same frames.
    results, _ = evaluate_users(learner, users, make_protocol(cfg, tasks=1), cfg)
    scores = [s.frame_accuracy for r in results for s in r.scores]
    mean, ci = mean_ci95(scores)
    chance = float(np.mean([1 / len(u.objects) for u in users]))
    assert len(scores) >= 15
    assert mean - ci > chance, (mean, ci, chance)


@pytest.mark.slow
@pytest.mark.heavy  # make demo's own recipes on the photo preset (minutes on 2 cores)
def test_make_demo_recognizes_real_objects_and_meta_training_runs(tmp_path: Path) -> None:
    """What `make demo` shows, through the command line: the photo preset, ProtoNets and the FineTuner on
    efficientnet_lite0's shipped ImageNet weights without training, and ProtoNets meta-trained with LITE on top: each
    clears chance on the test users' clutter videos, and the meta-training changed the weights."""
    import json

    from typer.testing import CliRunner

    from orbit_lite.checkpoint import load_checkpoint
    from orbit_lite.cli.main import app
    from orbit_lite.models.backbones import create_backbone

    runner = CliRunner()
    configs = Path(__file__).parent.parent / "configs"
    layer = ["--config", str(configs / "demo_photos.yaml")]
    data = synthesize(tmp_path / "data", "photos", seed=0).root
    run = tmp_path / "lite"
    trained = runner.invoke(app, ["train", "--data", str(data), "--config", str(configs / "protonets_lite0.yaml"),
                                  *layer, "--out", str(run)])  # fmt: skip
    assert trained.exit_code == 0, trained.output
    sources = {
        "protonets": ["--config", str(configs / "protonets_lite0.yaml"), *layer],
        "finetuner": ["--config", str(configs / "finetuner_lite0.yaml"), *layer],
        "lite": ["--checkpoint", str(run / "checkpoints" / "best.pt")],
    }
    for name, source in sources.items():
        out = tmp_path / f"eval-{name}"
        result = runner.invoke(app, ["evaluate", "--data", str(data), *source, "--tasks", "1", "--out", str(out)])
        assert result.exit_code == 0, result.output
        metrics = json.loads((out / "metrics.json").read_text())
        accuracy = metrics["frame_accuracy"]
        assert accuracy["n"] >= 15 and accuracy["mean"] - accuracy["ci95"] > metrics["chance"], (name, metrics)
    start = create_backbone("efficientnet_lite0", "pretrained", frame_size=84).state_dict()
    learned = load_checkpoint(run / "checkpoints" / "best.pt")["model"]
    moved = [k for k, v in start.items() if f"backbone.{k}" in learned and not torch.equal(v, learned[f"backbone.{k}"])]
    assert moved, "meta-training left every backbone weight as ImageNet's"
