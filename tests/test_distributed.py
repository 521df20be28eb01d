"""Two gloo processes under torchrun, against one process: same weights, same evaluation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from orbit_lite.checkpoint import load_checkpoint
from tests.conftest import TINY_RECIPE

RECIPE = {**TINY_RECIPE, "train": {**TINY_RECIPE["train"], "tasks_per_user": 4, "tasks_per_batch": 4, "device": "cpu"}}


def orbit_lite(*args: str, processes: int = 1) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if processes == 1:
        command = [sys.executable, "-m", "orbit_lite", *args]
    else:
        # --standalone: torchrun's own store binds a free port and hands it to the workers (a port found free here
        # and passed on could be taken by someone else before torchrun binds it)
        launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
        command = [sys.executable, *launcher, "-m", "orbit_lite", *args]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def runs(tiny_frames: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("dist")
    recipe = root / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    out = {}
    for name, processes in (("single", 1), ("two", 2)):
        out[name] = root / name
        orbit_lite("train", "--data", str(tiny_frames), "--config", str(recipe), "--out", str(out[name]),
                   processes=processes)  # fmt: skip
    return out


def test_two_rank_training_keeps_replicas_identical(runs: dict[str, Path]) -> None:
    records = [json.loads(line) for line in (runs["two"] / "metrics.jsonl").read_text().splitlines()]
    spreads = [r["replica_spread"] for r in records if "replica_spread" in r]
    assert spreads == [0.0, 0.0]  # checked after each of the 2 epochs
    assert not list((runs["two"] / "checkpoints").glob("*.tmp"))


def test_two_rank_training_matches_one_process(runs: dict[str, Path]) -> None:
    a = load_checkpoint(runs["single"] / "checkpoints" / "last.pt")
    b = load_checkpoint(runs["two"] / "checkpoints" / "last.pt")
    assert a["progress"]["step"] == b["progress"]["step"] == 4
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=1e-5, atol=1e-6, msg=key)

    def losses(run: Path) -> list[float]:
        lines = (run / "metrics.jsonl").read_text().splitlines()
        return [json.loads(x)["loss"] for x in lines if json.loads(x)["type"] == "train"]

    assert losses(runs["two"]) == pytest.approx(losses(runs["single"]), rel=1e-5)


def test_two_rank_evaluation_equals_one_process(runs: dict[str, Path], tiny_frames: Path, tmp_path: Path) -> None:
    checkpoint = runs["single"] / "checkpoints" / "last.pt"
    args = ["evaluate", "--data", str(tiny_frames), "--checkpoint", str(checkpoint), "--split", "train",
            "--tasks", "3", "--device", "cpu"]  # fmt: skip
    orbit_lite(*args, "--out", str(tmp_path / "one"))
    orbit_lite(*args, "--out", str(tmp_path / "two"), processes=2)
    for name in ("per_video.csv", "per_user.csv", "per_object.csv"):
        assert (tmp_path / "one" / name).read_text() == (tmp_path / "two" / name).read_text(), name

    def timeless(value):  # seconds are measured, so they differ between runs; every other value must be identical
        if isinstance(value, dict):
            return {k: timeless(v) for k, v in value.items() if "seconds" not in k}
        return [timeless(v) for v in value] if isinstance(value, list) else value

    for name in ("results.json", "metrics.json"):
        one, two = (timeless(json.loads((tmp_path / d / name).read_text())) for d in ("one", "two"))
        assert one == two, name
    assert len(one["per_user"]) == 2  # both training users, evaluated on different ranks


def test_two_rank_resume_continues_exactly(runs: dict[str, Path], tiny_frames: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    out = tmp_path / "resumed"
    base = ["train", "--data", str(tiny_frames), "--config", str(recipe), "--out", str(out)]
    orbit_lite(*base, "--set", "train.epochs=1", processes=2)
    orbit_lite(*base, "--resume", "--set", "train.epochs=2", processes=2)
    a = load_checkpoint(runs["two"] / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(out / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
