"""End-to-end speed on one GPU through the real commands' code paths; prints one JSON object, saved after each phase.

1. writes the `small` synthetic preset at 224 px (JPEG frame folders), unless --data names a tree;
2. trains the 224 recipe (random weights, `train_sampling.subsample_factor=1`, so tasks have ORBIT-like sizes) through
   `orbit_lite.engine.train.train` in fp32, until its steady state is proven (the last `--window` tasks' rate within
   10% of the `--window` before, the first optimizer step left out) or its time is up: the warm-up's seconds, the
   first task's latency from the model being built (a task's loss is read at the end of its optimizer step), tasks/s;
3. evaluates the test users with `evaluate_users` (the ORBIT 2022 protocol, frames decoded from the JPEG folders):
   frames encoded per second, first (cold) and second (warm) run, and warm again with 16 decode threads;
4. personalizes a user the model has not seen (`personalize_user`) and recognizes one of its clutter videos
   (`recognize`): latency of each, the model already loaded;
5. the same training in bf16;
6. `--ab`: training again with one habit switched from its default at a time (off, or on for the ones off by
   default), each for `--ab-seconds`, until `--deadline`; each is kept only where it measures faster. These runs
   follow in the same process, with cuDNN's per-shape choices already made: they compare steady rates, not first
   tasks.

On a CPU, `--quick` runs the same steps small (tiny_cnn, 64 px) to check the script; its numbers mean nothing for a GPU.

    PYTHONPATH=$PWD python3 benchmarks/gpu_throughput.py --ab all --save $OUT/gpu_throughput.json   # on a GPU
    python benchmarks/gpu_throughput.py --quick --device cpu --ab buckets                          # a check (~1 min)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing (the GPU machine has its own torch)

from orbit_lite.config import load_config  # noqa: E402
from orbit_lite.data.layout import index_tree  # noqa: E402
from orbit_lite.data.synth import synthesize  # noqa: E402
from orbit_lite.engine.evaluate import evaluate_users, make_protocol  # noqa: E402
from orbit_lite.engine.model import Checkpoint, open_model  # noqa: E402
from orbit_lite.engine.personalize import personalize_user  # noqa: E402
from orbit_lite.engine.recognize import recognize  # noqa: E402
from orbit_lite.engine.train import Monitor, train  # noqa: E402
from orbit_lite.personal import PersonalModel  # noqa: E402
from orbit_lite.runtime import select_device  # noqa: E402

# Each habit switched away from its default: off for those on by default (on CUDA), on for those off by default.
HABITS = {"batch_context": "train.batch_context=off", "cuda_graphs": "train.cuda_graphs=on",
          "tf32": "train.tf32=off", "fused_adam": "train.fused_adam=off", "warmup": "train.warmup=off",
          "cudnn_benchmark": "train.cudnn_benchmark=off", "channels_last": "train.channels_last=off",
          "buckets": "lite.buckets=off", "pin_memory": "train.pin_memory=off"}  # fmt: skip
STEADY_TOLERANCE = 0.10


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class _Stop(Exception):
    """Raised by the timer once the steady state is proven or the run's time is up."""


def steady_rates(stamps: list[float], window: int, skip: int) -> tuple[float, float] | None:
    """Tasks/s over the last ``window`` tasks and over the ``window`` before them, ``stamps[skip:]`` only."""
    usable = stamps[skip:]
    if len(usable) < 2 * window + 1:
        return None
    last = window / max(usable[-1] - usable[-1 - window], 1e-9)
    before = window / max(usable[-1 - window] - usable[-1 - 2 * window], 1e-9)
    return last, before


class Timer(Monitor):
    """Time stamps of every finished task from the model being built; stops the run at a proven steady state."""

    def __init__(self, window: int, step: int, seconds: float, max_tasks: int) -> None:
        self.window, self.step, self.seconds, self.max_tasks = window, step, seconds, max_tasks
        self.built: float | None = None
        self.first_epoch: float | None = None
        self.stamps: list[float] = []
        self.proven = False

    def model_ready(self, learner: torch.nn.Module) -> None:
        self.built = time.perf_counter()

    def start_epoch(self, epoch: int, epochs: int, tasks: int) -> None:
        if self.first_epoch is None:
            self.first_epoch = time.perf_counter()

    def task_done(self, loss: float, accuracy: float, memory_mb: float) -> None:
        now = time.perf_counter()
        self.stamps.append(now)
        if len(self.stamps) % self.step:  # a step's tasks arrive together: judge (and stop) at step boundaries
            return
        rates = steady_rates(self.stamps, self.window, self.step)  # the first step (set-up) left out
        self.proven = rates is not None and abs(rates[0] - rates[1]) <= STEADY_TOLERANCE * rates[1]
        if self.proven or len(self.stamps) >= self.max_tasks or now - (self.built or now) > self.seconds:
            raise _Stop


