"""The 50-task ORBIT protocol two ways: orbit-lite's shared-work evaluation, and the reference code's per-task way.

orbit-lite personalizes a user once when the context sampling is deterministic and encodes the union of the query
frames that the tasks sample once; the reference approach personalizes and encodes every task on its own. Both draw
the same tasks from the same seeds, so their scores must agree. Synthetic users from the `long` preset (clutter
videos of 320 frames, so each task samples different frames), a randomly initialized learner.

    python benchmarks/eval_throughput.py --json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from orbit_lite.config import Config, DataConfig, ModelConfig
from orbit_lite.data.layout import index_tree
from orbit_lite.data.synth import synthesize
from orbit_lite.engine.evaluate import evaluate_users, make_protocol
from orbit_lite.learners import create_learner


def run(learner, users, protocol, cfg, share: bool) -> dict:
    results, seconds = evaluate_users(learner, users, protocol, cfg, seed=0, share_work=share)
    scores = [s.frame_accuracy for r in results for s in r.scores]
    return {
        "frames_encoded": sum(r.frames_encoded.total for r in results),
        "personalizations": sum(r.personalizations for r in results),
        "seconds": round(seconds, 2),
        "frames_per_second": round(sum(r.frames_encoded.total for r in results) / seconds, 1),
        "frame_accuracy": float(np.mean(scores)),
        "_scores": scores,
        "_tasks": [(t.object_names, t.videos) for r in results for t in r.tasks],  # the predictions, not the costs
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--backbone", default="tiny_cnn")
    parser.add_argument("--frame-size", type=int, default=64)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = synthesize(Path(tmp) / "data", "long", seed=0).root
        users = index_tree(root).users("test")
        cfg = Config(data=DataConfig(frame_size=args.frame_size, num_workers=0),
                     model=ModelConfig(learner="protonets", backbone=args.backbone, weights="none"))  # fmt: skip
        learner = create_learner(cfg.model, args.frame_size).eval()
        protocol = make_protocol(cfg, "orbit2022", "clutter", args.tasks)
        shared = run(learner, users, protocol, cfg, share=True)
        naive = run(learner, users, protocol, cfg, share=False)
    same = shared["_tasks"] == naive["_tasks"]
    diff = float(np.max(np.abs(np.array(shared["_scores"]) - np.array(naive["_scores"])))) if same else None
    for r in (shared, naive):
        del r["_scores"], r["_tasks"]
    result = {
        "users": len(users), "tasks_per_user": args.tasks, "backbone": args.backbone, "frame_size": args.frame_size,
        "orbit_lite": shared, "per_task_reference_style": naive,
        "fewer_frames_encoded": round(naive["frames_encoded"] / shared["frames_encoded"], 1),
        "less_wall_time": round(naive["seconds"] / shared["seconds"], 1),
        "identical_predictions": same, "max_score_difference": diff,
    }  # fmt: skip
    if not args.json:
        for key, value in result.items():
            print(f"{key:>26}: {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
