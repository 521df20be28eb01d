"""Personalization on real photos with no meta-training: pretrained efficientnet_lite0 against the same run with
random weights, on the test users of ``orbit-lite data synth --preset photos`` (ORBIT 2022 protocol, clutter videos).

Prints one JSON object (and writes it with ``--json-out``): per run, clutter frame accuracy, frames to recognition and
video accuracy (mean and 95% interval over videos), chance, frames encoded and seconds.

    python benchmarks/photo_personalize.py                          # 128 px, protonets, pretrained vs random
    python benchmarks/photo_personalize.py --sizes 84,128,224 --weights pretrained
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "configs" / "photos_pretrained.yaml"


def make_data(path: Path, seed: int = 0, frame_size: int | None = None) -> Path:
    """The photo preset at ``path`` (written once: an existing tree is reused)."""
    from orbit_lite.data.synth import synthesize

    if not path.exists():
        synthesize(path, "photos", frame_size=frame_size, seed=seed)
    return path


def chance(data: Path, split: str = "test") -> float:
    """Mean over the split's clutter videos of 1 / (objects of the video's user): a guess's expected accuracy."""
    from orbit_lite.data.layout import index_benchmark

    users = index_benchmark(data).users(split)
    rows = [1 / len(u.objects) for u in users for o in u.objects for _ in o.clutter]
    return sum(rows) / len(rows)


def evaluate(data: Path, weights: str, frame_size: int, learner: str = "protonets", tasks: int = 1,
             overrides: tuple[str, ...] = (), seed: int = 0, prepare: Callable[[torch.nn.Module], None] | None = None,
             checkpoint: Path | None = None) -> dict[str, Any]:  # fmt: skip
    """Personalize on each test user's clean videos and score their clutter videos; metrics as metrics.json has.

    ``checkpoint``: a meta-trained learner scored instead of one built from the recipe (the recipe still sets the
    sampling, so that both are scored alike). ``prepare`` sees the learner before it runs (e.g. to share a backbone).
    """
    from orbit_lite import runtime
    from orbit_lite.config import load_config
    from orbit_lite.data.layout import index_benchmark
    from orbit_lite.engine.evaluate import evaluate_users, make_protocol
    from orbit_lite.engine.model import Checkpoint, open_model
    from orbit_lite.engine.report import aggregate
    from orbit_lite.learners import create_learner

    cfg = load_config([str(RECIPE)], [f"model.weights={weights}", f"data.frame_size={frame_size}",
                                      f"model.learner={learner}", *overrides])  # fmt: skip
    if checkpoint is None:
        torch.manual_seed(seed)  # random weights: the same draw every run
        buckets = runtime.buckets_of(cfg.lite)
        model = create_learner(cfg.model, cfg.data.frame_size, cfg.finetune, buckets=buckets).eval()
    else:
        model = open_model(Checkpoint(Path(checkpoint)), torch.device("cpu")).learner
    if prepare is not None:
        prepare(model)
    runtime.prepare(model, cfg, torch.device("cpu"), allow_compile=False)
    protocol = make_protocol(cfg, "orbit2022", "clutter", tasks)
    users = index_benchmark(data).users("test")
    with torch.no_grad():
        results, seconds = evaluate_users(model, users, protocol, cfg, seed)
    metrics = aggregate(results, protocol, "test", seconds)[0].to_json()
    keep = ("frame_accuracy", "frames_to_recognition", "video_accuracy", "frames_encoded", "wall_seconds", "users")
    # per (task, video) frame accuracy, so that two runs on the same videos can be compared pairwise
    videos = {f"{s.task}/{s.video}": s.frame_accuracy for r in results for s in r.scores}
    return {"learner": learner, "weights": weights, "frame_size": frame_size, **{k: metrics[k] for k in keep},
            "per_video": dict(sorted(videos.items()))}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="a photo-preset tree (default: written to a temporary folder)")
    parser.add_argument("--sizes", default="128", help="comma-separated frame sizes")
    parser.add_argument("--weights", default="pretrained,none", help="comma-separated: pretrained, none")
    parser.add_argument("--learners", default="protonets", help="comma-separated learner names")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and of the random weights")
    parser.add_argument("--json-out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(args.data or Path(tmp) / "photos", args.seed)
        runs = [evaluate(data, w, int(s), learner, seed=args.seed) for learner in args.learners.split(",")
                for s in args.sizes.split(",") for w in args.weights.split(",")]  # fmt: skip
        machine = f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
        report = {"benchmark": "photo_personalize", "machine": machine, "seed": args.seed, "chance": chance(data),
                  "runs": runs}  # fmt: skip
    text = json.dumps(report, indent=1)
    if args.json_out:
        args.json_out.write_text(text + "\n")
    sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