def training_run(data: Path, config: Path, overrides: list[str], out: Path, seconds: float, max_tasks: int,
                 window: int) -> dict[str, Any]:  # fmt: skip
    """Train until the steady state is proven, ``max_tasks`` or ``seconds``; the timings of that run."""
    users = len(index_tree(data).users("train"))
    per_user = math.ceil(max_tasks / users) + 1
    cfg = load_config([str(config)], [*overrides, "train.epochs=1", f"train.tasks_per_user={per_user}",
                                       "train.val_tasks_per_user=1", "train.tensorboard=off"])  # fmt: skip
    step = cfg.train.tasks_per_batch
    window = max(step, math.ceil(window / step) * step)  # whole optimizer steps
    timer = Timer(window, step, seconds, max_tasks)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    with contextlib.suppress(_Stop):
        train(cfg, data, out, monitor=timer)
    stamps, built = timer.stamps, timer.built
    assert built is not None and stamps, "no task finished"
    rates = steady_rates(stamps, window, step)
    peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    return {
        "tasks": len(stamps),
        "warmup_s": round((timer.first_epoch or built) - built, 3),
        "first_task_s": round(stamps[0] - built, 3),  # a task's loss is known at the end of its optimizer step
        "tasks_per_s_steady": None if rates is None else round(rates[0], 3),
        "tasks_per_s_window_before": None if rates is None else round(rates[1], 3),
        "steady_proven": timer.proven,
        "steady_window_tasks": window,
        "tasks_per_s_overall": round(len(stamps) / max(stamps[-1] - built, 1e-9), 3),
        "wall_s": round(time.perf_counter() - started, 1),
        "peak_gpu_mb": None if peak is None else round(peak),
    }


def _timed(fn: Any, device: torch.device) -> tuple[Any, float]:
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t0


