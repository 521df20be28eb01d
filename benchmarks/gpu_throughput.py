"""End-to-end speed on one GPU through the real commands' code paths; prints one JSON object.

1. writes the `small` synthetic preset at 224 px (JPEG frame folders), unless --data names a tree;
2. trains the 224 recipe (random weights, `train_sampling.subsample_factor=1` so that tasks have ORBIT-like sizes)
   through `orbit_lite.engine.train.train`, in fp32 and bf16: latency of the first task after the model is built,
   and tasks/s at steady state (the second half of the tasks);
3. evaluates the test users with `evaluate_users` (the ORBIT 2022 protocol, frames decoded from the JPEG folders):
   frames encoded per second, first (cold) and second (warm) run;
4. personalizes a user the model has not seen (`personalize_user`) and recognizes one of its clutter videos
   (`recognize`): latency of each, the model already loaded.

`--ab` also trains with one GPU habit switched off at a time (shape buckets, channels-last, cuDNN autotuning,
pinned memory), so each habit is kept only where it measures faster. On a CPU, `--quick` runs the same steps small
(tiny_cnn, 64 px) to check the script; its numbers mean nothing for a GPU.

    python benchmarks/gpu_throughput.py --json                 # on the GPU machine (~4 minutes)
    python benchmarks/gpu_throughput.py --quick --device cpu   # a check of the script (~1 minute)
"""

from __future__ import annotations

import argparse
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

HABITS = {"buckets": "lite.buckets=off", "channels_last": "train.channels_last=off",
          "cudnn_benchmark": "train.cudnn_benchmark=off", "pin_memory": "train.pin_memory=off"}  # fmt: skip


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class Timer(Monitor):
    """Time stamps of every finished task, from the moment the model is built and the first epoch starts."""

    def __init__(self) -> None:
        self.start: float | None = None
        self.stamps: list[float] = []

    def start_epoch(self, epoch: int, epochs: int, tasks: int) -> None:
        if self.start is None:
            self.start = time.perf_counter()

    def task_done(self, loss: float, accuracy: float, memory_mb: float) -> None:
        self.stamps.append(time.perf_counter())


def training_run(data: Path, config: Path, overrides: list[str], tasks: int, out: Path) -> dict[str, Any]:
    users = len(index_tree(data).users("train"))
    per_user = max(1, math.ceil(tasks / users))
    cfg = load_config([str(config)], [*overrides, "train.epochs=1", f"train.tasks_per_user={per_user}",
                                       "train.val_tasks_per_user=1"])  # fmt: skip
    timer = Timer()
    started = time.perf_counter()
    train(cfg, data, out, monitor=timer)
    stamps = timer.stamps
    assert timer.start is not None and stamps
    half = len(stamps) // 2
    steady = (len(stamps) - 1 - half) / max(stamps[-1] - stamps[half], 1e-9) if len(stamps) > 2 else float("nan")
    peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    return {
        "tasks": len(stamps),
        "first_task_s": round(stamps[0] - timer.start, 3),
        "tasks_per_s_steady": round(steady, 3),
        "tasks_per_s_overall": round(len(stamps) / (stamps[-1] - timer.start), 3),
        "wall_s": round(time.perf_counter() - started, 1),
        "peak_gpu_mb": None if peak is None else round(peak),
    }


