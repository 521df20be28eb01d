"""Do two `make demo` runs give the same numbers? Compares two demo folders and prints JSON.

    make demo DEMO_DIR=runs/demo-a && make demo DEMO_DIR=runs/demo-b
    OMP_NUM_THREADS=1 make demo DEMO_DIR=runs/demo-1thread        # other kernels' rounding, as on another machine
    python benchmarks/demo_repeat.py runs/demo-a runs/demo-b

For the meta-trained checkpoint: whether every tensor is bit-identical, and the largest absolute difference. For the
training log and every results folder: whether the metrics are identical (times and speeds left out), and the
largest difference of the three ORBIT metrics, in percentage points.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

TIMING = {"tasks_per_s", "memory_mb", "wall_seconds", "cost"}
METRICS = ("frame_accuracy", "frames_to_recognition", "video_accuracy")


def weights(a: Path, b: Path) -> dict:
    from orbit_lite.checkpoint import load_checkpoint

    x, y = (load_checkpoint(p / "lite" / "checkpoints" / "best.pt")["model"] for p in (a, b))
    floats = [k for k in x if x[k].is_floating_point()]
    diff = max((float((x[k] - y[k]).abs().max()) for k in floats), default=0.0)
    return {"identical": x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x), "max_abs_diff": diff}


def log_lines(run: Path) -> list[dict]:
    lines = [json.loads(line) for line in (run / "lite" / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in lines]


def results(a: Path, b: Path, name: str) -> dict:
    x, y = (json.loads((p / name / "metrics.json").read_text()) for p in (a, b))
    points = {m: round(100 * abs(x[m]["mean"] - y[m]["mean"]), 3) for m in METRICS}
    same = {k: v for k, v in x.items() if k not in TIMING} == {k: v for k, v in y.items() if k not in TIMING}
    return {"identical": same, "difference_points": points, "frame_accuracy": [x[METRICS[0]]["mean"],
            y[METRICS[0]]["mean"]]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    args = parser.parse_args()
    report = {"weights": weights(args.a, args.b), "training_log_identical": log_lines(args.a) == log_lines(args.b)}
    for name in ("eval-protonets", "eval-finetuner", "eval-lite"):
        report[name] = results(args.a, args.b, name)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
