"""benchmarks/paper_claims.py: every part runs (--quick) and the report holds real, sane numbers; the committed
report is what its generator writes from the committed numbers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.mark.slow
@pytest.mark.heavy  # every part runs, small: minutes on 2 cores (`make test-all`)
def test_quick_report(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "paper_claims.py"), "--quick", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = (tmp_path / "paper_claims.md").read_text()
    for heading in ("## 1. Memory", "## 2. The LITE gradient", "## 3. Larger images", "## 4. Training on full",
                    "## 5. The pipeline at ORBIT's size", "## 6. Larger images, with ImageNet weights",
                    "## 7. LITE meta-training on top of ImageNet weights"):  # fmt: skip
        assert heading in report
    assert "**Quick mode**" in report
    for plot in ("memory", "gradient", "accuracy", "pretrained_sizes"):
        assert (tmp_path / f"paper_claims_{plot}.png").stat().st_size > 1000
    numbers = json.loads((tmp_path / "paper_claims.json").read_text())
    lite = [r for r in numbers["memory"]["runs"] if r["mode"] == "lite"]
    assert lite and all(r["peak_mb"] > 0 for r in lite)
    assert max(r["peak_mb"] for r in lite) / min(r["peak_mb"] for r in lite) < 1.25  # flat in N
    rows = numbers["gradient"]["rows"]
    assert rows[-1]["h"] == numbers["gradient"]["n"] and rows[-1]["relative_error_mean"] < 1e-6  # H = N is exact
    assert rows[0]["relative_error_mean"] > rows[-2]["relative_error_mean"]  # more rows back-propagated, less noise
    training = numbers["training"]
    for run in ("lite_small", "lite_large", "full_small_tasks"):
        assert 0 <= training[run]["frame_accuracy"]["mean"] <= 1 and training[run]["tasks"] > 0
    pretrained = numbers["pretrained_sizes"]["runs"]
    assert {r["learner"] for r in pretrained} == {"protonets", "finetuner"}
    assert all(0 <= r["frame_accuracy"]["mean"] <= 1 and r["per_video"] for r in pretrained)
    objects = numbers["pretrained_sizes"]["objects"]
    assert objects["test"] and objects["train"] and not objects["shared_train_test"]  # test objects unseen in training
    lite = numbers["pretrained_lite"]["runs"]
    assert all(lite[k]["tasks"] > 0 for k in ("lite_small", "lite_large", "small_tasks_large"))
    assert lite["none_small"]["frame_size"] == lite["lite_small"]["frame_size"]
    scale = numbers["orbit_scale"]
    assert scale["evaluation"]["scores"] > 0 and scale["largest_test_task"]["frames"] > 0


def test_report_is_rewritten_from_the_committed_numbers(tmp_path: Path) -> None:
    numbers = json.loads((ROOT / "docs" / "paper_claims.json").read_text())
    (tmp_path / "paper_claims.json").write_text(json.dumps(numbers))
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "paper_claims.py"), "--report-only", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = (tmp_path / "paper_claims.md").read_text()
    # docs/paper_claims.md is generated, never edited by hand: the committed one is exactly what the numbers give
    assert report == (ROOT / "docs" / "paper_claims.md").read_text()
    runs = numbers["memory"]["runs"]
    kept = {r["n"]: r for r in runs if r["mode"] == "checkpoint" and "peak_mb" in r}
    full = {r["n"]: r for r in runs if r["mode"] == "full" and "peak_mb" in r}
    assert kept and set(kept) == set(full)  # activation checkpointing measured at every N full back-propagation was
    top = max(kept)
    assert f"{kept[top]['peak_mb']:,.0f} MB" in report and f"{full[top]['peak_mb']:,.0f} MB" in report
    assert (tmp_path / "paper_claims_memory.png").stat().st_size > 1000
