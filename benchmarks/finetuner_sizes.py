"""Why the FineTuner loses accuracy from 224 to 320 px on photos-clutter while ProtoNets does not: the same frozen
ImageNet ``efficientnet_lite0`` features, scored by ProtoNets (cosine) and by FineTuner variants that change one
thing each (learning rate, number of steps, features scaled to unit length).

Every variant at a size reads the same features (encoded once, by the ProtoNets run), so the variants differ only in
the head's training. Paired differences over the same videos say which change moves the 320 px score.

    python benchmarks/finetuner_sizes.py --data DIR --json-out docs/finetuner_sizes.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

# one change each from the FineTuner's defaults (a zero linear head, 50 full-batch Adam steps at lr 1e-3)
VARIANTS: dict[str, tuple[str, ...]] = {
    "default": (),
    "lr 1e-4": ("finetune.lr=0.0001",),
    "lr 1e-2": ("finetune.lr=0.01",),
    "200 steps": ("finetune.steps=200",),
    "unit-length features": (),
}


class UnitLength:
    """A backbone forward whose features are scaled to unit length: the linear head then sees directions only, as
    the cosine ProtoNets head does."""

    def __init__(self, forward: Any) -> None:
        self.forward = forward

    def __call__(self, frames: torch.Tensor, film: Any = None) -> torch.Tensor:
        return F.normalize(self.forward(frames, film), dim=1)


def feature_norms(memo: Any) -> dict[str, float]:
    """Length of every frame feature encoded at this size (context and query frames together)."""
    norms = torch.stack(list(memo.store.values())).norm(dim=1)
    return {"mean": round(float(norms.mean()), 3), "std": round(float(norms.std()), 3),
            "min": round(float(norms.min()), 3), "max": round(float(norms.max()), 3), "frames": len(norms)}  # fmt: skip


def probe(data: Path, sizes: tuple[int, ...]) -> dict[str, Any]:
    from claims_pretrained_report import paired
    from pretrained_claims import _evaluate

    out: dict[str, Any] = {"sizes": list(sizes), "variants": list(VARIANTS), "runs": []}
    for size in sizes:
        memo_of: dict = {}
        runs = {"protonets": _evaluate(data, "protonets", size, memo_of, ())}
        backbone, memo = memo_of[size]
        for name, overrides in VARIANTS.items():
            start = time.perf_counter()
            if name == "unit-length features":
                backbone.forward = UnitLength(memo)
            try:
                runs[name] = _evaluate(data, "finetuner", size, memo_of, overrides)
            finally:
                backbone.forward = memo
            print(f"[finetuner_sizes] {size} px {name}: {runs[name]['frame_accuracy']['mean']:.3f} "
                  f"({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)  # fmt: skip
        for name, run in runs.items():
            out["runs"].append({"frame_size": size, "variant": name, "frame_accuracy": run["frame_accuracy"],
                                "per_video": run["per_video"]})  # fmt: skip
        out[f"feature_norms_{size}"] = feature_norms(memo)
        out[f"against_default_{size}"] = {n: paired(runs["default"], r) for n, r in runs.items() if n != "default"}
        memo_of.clear()
    by = {(r["frame_size"], r["variant"]): r for r in out["runs"]}
    small, large = sizes[0], sizes[-1]
    out["size_change"] = {v: paired(by[small, v], by[large, v]) for v in ("protonets", *VARIANTS)}
    out["largest_drops"] = largest_drops(by, small, large)
    return out


def largest_drops(by: dict, small: int, large: int, n: int = 6) -> list[dict[str, Any]]:
    """The videos whose FineTuner (default) score fell most from ``small`` to ``large`` px, with ProtoNets' scores
    of the same videos: a drop spread thinly over every video reads differently from a few videos flipping."""
    before, after = by[small, "default"]["per_video"], by[large, "default"]["per_video"]
    worst = sorted(before, key=lambda k: after[k] - before[k])[:n]
    return [{"video": k, f"finetuner_{small}": round(before[k], 3), f"finetuner_{large}": round(after[k], 3),
             f"protonets_{small}": round(by[small, "protonets"]["per_video"][k], 3),
             f"protonets_{large}": round(by[large, "protonets"]["per_video"][k], 3)} for k in worst]  # fmt: skip


def _claim_json_out(path: Path | None) -> None:
    """An existing ``--json-out`` is replaced only when it is this benchmark's own output (its ``benchmark`` key)."""
    if path is None or not path.exists():
        return
    try:
        ours = json.loads(path.read_text()).get("benchmark") == "finetuner_sizes"
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise SystemExit(f"--json-out {path} exists and is not this benchmark's output: choose a new path")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="a `data synth --preset photos-clutter` tree (written there when "
                        "missing; default: a temporary folder)")  # fmt: skip
    parser.add_argument("--sizes", default="224,320", help="comma-separated frame sizes, smallest first")
    parser.add_argument("--json-out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    try:
        sizes = tuple(int(s) for s in args.sizes.split(","))
    except ValueError:
        parser.error(f"--sizes {args.sizes!r}: give whole numbers separated by commas, e.g. 224,320")
    _claim_json_out(args.json_out)
    from pretrained_claims import make_data
    from worker import save_partial

    from orbit_lite.errors import OrbitLiteError

    with tempfile.TemporaryDirectory() as tmp:
        try:
            data = make_data(args.data or Path(tmp) / "photos-clutter", quick=False)
            start = time.perf_counter()
            result = {"benchmark": "finetuner_sizes", **probe(data, sizes)}
        except OrbitLiteError as e:
            raise SystemExit(f"error: {e}") from None
        result["seconds"] = round(time.perf_counter() - start, 1)
    summary = {k: v for k, v in result.items() if k != "runs"}  # per-video scores only in --json-out
    summary["frame_accuracy"] = {f"{r['frame_size']} {r['variant']}": r["frame_accuracy"] for r in result["runs"]}
    save_partial(str(args.json_out) if args.json_out else None, result)  # whole or not at all
    sys.stdout.write(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
