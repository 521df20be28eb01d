"""Meta-training throughput with 1 and 2 data-parallel gloo processes on the CPU (torchrun).

Each run trains the tiny CPU recipe on the synthetic `small` preset; tasks per second come from the run's own
metrics.jsonl (time inside the training loop), beside the end-to-end wall time of the command. Every process gets
cores / processes threads, so the comparison is at equal CPU.

    python benchmarks/ddp_scaling.py --json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import yaml
from worker import end_children_on_signals, run_child

from orbit_lite.data.synth import synthesize

RECIPE = {
    "data": {"frame_size": 64, "num_workers": 0},
    "model": {"learner": "protonets", "backbone": "tiny_cnn", "weights": "none", "head": "proto_cosine"},
    "lite": {"h": 8, "chunk_size": 64, "query_chunk": 128},
    "train": {"epochs": 2, "tasks_per_user": 16, "tasks_per_batch": 8, "optimizer": "adamw", "lr": 2e-3,
              "warmup_epochs": 0, "scheduler": "constant", "val_every": 100, "seed": 0, "device": "cpu"},
    "train_sampling": {"subsample_factor": 5, "clip_cap": 40},
}  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(data: Path, recipe: Path, out: Path, processes: int) -> dict:
    threads = max(1, (os.cpu_count() or 1) // processes)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    launcher = ["-m", "torch.distributed.run", f"--nproc_per_node={processes}", f"--master_port={free_port()}"]
    command = [sys.executable, *launcher, "-m", "orbit_lite", "train", "--data", str(data), "--config", str(recipe),
               "--out", str(out)]  # fmt: skip
    start = time.perf_counter()
    done = run_child(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        return {"processes": processes, "error": done.stderr.strip().splitlines()[-1]}
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["type"] == "train"]
    tasks = sum(r["tasks"] for r in train)
    loop_seconds = sum(r["tasks"] / r["tasks_per_s"] for r in train)
    return {"processes": processes, "threads_per_process": threads, "tasks": tasks,
            "tasks_per_s": round(tasks / loop_seconds, 2), "wall_seconds": round(wall, 1)}  # fmt: skip


def main() -> None:
    end_children_on_signals()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", default="1,2")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = synthesize(Path(tmp) / "data", "small", seed=0).root
        recipe = Path(tmp) / "recipe.yaml"
        recipe.write_text(yaml.safe_dump(RECIPE))
        results = [run(data, recipe, Path(tmp) / f"run{n}", int(n)) for n in args.processes.split(",")]
    summary = {"cpu_count": os.cpu_count(), "results": results}
    rates = [r.get("tasks_per_s") for r in results]
    if len(rates) == 2 and all(rates):
        summary["speedup"] = round(rates[1] / rates[0], 2)
    if not args.json:
        for r in results:
            print(r, file=sys.stderr)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
