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
