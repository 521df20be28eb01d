"""The LITE paper's claims, measured on this code; writes docs/paper_claims.md, PNG plots and the raw JSON.

Parts (``--parts``, default all): ``memory`` (peak memory of a training step against task size, LITE against full
back-propagation), ``gradient`` (error and variance of the LITE gradient against H), ``image_size`` (84 against
224 px), ``small_tasks`` (LITE on full tasks against full back-propagation on tasks capped to the same memory),
``orbit_scale`` (the pipeline at ORBIT's size), ``pretrained_sizes`` (84, 128, 224 and 320 px with ImageNet
weights on real photos, small objects in clutter, no meta-training) and ``pretrained_lite`` (LITE meta-training from
those weights at 84 and 224 px, and full tasks against small ones; see benchmarks/pretrained_claims.py).
``--quick`` shrinks everything to run in a few minutes (tiny backbone, small frames, small data): the same code paths,
not the same conclusions. Every number comes from a run made by this script.

    python benchmarks/paper_claims.py                 # the full report (hours on 2 CPU cores)
    python benchmarks/paper_claims.py --quick --out /tmp/claims
    python benchmarks/paper_claims.py --parts pretrained_lite --merge --device cuda   # at full size, on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from worker import end_children_on_signals, run_child

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("memory", "gradient", "image_size", "small_tasks", "orbit_scale", "pretrained_sizes", "pretrained_lite")
# A backbone whose receptive field covers an object at 224 px as well as at 84 px, so that the image-size comparison
# is about the pixels, not about a network that sees only a small patch of a large frame.
BACKBONE_FOR_SIZES = "small_cnn"


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    done = run_child([sys.executable, "-m", "orbit_lite", *args], capture_output=True, text=True,
                     env={**os.environ, **(env or {})})  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"orbit-lite {args[0]} failed: {done.stderr.strip().splitlines()[-1:]}")
    return done


# ---- memory vs task size ------------------------------------------------------------------------------------------
def part_memory(quick: bool, tmp: Path) -> dict[str, Any]:
    backbone, size = ("tiny_cnn", 64) if quick else ("efficientnet_b0", 224)
    sizes = [25, 50, 100] if quick else [25, 50, 100, 200, 400]
    hs = [4] if quick else [4, 8, 16]
    full_limit = 100 if quick else 200  # full back-propagation at N=400 and 224 px needs ~37 GB: past this machine
    runs = []
    script = ROOT / "benchmarks" / "lite_memory.py"
    common = ["--backbone", backbone, "--frame-size", str(size), "--json", "--queries", "16", "--query-chunk", "8"]
    for h in hs:
        done = run_child([sys.executable, str(script), *common, "--context", ",".join(map(str, sizes)),
                          "--h", str(h), "--modes", "lite"], capture_output=True, text=True)  # fmt: skip
        runs += [{**r, "h": h} for r in json.loads(done.stdout.strip().splitlines()[-1])["results"]]
    full_sizes = [n for n in sizes if n <= full_limit]
    # activation checkpointing (the LITE poster's fourth "current solution") at the same N as full back-propagation
    done = run_child([sys.executable, str(script), *common, "--context", ",".join(map(str, full_sizes)),
                      "--modes", "full,checkpoint"], capture_output=True, text=True)  # fmt: skip
    runs += json.loads(done.stdout.strip().splitlines()[-1])["results"]
    return {"backbone": backbone, "frame_size": size, "sizes": sizes, "hs": hs, "full_limit": full_limit, "runs": runs}


# ---- gradient quality vs H ----------------------------------------------------------------------------------------
def part_gradient(quick: bool, tmp: Path, data: Path) -> dict[str, Any]:
    from orbit_lite.config import DataConfig, LiteConfig, ModelConfig, evaluation_sampling
    from orbit_lite.data.layout import index_tree
    from orbit_lite.data.tasks import TaskBuilder
    from orbit_lite.learners import create_learner

    size = 32 if quick else 64
    torch.manual_seed(0)
    learner = create_learner(ModelConfig(learner="protonets", backbone="tiny_cnn", weights="none"), size)
    user = index_tree(data).users("train")[0]
    sampling = evaluation_sampling(subsample_factor=2 if quick else 1, clip_cap=40, target_filter=())
    task = TaskBuilder(sampling, DataConfig(frame_size=size)).build(user, np.random.default_rng(0), train=False)
    context, labels = task.context_clips, task.context_labels
    query = torch.cat([v.clips for v in task.target_videos])[:64]
    query_labels = torch.cat([torch.full((len(v.clips),), v.label) for v in task.target_videos])[:64]
    n = len(context)
    params = [p for p in learner.parameters() if p.requires_grad]

    def gradient(h: int, seed: int) -> torch.Tensor:
        learner.zero_grad()
        lite = LiteConfig(h=h, chunk_size=64, query_chunk=64)
        learner.train_task(context, labels, query, query_labels, task.way, lite, torch.Generator().manual_seed(seed))
        return torch.cat([p.grad.reshape(-1) for p in params]).double()

    full = gradient(n, 0)
    scale = full.norm()
    draws = 16 if quick else 64
    rows, convergence = [], []
    for h in sorted({1, 2, 4, 8, 16, 32, n} - {x for x in (16, 32) if x >= n}):
        g = torch.stack([gradient(h, s) for s in range(draws if h < n else 1)])
        errors = (g - full).norm(dim=1) / scale
        variance = float(((g - g.mean(0)) ** 2).sum(1).mean() / scale**2) if len(g) > 1 else 0.0
        # averaging m independent task gradients divides the variance by m: tasks per step for 10% relative noise
        needed = int(np.ceil(variance / 0.1**2)) if variance > 0 else 1
        rows.append({"h": h, "draws": len(g), "relative_error_mean": float(errors.mean()),
                     "relative_variance": variance, "relative_error_of_mean": float((g.mean(0) - full).norm() / scale),
                     "tasks_per_step_for_10pct_noise": needed})  # fmt: skip
        if h == 2:  # unbiased: the mean of m draws closes in on the true gradient as 1/sqrt(m)
            for m in (1, 4, 16, 64):
                if m <= len(g):
                    err = float((g[:m].mean(0) - full).norm() / scale)
                    convergence.append({"h": h, "draws": m, "relative_error_of_mean": err})
    return {"n": n, "way": task.way, "queries": len(query), "frame_size": size, "rows": rows,
            "convergence": convergence, "learner": "protonets"}  # fmt: skip


# ---- training runs for image size and small tasks -----------------------------------------------------------------
def _recipe(size: int, quick: bool, lite: bool, small_tasks: bool, h: int) -> dict[str, Any]:
    recipe = yaml.safe_load((ROOT / "configs" / "cpu_demo.yaml").read_text())
    recipe["data"] = {"frame_size": size, "num_workers": 1}
    recipe["model"]["backbone"] = BACKBONE_FOR_SIZES
    recipe["lite"] = {"enabled": lite, "h": h, "chunk_size": 64, "query_chunk": 64}
    recipe["train"].update(epochs=2 if quick else 4, tasks_per_user=6 if quick else 12, val_every=100)
    if small_tasks:  # at most ~H context clips: one clip of one video per object, so memory matches LITE's H rows
        recipe["train_sampling"] = {**recipe.get("train_sampling", {}), "context_shot_method": "fixed",
                                    "context_shot": 1, "context_clip_method": "random_200", "clip_cap": 1}  # fmt: skip
    return recipe


def _train_and_evaluate(name: str, recipe: dict, data: Path, tmp: Path) -> dict[str, Any]:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    run = tmp / name
    start = time.perf_counter()
    _cli("train", "--data", str(data), "--config", str(path), "--out", str(run), "--device", "cpu")
    seconds = time.perf_counter() - start
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    memory = max(r["memory_mb"] for r in records if r["type"] == "train")
    results = tmp / f"{name}-eval"
    # one task per user: the synthetic clutter videos are shorter than 200 frames, so every task scores the same frames
    _cli("evaluate", "--data", str(data), "--checkpoint", str(run / "checkpoints" / "last.pt"), "--out", str(results),
         "--tasks", "1", "--device", "cpu")  # fmt: skip
    metrics = json.loads((results / "metrics.json").read_text())
    import pandas as pd

    videos = pd.read_csv(results / "per_video.csv")
    twins = videos[videos["object"].isin(["house keys", "car keys"])]["frame_accuracy"].to_numpy()
    from orbit_lite.metrics import mean_ci95

    tm, tc = mean_ci95(twins)
    tasks = int(sum(r["tasks"] for r in records if r["type"] == "train"))
    return {"name": name, "train_seconds": round(seconds, 1), "peak_train_memory_mb": memory, "tasks": tasks,
            "frame_accuracy": metrics["frame_accuracy"],
            "twins_frame_accuracy": {"mean": tm, "ci95": tc, "n": len(twins)}}  # fmt: skip


def part_training(quick: bool, tmp: Path, data: Path, parts: set[str]) -> dict[str, Any]:
    from orbit_lite.data.layout import index_tree

    small, large, h = (32, 64, 4) if quick else (84, 224, 8)
    test_users = index_tree(data).users("test")
    out: dict[str, Any] = {"small_size": small, "large_size": large, "h": h, "preset": "tiny" if quick else "demo",
                           "backbone": BACKBONE_FOR_SIZES,
                           "chance": float(np.mean([1 / len(u.objects) for u in test_users])),
                           "test_users": len(index_tree(data).users("test"))}  # fmt: skip
    if "image_size" in parts or "small_tasks" in parts:
        out["lite_large"] = _train_and_evaluate("lite_large", _recipe(large, quick, True, False, h), data, tmp)
    if "image_size" in parts:
        out["lite_small"] = _train_and_evaluate("lite_small", _recipe(small, quick, True, False, h), data, tmp)
    if "small_tasks" in parts:
        out["full_small_tasks"] = _train_and_evaluate("full_small_tasks", _recipe(large, quick, False, True, h),
                                                      data, tmp)  # fmt: skip
    return out


# ---- ORBIT scale ----------------------------------------------------------------------------------------------------
_TASK_PROBE = """
import json, resource, sys, time, numpy as np
from orbit_lite.config import DataConfig, evaluation_sampling
from orbit_lite.data.layout import index_tree
from orbit_lite.data.tasks import TaskBuilder
index = index_tree(sys.argv[1])
users = index.users("test")
largest = max(users, key=lambda u: sum(v.num_frames for o in u.objects for v in o.clutter))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
start = time.perf_counter()
task = TaskBuilder(evaluation_sampling(), DataConfig(frame_size=int(sys.argv[2]))).build(
    largest, np.random.default_rng(0), train=False)