def evaluation_run(data: Path, config: Path, overrides: list[str], out: Path, device: torch.device,
                   tasks: int) -> dict[str, Any]:  # fmt: skip
    """Evaluation, personalization and recognition with a model as built (``train.epochs=0`` writes it)."""
    train(
        load_config([str(config)], [*overrides, "train.epochs=0", "train.warmup=off", "train.tensorboard=off"]),
        data,
        out,
    )
    learner, cfg = open_model(Checkpoint(out / "checkpoints" / "last.pt"), device)
    index = index_tree(data)
    protocol = make_protocol(cfg, "orbit2022", "clutter", tasks)
    result: dict[str, Any] = {"tasks_per_user": tasks, "users": len(index.users("test"))}
    threads16 = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, decode_threads=16))
    for label, run_cfg in (("cold", cfg), ("warm", cfg), ("warm_decode_threads_16", threads16)):
        run = lambda c=run_cfg: evaluate_users(learner, index.users("test"), protocol, c)  # noqa: E731
        (results, _), seconds = _timed(run, device)
        frames = sum(r.frames_encoded.total for r in results)
        result[label] = {"frames": frames, "seconds": round(seconds, 3), "frames_per_s": round(frames / seconds)}
    user = index.users("validation")[0]  # a user the evaluation has not personalized
    (model, _), result["personalize_s"] = _timed(lambda: personalize_user(learner, user, cfg), device)
    personal = PersonalModel(model.recognizer, model.object_names, user.user_id, cfg.data.frame_size,
                             cfg.test_sampling.clip_length, {})  # fmt: skip
    video = next(v for v in user.videos() if v.video_type == "clutter")
    seen, result["recognize_s"] = _timed(lambda: recognize(personal, video.path), device)
    result["recognize_frames"] = len(seen.predictions)
    result["personalize_s"], result["recognize_s"] = round(result["personalize_s"], 3), round(result["recognize_s"], 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="An ORBIT tree (default: write the small preset).")
    parser.add_argument("--write-data", type=Path, help="Only write the small preset here (for other scripts).")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "protonets_lite_224.yaml")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--frame-size", type=int, help="Frame side (default 224; 64 with --quick).")
    parser.add_argument("--seconds", type=float, default=90, help="Time for the fp32 run (bf16: two thirds).")
    parser.add_argument("--max-tasks", type=int, default=5000, help="Most training tasks per run.")
    parser.add_argument("--window", type=int, default=32, help="Tasks per steady-state window (whole steps).")
    parser.add_argument("--eval-tasks", type=int, default=10, help="Evaluation tasks per test user.")
    parser.add_argument("--workers", type=int, default=8, help="Loader processes.")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--ab", default="", help=f"Habits to switch one at a time: {','.join(HABITS)} or all.")
    parser.add_argument("--ab-seconds", type=float, default=20, help="Time for each habit's run.")
    parser.add_argument("--deadline", type=float, default=330, help="No new phase starts after this many seconds.")
    parser.add_argument("--quick", action="store_true", help="Small CPU check: tiny_cnn at 64 px, few tasks.")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="Extra config overrides.")
    parser.add_argument("--json", action="store_true", help="Print only the JSON object.")
    parser.add_argument("--save", type=Path, help="Also write the JSON here after every phase.")
    args = parser.parse_args()
    begun = time.perf_counter()
    size = args.frame_size or (64 if args.quick else 224)
    if args.write_data is not None:
        synthesize(args.write_data, "small", frame_size=size, seed=0)
        return
    device = select_device(args.device)
    base = [f"data.frame_size={size}", f"data.num_workers={args.workers}", "model.weights=none",
            "train_sampling.subsample_factor=1", f"train.device={device.type}", *args.overrides]  # fmt: skip
    if args.quick:
        base += ["model.backbone=tiny_cnn", "lite.chunk_size=32", "lite.query_chunk=32", "lite.h=4",
                 "train.tasks_per_batch=4", "train_sampling.clip_cap=40", "test_sampling.clip_cap=40"]  # fmt: skip
    report: dict[str, Any] = {"device": torch.cuda.get_device_name() if device.type == "cuda" else device.type,
                              "torch": torch.__version__, "config": args.config.name, "frame_size": size,
                              "overrides": base, "steady_tolerance": STEADY_TOLERANCE}  # fmt: skip
    runs: dict[str, Any] = {}
    report["training"] = runs

    def save() -> None:  # after every phase, so a run cut short by its time limit still leaves its numbers
        if args.save is not None:
            args.save.write_text(json.dumps(report, indent=2))
        if not args.json:
            print(json.dumps(report["training"]), file=sys.stderr)

    def train_as(name: str, overrides: list[str], seconds: float, out: Path) -> None:
        runs[name] = training_run(data, args.config, overrides, out, seconds, args.max_tasks, args.window)
        save()

    with tempfile.TemporaryDirectory(prefix="orbit-gpu-") as tmp:
        data = args.data
        if data is None:
            t0 = time.perf_counter()
            data = synthesize(Path(tmp) / "data", "small", frame_size=size, seed=0).root
            report["synth_s"] = round(time.perf_counter() - t0, 1)
        precisions = args.precisions.split(",")
        for i, precision in enumerate(precisions):
            overrides = [*base, f"train.bf16={str(precision == 'bf16').lower()}"]
            train_as(precision, overrides, args.seconds * (1 if i == 0 else 2 / 3), Path(tmp) / f"train_{precision}")
            if i == 0:  # evaluation next: it matters more than the habit comparisons that come last
                out = Path(tmp) / "built"
                report["evaluation"] = evaluation_run(data, args.config, base, out, device, args.eval_tasks)
                save()
        habits = list(HABITS) if args.ab == "all" else [h for h in args.ab.split(",") if h]
        for habit in habits:
            if time.perf_counter() - begun > args.deadline:
                report.setdefault("not_run", []).append(habit)
                continue
            name = f"fp32_{HABITS[habit].split('.', 1)[1].replace('=', '_')}"  # e.g. fp32_buckets_off
            train_as(name, [*base, HABITS[habit]], args.ab_seconds, Path(tmp) / f"train_{habit}")
    report["wall_s"] = round(time.perf_counter() - begun, 1)
    save()
    print(json.dumps(report, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