def evaluation_run(checkpoint: Path, data: Path, device: torch.device, tasks: int) -> dict[str, Any]:
    learner, cfg = open_model(Checkpoint(checkpoint), device)
    index = index_tree(data)
    protocol = make_protocol(cfg, "orbit2022", "clutter", tasks)
    result: dict[str, Any] = {"tasks_per_user": tasks, "users": len(index.users("test"))}
    for label in ("cold", "warm"):
        _sync(device)
        results, seconds = evaluate_users(learner, index.users("test"), protocol, cfg, seed=0)
        _sync(device)
        frames = sum(sum(r.frames_encoded.values()) for r in results)
        result[label] = {"frames": frames, "seconds": round(seconds, 3), "frames_per_s": round(frames / seconds)}
    user = index.users("validation")[0]  # a user the evaluation has not personalized
    _sync(device)
    t0 = time.perf_counter()
    model, _ = personalize_user(learner, user, cfg)
    _sync(device)
    result["personalize_s"] = round(time.perf_counter() - t0, 3)
    personal = PersonalModel(model.recognizer, model.object_names, user.user_id, cfg.data.frame_size,
                             cfg.test_sampling.clip_length, {})  # fmt: skip
    video = next(v for v in user.videos() if v.video_type == "clutter")
    t0 = time.perf_counter()
    seen = recognize(personal, video.path)
    _sync(device)
    result["recognize_s"] = round(time.perf_counter() - t0, 3)
    result["recognize_frames"] = len(seen.predictions)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="An ORBIT tree (default: write the small preset).")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "protonets_lite_224.yaml")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tasks", type=int, default=48, help="Training tasks per precision (A/B runs: a quarter).")
    parser.add_argument("--eval-tasks", type=int, default=10, help="Evaluation tasks per test user.")
    parser.add_argument("--workers", type=int, default=8, help="Loader processes.")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--ab", default="", help=f"Habits to switch off one at a time: {','.join(HABITS)} or all.")
    parser.add_argument("--quick", action="store_true", help="Small CPU check: tiny_cnn at 64 px, few tasks.")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="Extra config overrides.")
    parser.add_argument("--json", action="store_true", help="Print only the JSON object.")
    parser.add_argument("--save", type=Path, help="Also write the JSON here after every phase.")
    args = parser.parse_args()
    device = select_device(args.device)
    size = 64 if args.quick else 224
    base = [f"data.frame_size={size}", f"data.num_workers={args.workers}", "model.weights=none",
            "train_sampling.subsample_factor=1", f"train.device={device.type}", *args.overrides]  # fmt: skip
    if args.quick:
        base += ["model.backbone=tiny_cnn", "lite.chunk_size=32", "lite.query_chunk=32", "lite.h=4",
                 "train.tasks_per_batch=4", "train_sampling.clip_cap=40", "test_sampling.clip_cap=40"]  # fmt: skip
    report: dict[str, Any] = {"device": torch.cuda.get_device_name() if device.type == "cuda" else device.type,
                              "torch": torch.__version__, "config": args.config.name, "frame_size": size,
                              "overrides": base}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="orbit-gpu-") as tmp:
        data = args.data
        if data is None:
            t0 = time.perf_counter()
            data = synthesize(Path(tmp) / "data", "small", frame_size=size, seed=0).root
            report["synth_s"] = round(time.perf_counter() - t0, 1)
        runs: dict[str, Any] = {}
        report["training"] = runs

        def save() -> None:  # after every phase, so a run cut short by its time limit still leaves its numbers
            if args.save is not None:
                args.save.write_text(json.dumps(report, indent=2))

        precisions = args.precisions.split(",")
        for i, precision in enumerate(precisions):
            out = Path(tmp) / f"train_{precision}"
            runs[precision] = training_run(data, args.config, [*base, f"train.bf16={str(precision == 'bf16').lower()}"],
                                           args.tasks, out)  # fmt: skip
            if not args.json:
                print(precision, json.dumps(runs[precision]), file=sys.stderr)
            save()
            if i == 0:  # evaluation next: it matters more than the habit comparisons that come last
                report["evaluation"] = evaluation_run(out / "checkpoints" / "last.pt", data, device, args.eval_tasks)
                save()
        habits = list(HABITS) if args.ab == "all" else [h for h in args.ab.split(",") if h]
        for habit in habits:
            out = Path(tmp) / f"train_no_{habit}"
            runs[f"fp32_without_{habit}"] = training_run(data, args.config, [*base, HABITS[habit]],
                                                         max(8, args.tasks // 4), out)  # fmt: skip
            save()
    text = json.dumps(report, indent=None if args.json else 2)
    print(text)


if __name__ == "__main__":
    main()
