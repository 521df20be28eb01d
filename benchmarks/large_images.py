"""Large images with LITE: MACs per frame, and a training step's peak memory and time, for timm backbones by size.

For each backbone and frame size: the multiply-accumulates of one frame (FlopCounterMode on the meta device, through
the same code as `orbit-lite backbones NAME --frame-size S`), then one ProtoNets meta-training step with LITE at each
``--lite-n`` context size and with full back-propagation at each ``--full-n``, every step in a fresh process
(``benchmarks/lite_memory.py``'s worker: peak RSS on the CPU, ``torch.cuda.max_memory_allocated`` on a GPU), random
weights. A size the backbone cannot take as it is moves to the nearest one it can (ViT-S/14: 320 -> 322); the result
says which size ran.

    python benchmarks/large_images.py --json                                  # the README table (GPU-sized)
    python benchmarks/large_images.py --sizes 64 --lite-n 8,32 --full-n 8 --queries 4 --json   # a CPU check
"""

from __future__ import annotations

import argparse
import json
import sys

from lite_memory import add_step_options, run_one
from worker import claim_save_path, save_partial

BACKBONES = "timm/tf_efficientnet_b0,timm/convnext_tiny,timm/vit_small_patch14_dinov2"


def fit_size(name: str, size: int) -> int:
    """``size``, or the nearest frame side ``name`` takes as it is (the upper one on a tie)."""
    from orbit_lite.models.backbones import backbone_spec

    spec = backbone_spec(name)
    step = spec.size_multiple
    below, above = size // step * step, -(-size // step) * step
    return max(spec.min_size, below if size - below < above - size else above)


def macs(name: str, size: int) -> float:
    from orbit_lite.models.backbone_info import describe

    return describe(name, size).macs


def step(args: argparse.Namespace, name: str, size: int, mode: str, n: int) -> dict:
    """One step in a fresh process, through lite_memory.py's worker, keeping what the table needs."""
    result = run_one(argparse.Namespace(**{**vars(args), "backbone": name, "frame_size": size}), mode, n)
    keep = ("mode", "n", "peak_mb", "seconds", "device", "gpu")
    return result if "error" in result else {key: result[key] for key in keep}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default=BACKBONES, help="comma-separated backbone names")
    parser.add_argument("--sizes", default="224,320,448", help="comma-separated frame sides")
    parser.add_argument("--lite-n", default="100,400", help="context sizes N for the LITE steps")
    parser.add_argument("--full-n", default="100", help="context sizes N for full back-propagation ('' for none)")
    add_step_options(parser)
    args = parser.parse_args()
    claim_save_path(args.save)
    lite_n = [int(x) for x in args.lite_n.split(",") if x]
    full_n = [int(x) for x in args.full_n.split(",") if x]
    settings = {k: getattr(args, k) for k in ("learner", "h", "queries", "query_chunk", "chunk", "way", "bf16")}
    rows: list[dict] = []
    report = {"settings": settings, "results": rows}
    for name in args.backbones.split(","):
        for asked in (int(x) for x in args.sizes.split(",")):
            size = fit_size(name, asked)
            steps: list[dict] = []
            row = {"backbone": name, "frame_size": size, "asked_size": asked, "gmacs_per_frame": macs(name, size) / 1e9,
                   "steps": steps}  # fmt: skip
            rows.append(row)
            for mode, sizes in (("lite", lite_n), ("full", full_n)):
                for n in sizes:
                    steps.append(step(args, name, size, mode, n))
                    save_partial(args.save, report)
            peaks = {(s["mode"], s["n"]): s.get("peak_mb") for s in steps}
            if len(lite_n) > 1 and peaks.get(("lite", lite_n[0])) and peaks.get(("lite", lite_n[-1])):
                row[f"lite_peak_ratio_{lite_n[-1]}_over_{lite_n[0]}"] = round(
                    peaks["lite", lite_n[-1]] / peaks["lite", lite_n[0]], 3
                )
            save_partial(args.save, report)
            if not args.json:
                print(json.dumps(row), file=sys.stderr, flush=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
