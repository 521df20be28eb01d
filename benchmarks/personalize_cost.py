"""Seconds, MACs and peak memory to personalize one user, per learner, side by side.

Methods: ``protonets`` and ``simple_cnaps`` (one pass), ``finetuner`` (features cached: one backbone pass per
frame), ``finetuner_film`` (LITE: H clips back-propagated per step), ``finetuner_film_full`` (the full gradient of
every clip at every step, in chunks: the reference's way for FineTuner + FiLM), and ``finetuner_reference`` (the
reference's way for FineTuner: the frozen backbone re-run over every clip at every step). Each runs in a fresh
subprocess, so one peak never hides another: peak RSS on the CPU, ``torch.cuda.max_memory_allocated`` on a GPU.
Random weights and random frames: nothing to download. MACs by ``torch.utils.flop_counter.FlopCounterMode``
(FLOPs / 2) in a second, counted run; seconds from the first, uncounted one.

    python benchmarks/personalize_cost.py --device cuda --frame-size 224 --context 50,500 --json
    python benchmarks/personalize_cost.py --frame-size 64 --context 10,40 --steps 5   # a CPU-sized run
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import torch
import torch.nn.functional as F
from worker import claim_save_path, end_children_on_signals, run_worker, save_partial

METHODS = ("protonets", "simple_cnaps", "finetuner", "finetuner_film", "finetuner_film_full", "finetuner_reference")


def reference_finetuner(learner, clips: torch.Tensor, labels: torch.Tensor, way: int, steps: int, chunk: int):
    """The reference's FineTuner loop: every step runs the (frozen) backbone over every context clip again."""
    from orbit_lite.learners.finetune import make_optimizer

    weight = torch.zeros(way, learner.backbone.feature_dim, device=learner.device, requires_grad=True)
    bias = torch.zeros(way, device=learner.device, requires_grad=True)
    optimizer = make_optimizer([weight, bias], [], learner.finetune, "reference")
    labels = labels.to(learner.device)
    n = len(clips)
    for _ in range(steps):
        for start in range(0, n, chunk):
            with torch.no_grad():
                features = learner.clip_features(clips[start : start + chunk], None)
            loss = F.cross_entropy(F.linear(features, weight, bias), labels[start : start + chunk])
            (loss * (len(features) / n)).backward()
        optimizer.step()
        optimizer.zero_grad()
    return weight, bias


def worker(args: argparse.Namespace) -> dict:
    from orbit_lite.config import FinetuneConfig, ModelConfig
    from orbit_lite.cost import measure
    from orbit_lite.learners import create_learner
    from orbit_lite.runtime import select_device

    torch.manual_seed(0)
    device = select_device(args.device)
    name = {"finetuner_film_full": "finetuner_film", "finetuner_reference": "finetuner"}.get(args.method, args.method)
    finetune = FinetuneConfig(steps=args.steps, h=args.h, lite=args.method != "finetuner_film_full",
                              batch_size=args.batch_size)  # fmt: skip
    model = ModelConfig(learner=name, backbone=args.backbone, weights="none", style="reference")
    learner = create_learner(model, args.frame_size, finetune).to(device).eval()
    s, n, way = args.frame_size, args.n, args.way
    clips = torch.randint(0, 256, (n, 1, 3, s, s), dtype=torch.uint8)
    labels = torch.arange(n) % way

    def run():
        if args.method == "finetuner_reference":
            return reference_finetuner(learner, clips, labels, way, args.steps, args.batch_size)
        return learner.personalize(clips, labels, way, args.chunk)

    if device.type == "cuda":
        run()  # warm-up: cuDNN and allocator set-up are not personalization
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    macs = measure(run)[1].macs if args.macs else None
    return {
        "method": args.method, "n": n, "seconds": round(seconds, 3), "gmacs": None if macs is None else macs / 1e9,
        "peak_mb": round(peak, 1), "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
    }  # fmt: skip


def run_one(args: argparse.Namespace, method: str, n: int) -> dict:
    command = [sys.executable, __file__, "--worker", "--method", method, "--n", str(n)]
    for key in ("backbone", "frame_size", "h", "way", "steps", "chunk", "batch_size", "device"):
        command += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    if not args.macs:
        command.append("--no-macs")
    return run_worker(command, {"method": method, "n": n})


def main() -> None:
    end_children_on_signals()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="tf_efficientnet_b0")
    parser.add_argument("--frame-size", type=int, default=224)
    parser.add_argument("--context", default="50,500", help="comma-separated context sizes N (clips of one frame)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--way", type=int, default=5)
    parser.add_argument("--steps", type=int, default=50, help="FineTuner steps (the reference's 50)")
    parser.add_argument("--h", type=int, default=16, help="finetuner_film's LITE H")
    parser.add_argument("--chunk", type=int, default=256, help="clips per no-grad forward")
    parser.add_argument("--batch-size", type=int, default=1024, help="clips per forward/backward (reference: 1024)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-macs", dest="macs", action="store_false", help="skip the counted run")
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    parser.add_argument("--save", help="also write the JSON here after every result (a run cut short keeps them)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", default="finetuner", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=50, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    claim_save_path(args.save)
    results: list[dict] = []
    report = {"backbone": args.backbone, "frame_size": args.frame_size, "way": args.way, "steps": args.steps,
              "h": args.h, "batch_size": args.batch_size, "results": results}  # fmt: skip
    for n in (int(x) for x in args.context.split(",")):
        for method in args.methods.split(","):
            results.append(run_one(args, method, n))
            save_partial(args.save, report)
            if not args.json:
                print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