seconds = time.perf_counter() - start
frames = int(task.context_clips.shape[0]) + sum(len(v.clips) for v in task.target_videos)
print(json.dumps({"user": largest.user_id, "objects": task.way, "query_videos": len(task.target_videos),
                  "frames": frames, "seconds": round(seconds, 2),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                  "rss_before_mb": round(before)}))
"""


_EVAL_PROBE = """
import resource, sys
from orbit_lite.cli.main import app
try:
    app(sys.argv[1:])
except SystemExit:
    pass
print("PEAK", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def part_orbit_scale(quick: bool, tmp: Path) -> dict[str, Any]:
    from orbit_lite.data.layout import index_tree
    from orbit_lite.data.summary import summarize_index
    from orbit_lite.data.synth import synthesize

    preset = "small" if quick else "orbit-scale"
    start = time.perf_counter()
    data = synthesize(tmp / "orbit-scale", preset, seed=0).root
    synth_seconds = time.perf_counter() - start
    start = time.perf_counter()
    index = index_tree(data)
    index_seconds = time.perf_counter() - start
    start = time.perf_counter()
    summary = summarize_index(index)
    summarize_seconds = time.perf_counter() - start
    probe = run_child([sys.executable, "-c", _TASK_PROBE, str(data), "32"], capture_output=True, text=True)
    task = json.loads(probe.stdout.strip().splitlines()[-1])
    recipe = tmp / "eval.yaml"
    recipe.write_text(yaml.safe_dump({"data": {"frame_size": 32, "num_workers": 0},
                                      "model": {"learner": "protonets", "backbone": "tiny_cnn", "weights": "none"},
                                      "train": {"epochs": 1, "tasks_per_user": 1, "tasks_per_batch": 4,
                                                "val_every": 100, "warmup_epochs": 0, "lr": 1e-3}}))  # fmt: skip
    _cli("train", "--data", str(data), "--config", str(recipe), "--out", str(tmp / "scale-run"), "--device", "cpu")
    checkpoint = tmp / "scale-run" / "checkpoints" / "last.pt"
    command = ["evaluate", "--data", str(data), "--checkpoint", str(checkpoint), "--out", str(tmp / "scale-eval"),
               "--device", "cpu"]  # fmt: skip
    start = time.perf_counter()
    done = run_child([sys.executable, "-c", _EVAL_PROBE, *command], capture_output=True, text=True)
    eval_seconds = time.perf_counter() - start
    peak = float(next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("PEAK")))
    metrics = json.loads((tmp / "scale-eval" / "metrics.json").read_text())
    return {
        "preset": preset, "synth_seconds": round(synth_seconds, 1), "index_seconds": round(index_seconds, 2),
        "summarize_seconds": round(summarize_seconds, 2),
        "summary": {split: s.counts() for split, s in summary.items()},
        "largest_test_task": task,
        "evaluation": {"users": metrics["users"], "tasks_per_user": metrics["tasks_per_user"],
                       "scores": metrics["frame_accuracy"]["n"], "frames_encoded": metrics["frames_encoded"]["total"],
                       "wall_seconds_inside": metrics["wall_seconds"], "wall_seconds_command": round(eval_seconds, 1),
                       "peak_rss_mb": round(peak)},
    }  # fmt: skip


