"""Peak memory and time of one meta-training step, with LITE, full back-propagation and activation checkpointing.

Modes: ``lite`` (H clips back-propagated), ``full`` (every clip), ``checkpoint`` (every clip, with
``torch.utils.checkpoint`` over the backbone's stages: activations inside a stage are recomputed in the backward
pass instead of kept; the LITE poster's fourth "current solution", "slow; not enough memory savings").

Each configuration runs in a fresh subprocess, so one peak never hides another: peak RSS on the CPU
(``ru_maxrss``), ``torch.cuda.max_memory_allocated`` on a GPU. The step is a real one: a learner from the registry
with random weights (nothing to download), a task of N context clips and Q query clips of random frames, LITE (or
not) on the support path, chunked queries, an optimizer step.

    python benchmarks/lite_memory.py --backbone efficientnet_b0 --frame-size 224 --context 50,100,200 --h 8 --json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import torch
import torch.utils.checkpoint
from worker import claim_save_path, end_children_on_signals, run_worker, save_partial


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class _Checkpointed(torch.nn.Module):
    """A stage whose inner activations are recomputed in the backward pass instead of kept."""

    def __init__(self, stage: torch.nn.Module) -> None:
        super().__init__()
        self.stage = stage

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled():
            return self.stage(x)
        return torch.utils.checkpoint.checkpoint(self.stage, x, use_reentrant=False)


def checkpoint_stages(net: torch.nn.Module) -> int:
    """Wrap the stages of a network (torchvision ``features``, timm ``blocks``, or a plain Sequential's children) in
    activation checkpointing; returns how many."""
    stages = next((getattr(net, k) for k in ("features", "blocks") if hasattr(net, k)), net)
    if not isinstance(stages, (torch.nn.Sequential, torch.nn.ModuleList)):
        raise SystemExit(f"no stages to checkpoint in {type(net).__name__}")
    for module in net.modules():  # an in-place activation would overwrite a stage input kept for the recomputation
        if hasattr(module, "inplace"):
            module.inplace = False
    for i, stage in enumerate(list(stages)):
        stages[i] = _Checkpointed(stage)
    return len(stages)


def worker(args: argparse.Namespace) -> dict:
    """One training step in this process; returns its measurements."""
    from orbit_lite.config import LiteConfig, ModelConfig
    from orbit_lite.learners import create_learner
    from orbit_lite.runtime import select_device

    torch.manual_seed(0)
    device = select_device(args.device)
    model = ModelConfig(learner=args.learner, backbone=args.backbone, weights="none")
    learner = create_learner(model, args.frame_size, bf16=args.bf16).to(device)
    if args.mode == "checkpoint":
        checkpoint_stages(learner.backbone.net)
    optimizer = torch.optim.Adam([p for p in learner.parameters() if p.requires_grad], lr=1e-5)
    n, q, s, way = args.n, args.queries, args.frame_size, args.way
    context = torch.randint(0, 256, (n, 1, 3, s, s), dtype=torch.uint8)
    query = torch.randint(0, 256, (q, 1, 3, s, s), dtype=torch.uint8)
    labels, query_labels = torch.arange(n) % way, torch.arange(q) % way
    lite = LiteConfig(enabled=args.mode == "lite", h=args.h, chunk_size=args.chunk, query_chunk=args.query_chunk)
    before = _rss_mb()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    learner.train_task(context, labels, query, query_labels, way, lite, torch.Generator().manual_seed(0))
    optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "mode": args.mode, "n": n, "bf16": args.bf16, "peak_mb": round(peak, 1), "rss_before_step_mb": round(before, 1),
        "seconds": round(seconds, 2), "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
    }  # fmt: skip


def run_one(args: argparse.Namespace, mode: str, n: int) -> dict:
    command = [sys.executable, __file__, "--worker", "--mode", mode, "--n", str(n)]
    for key in ("backbone", "learner", "frame_size", "h", "queries", "way", "chunk", "query_chunk", "device"):
        command += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    if args.bf16:
        command.append("--bf16")
    return run_worker(command, {"mode": mode, "n": n})


def add_step_options(parser: argparse.ArgumentParser) -> None:
    """The options of one measured step, shared with benchmarks/large_images.py (which runs this file's worker)."""
    parser.add_argument("--learner", default="protonets")
    parser.add_argument("--h", type=int, default=8, help="LITE: context clips back-propagated")
    parser.add_argument("--queries", type=int, default=16)
    parser.add_argument("--query-chunk", type=int, default=8)
    parser.add_argument("--chunk", type=int, default=32, help="clips per no-grad chunk")
    parser.add_argument("--way", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast")
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    parser.add_argument("--save", help="also write the JSON here after every step (a run cut short keeps them)")


def main() -> None:
    end_children_on_signals()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_b0")
    parser.add_argument("--frame-size", type=int, default=224)
    parser.add_argument("--context", default="50,100,200", help="comma-separated context sizes N (clips)")
    parser.add_argument("--modes", default="lite,full,checkpoint")
    add_step_options(parser)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="lite", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=50, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    claim_save_path(args.save)
    sizes = [int(x) for x in args.context.split(",")]
    results: list[dict] = []
    summary = {
        "backbone": args.backbone, "learner": args.learner, "frame_size": args.frame_size, "h": args.h,
        "bf16": args.bf16, "queries": args.queries, "query_chunk": args.query_chunk, "results": results,
    }  # fmt: skip
    for mode in args.modes.split(","):
        for n in sizes:
            results.append(run_one(args, mode, n))
            save_partial(args.save, summary)
            if not args.json:
                print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    peak = {(r["mode"], r["n"]): r.get("peak_mb") for r in results}
    lo, hi = min(sizes), max(sizes)
    if peak.get(("lite", lo)) and peak.get(("lite", hi)):
        summary[f"lite_peak_ratio_{hi}_over_{lo}"] = round(peak[("lite", hi)] / peak[("lite", lo)], 3)
    if peak.get(("checkpoint", hi)) and peak.get(("full", hi)):
        summary[f"checkpoint_over_full_peak_at_{hi}"] = round(peak[("checkpoint", hi)] / peak[("full", hi)], 3)
    if peak.get(("full", hi)) and peak.get(("lite", hi)):
        summary[f"full_over_lite_peak_at_{hi}"] = round(peak[("full", hi)] / peak[("lite", hi)], 3)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
