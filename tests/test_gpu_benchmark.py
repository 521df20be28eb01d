"""The GPU benchmarks run end to end on the CPU in their small modes and report every measurement."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from gpu_throughput import steady_rates  # noqa: E402


def _run(script: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args, "--json"], capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.mark.slow
def test_gpu_throughput_quick_mode_reports_every_measurement(tiny_frames: Path) -> None:
    report = _run("gpu_throughput.py", "--quick", "--device", "cpu", "--workers", "0", "--data", str(tiny_frames),
                  "--frame-size", "32", "--max-tasks", "4", "--eval-tasks", "1", "--ab", "buckets")  # fmt: skip
    assert report["device"] == "cpu" and report["frame_size"] == 32
    runs = report["training"]
    assert set(runs) == {"fp32", "bf16", "fp32_buckets_off"}
    for run in runs.values():
        assert run["tasks"] >= 4 and run["first_task_s"] > 0 and run["tasks_per_s_overall"] > 0
        assert run["warmup_s"] >= 0 and run["steady_proven"] in (True, False)
    evaluation = report["evaluation"]
    frames = {evaluation[k]["frames"] for k in ("cold", "warm", "warm_decode_threads_16")}
    assert len(frames) == 1 and frames.pop() > 0  # same protocol, same draws
    assert evaluation["warm"]["frames_per_s"] > 0 and evaluation["personalize_s"] > 0
    assert evaluation["recognize_frames"] > 0 and evaluation["recognize_s"] > 0


@pytest.mark.slow
def test_gpu_profile_reports_counts_per_task(tiny_frames: Path, tmp_path: Path) -> None:
    report = _run("gpu_profile.py", "--device", "cpu", "--workers", "0", "--data", str(tiny_frames), "--frame-size",
                  "32", "--set", "model.backbone=tiny_cnn", "--set", "train.tasks_per_batch=2", "--first", "1",
                  "--warm", "0", "--steady", "1", "--counted", "2", "--trace", str(tmp_path))  # fmt: skip
    counts = report["windows"]["counts"]
    assert counts["tasks"] == 2 and counts["host_syncs_per_task"] == 0.5  # one read per optimizer step of 2 tasks
    assert counts["backbone_calls_per_task"] >= 2 and counts["aten_calls_per_task"] > 100
    assert report["distinct_shapes"] >= 2 and (tmp_path / "trace_first.json").stat().st_size > 0
    steady = report["windows"]["steady"]["per_task"]
    assert steady["backbone forward (with graph)"]["calls"] >= 1 and steady["backward"]["calls"] > 0


def test_steady_rates_compare_the_last_window_with_the_one_before() -> None:
    even = [0.1 * i for i in range(20)]  # 10 tasks/s throughout
    assert steady_rates(even, window=4, skip=2) == pytest.approx((10.0, 10.0))
    slowing = [0.1 * i for i in range(12)] + [1.1 + 0.2 * i for i in range(1, 5)]  # 5 tasks/s at the end
    last, before = steady_rates(slowing, window=4, skip=2)
    assert last == pytest.approx(5.0) and before > 1.1 * last
    assert steady_rates(even[:10], window=4, skip=2) is None  # too few tasks after the skipped ones
