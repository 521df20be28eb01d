"""Training tasks per second that the data pipeline alone delivers (no model): is GPU training bound by decoding?

Builds the training loader exactly as ``orbit-lite train`` does (the recipe's sampling, ``subsample_factor=1`` so
that tasks have ORBIT-like sizes) and draws tasks from it for each worker count, without any model. If this rate
is near the training rate that ``gpu_throughput.py`` measures, training is bound by JPEG decoding on the CPU, not by
the GPU. Prints one JSON object.

    python benchmarks/loader_throughput.py --workers 8,16 --tasks 32            # on the GPU machine (224 px)
    python benchmarks/loader_throughput.py --frame-size 64 --workers 0,2 --tasks 4   # a CPU check of the script
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing (the GPU machine has its own torch)

from orbit_lite.config import load_config  # noqa: E402
from orbit_lite.data.layout import index_tree  # noqa: E402
from orbit_lite.data.loader import UserTaskDataset, task_loader  # noqa: E402
from orbit_lite.data.synth import synthesize  # noqa: E402


def draw(data: Path, config: Path, size: int, workers: int, tasks: int, overrides: list[str]) -> dict[str, Any]:
    cfg = load_config([str(config)], [f"data.frame_size={size}", f"data.num_workers={workers}",
                                      "train_sampling.subsample_factor=1", *overrides])  # fmt: skip
    users = index_tree(data).users("train")
    per_user = max(1, -(-tasks // len(users)))
    dataset = UserTaskDataset(users, cfg.train_sampling, cfg.data, train=True, tasks_per_user=per_user, seed=0)
    loader = task_loader(dataset, shuffle=True, num_workers=workers, seed=0)
    loader.sampler.set_epoch(0, 0)
    started = time.perf_counter()
    stamps, frames = [], 0
    for task in loader:
        if task is None:
            continue
        frames += task.context_clips.shape[0] * task.context_clips.shape[1]
        frames += task.target_clips.shape[0] * task.target_clips.shape[1]
        stamps.append(time.perf_counter())
        if len(stamps) >= tasks:
            break
    half = len(stamps) // 2
    steady = (len(stamps) - 1 - half) / max(stamps[-1] - stamps[half], 1e-9) if len(stamps) > 2 else float("nan")
    wall = stamps[-1] - started
    return {"workers": workers, "tasks": len(stamps), "frames_per_task": round(frames / len(stamps)),
            "first_task_s": round(stamps[0] - started, 3), "tasks_per_s_steady": round(steady, 3),
            "frames_per_s_overall": round(frames / wall)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="An ORBIT tree (default: write the small preset).")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "protonets_lite_224.yaml")
    parser.add_argument("--frame-size", type=int, default=224)
    parser.add_argument("--workers", default="8,16", help="Comma-separated loader process counts.")
    parser.add_argument("--tasks", type=int, default=32)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="Extra config overrides.")
    args = parser.parse_args()
    report: dict[str, Any] = {"cpus": os.cpu_count(), "frame_size": args.frame_size, "config": args.config.name}
    with tempfile.TemporaryDirectory(prefix="orbit-loader-") as tmp:
        data = args.data or synthesize(Path(tmp) / "data", "small", frame_size=args.frame_size, seed=0).root
        report["runs"] = [draw(data, args.config, args.frame_size, int(w), args.tasks, args.overrides)
                          for w in args.workers.split(",")]  # fmt: skip
    print(json.dumps(report))


if __name__ == "__main__":
    main()