def main() -> None:
    end_children_on_signals()  # `kill` ends the train child it is waiting for too, and removes the temporary folder
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {', '.join(PARTS)}")
    parser.add_argument("--quick", action="store_true", help="tiny settings: minutes, not the better part of an hour")
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="where the report goes")
    parser.add_argument("--merge", action="store_true", help="keep the other parts' numbers from an earlier run")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from --out's JSON; run nothing")
    parser.add_argument("--photos-data", type=Path, help="a `data synth --preset photos-clutter` tree to reuse "
                        "(default: written to a temporary folder)")  # fmt: skip
    parser.add_argument("--device", default="cpu", help="where pretrained_lite meta-trains (cuda: the full-size run)")
    args = parser.parse_args()
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    unknown = parts - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s) {sorted(unknown)}; choose from {', '.join(PARTS)}")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from claims_report import write_report
    from pretrained_claims import make_data, part_pretrained_lite, part_pretrained_sizes

    from orbit_lite.data.synth import synthesize

    earlier = args.out / "paper_claims.json"
    if args.report_only:
        results = json.loads(earlier.read_text())
        print(json.dumps({"report": str(write_report(results, args.out, results["quick"]))}))
        return
    results: dict[str, Any] = {"quick": args.quick}

    def no_meta_training() -> dict | None:  # read when needed: a run beside this one may have written it since
        if "pretrained_sizes" not in results and args.merge and earlier.exists():
            return json.loads(earlier.read_text()).get("pretrained_sizes")
        return results.get("pretrained_sizes")

    def save_partial(key: str, part: dict) -> None:  # the JSON as it would be if the run ended here; replaced whole
        now = {**(json.loads(earlier.read_text()) if args.merge and earlier.exists() else {}), **results,
               key: part}  # fmt: skip
        args.out.mkdir(parents=True, exist_ok=True)
        staged = earlier.with_suffix(f".json.{os.getpid()}.partial")
        staged.write_text(json.dumps(now, indent=2))
        staged.replace(earlier)

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data = None
        if parts & {"gradient", "image_size", "small_tasks"}:
            # the demo users at 224 px (the twins' fine pattern survives at 224 and is averaged away at 84)
            data = synthesize(tmp / "data", "tiny" if args.quick else "demo", 64 if args.quick else 224, seed=0).root
        photos = args.photos_data or tmp / "photos-clutter"
        if parts & {"pretrained_sizes", "pretrained_lite"}:
            make_data(photos, args.quick)
        sizes_save, lite_save = partial(save_partial, "pretrained_sizes"), partial(save_partial, "pretrained_lite")
        steps = [("memory", lambda: part_memory(args.quick, tmp)),
                 ("gradient", lambda: part_gradient(args.quick, tmp, data)),
                 ("training", lambda: part_training(args.quick, tmp, data, parts)),
                 ("orbit_scale", lambda: part_orbit_scale(args.quick, tmp)),
                 ("pretrained_sizes", lambda: part_pretrained_sizes(args.quick, tmp, photos, sizes_save)),
                 ("pretrained_lite", lambda: part_pretrained_lite(args.quick, tmp, photos, args.device,
                                                                  no_meta_training, lite_save))]  # fmt: skip
        for key, run in steps:
            wanted = parts & ({"image_size", "small_tasks"} if key == "training" else {key})
            if not wanted:
                continue
            start = time.perf_counter()
            print(f"[paper_claims] {key} ...", file=sys.stderr, flush=True)
            results[key] = run()
            results[key]["seconds"] = round(time.perf_counter() - start, 1)
    results["peak_rss_mb_of_this_script"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if args.merge and earlier.exists():  # read now, not at the start: a run beside this one may have added parts
        results = {**json.loads(earlier.read_text()), **results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "paper_claims.json").write_text(json.dumps(results, indent=2))
    path = write_report(results, args.out, args.quick)
    print(json.dumps({"report": str(path), "parts": sorted(parts), "quick": args.quick}))


if __name__ == "__main__":
    main()
