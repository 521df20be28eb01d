"""Shared fixtures: small synthetic ORBIT trees, generated once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# No progress lines off a terminal while testing: many checks count the lines a command prints, and a slow machine
# would add a progress line to them (tests/test_newcomer.py checks the lines themselves).
os.environ.setdefault("ORBIT_LITE_PROGRESS_SECONDS", "0")

from orbit_lite.data.synth import synthesize


@pytest.fixture(scope="session")
def tiny_frames(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny preset as JPEG frame folders (32 px)."""
    return synthesize(tmp_path_factory.mktemp("synth") / "frames", "tiny", fmt="frames", seed=0).root


@pytest.fixture(scope="session")
def tiny_videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tree (same seed) as mp4 files."""
    return synthesize(tmp_path_factory.mktemp("synth") / "videos", "tiny", fmt="videos", seed=0).root


@pytest.fixture
def tiny_copy(tiny_frames: Path, tmp_path: Path) -> Path:
    """A private copy of the frame tree that a test may damage."""
    import shutil

    return Path(shutil.copytree(tiny_frames, tmp_path / "tree"))


def one_line_error(result, *parts: str) -> str:
    """The command failed with exactly one ``error: ...`` line on stderr, no traceback, naming each of ``parts``."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


TINY_RECIPE = {
    "data": {"frame_size": 32, "num_workers": 0},
    "model": {"learner": "protonets", "backbone": "tiny_cnn", "weights": "none"},
    "lite": {"h": 2, "chunk_size": 8, "query_chunk": 16},
    "train": {
        "epochs": 2, "tasks_per_user": 2, "tasks_per_batch": 2, "optimizer": "adamw", "lr": 1e-3,
        "weight_decay": 0.0, "warmup_epochs": 0, "scheduler": "constant", "val_tasks_per_user": 1, "seed": 0,
    },
    "train_sampling": {"subsample_factor": 4, "clip_cap": 10},
    "test_sampling": {"subsample_factor": 4, "clip_cap": 20},
}  # fmt: skip


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_frames: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A training checkpoint from a one-epoch run of the tiny recipe on the tiny tree."""
    from orbit_lite.config import Config, from_dict
    from orbit_lite.engine.train import train

    cfg = from_dict(Config, {**TINY_RECIPE, "train": {**TINY_RECIPE["train"], "epochs": 1}})
    run = tmp_path_factory.mktemp("run") / "run"
    train(cfg, tiny_frames, run)
    return run / "checkpoints" / "best.pt"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # `gpu` tests exercise the CUDA paths; they run wherever a CUDA device is visible and are skipped elsewhere.
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
