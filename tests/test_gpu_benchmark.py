"""benchmarks/gpu_throughput.py --quick runs end to end on the CPU and reports every measurement."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.mark.slow
def test_gpu_throughput_quick_mode_reports_every_measurement() -> None:
    args = [sys.executable, str(ROOT / "benchmarks" / "gpu_throughput.py"), "--quick", "--device", "cpu",
            "--workers", "0", "--tasks", "6", "--eval-tasks", "2", "--ab", "buckets", "--json"]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["device"] == "cpu" and report["frame_size"] == 64
    runs = report["training"]
    assert set(runs) == {"fp32", "bf16", "fp32_without_buckets"}
    for run in runs.values():
        assert run["tasks"] >= 6 and run["first_task_s"] > 0 and run["tasks_per_s_overall"] > 0
    evaluation = report["evaluation"]
    assert evaluation["cold"]["frames"] == evaluation["warm"]["frames"] > 0  # same protocol, same draws
    assert evaluation["warm"]["frames_per_s"] > 0 and evaluation["personalize_s"] > 0
    assert evaluation["recognize_frames"] > 0 and evaluation["recognize_s"] > 0
