"""Frames per second to build tasks from JPEG folders and from mp4 files, against the reference code's loading.

The baseline loads the same frames as the reference code does: PIL open, ``to_tensor``, ``normalize``, one frame at
a time, stacked as float32. orbit-lite decodes with OpenCV into uint8 (normalization happens later, on the device).
Everything runs in one process with one thread, so the numbers are per core.

    python benchmarks/data_throughput.py --json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torchvision.transforms import functional as TF

from orbit_lite.config import DataConfig, training_sampling
from orbit_lite.data.layout import index_tree
from orbit_lite.data.synth import synthesize
from orbit_lite.data.tasks import TaskBuilder

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def reference_load(plan) -> int:
    """Load a plan's frames as the reference code does; returns the number of frames loaded."""
    n = 0
    for part in (plan.context, plan.target):
        clips = []
        for vp in part:
            for position in vp.clips.reshape(-1):
                image = Image.open(vp.video.frames.path(int(position)))
                clips.append(TF.normalize(TF.to_tensor(image), MEAN, STD))
        torch.stack(clips)
        n += len(clips)
    return n


def time_it(fn, plans) -> dict:
    start = time.perf_counter()
    frames = sum(fn(p) for p in plans)
    seconds = time.perf_counter() - start
    return {"frames": frames, "seconds": round(seconds, 3), "fps": round(frames / seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frame-size", type=int, default=224)
    parser.add_argument("--tasks", type=int, default=24, help="training tasks to build per format")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        roots = {
            fmt: synthesize(Path(tmp) / fmt, args.preset, args.frame_size, fmt, seed=0).root
            for fmt in ("frames", "videos")
        }
        sampling = training_sampling(context_clip_method="random", target_clip_method="random")
        data = DataConfig(frame_size=args.frame_size)
        results = {}
        plans = {}
        for fmt, root in roots.items():
            builder = TaskBuilder(sampling, data)
            users = index_tree(root).users("train")
            rng = np.random.default_rng(0)
            plans[fmt] = [builder.plan(users[i % len(users)], rng, train=True) for i in range(args.tasks)]
            builder.load(plans[fmt][0])  # warm-up: imports, file cache
            load = lambda p, b=builder: p.num_context + p.num_target if b.load(p) else 0  # noqa: E731
            results[f"orbit_lite_{fmt}"] = time_it(load, plans[fmt])
        reference_load(plans["frames"][0])
        results["reference_pil_frames"] = time_it(reference_load, plans["frames"])
        base = results["reference_pil_frames"]["fps"]
        results["speedup_frames"] = round(results["orbit_lite_frames"]["fps"] / base, 2)
        results["speedup_videos"] = round(results["orbit_lite_videos"]["fps"] / base, 2)
        results["frame_size"] = args.frame_size
        results["threads"] = 1
    if not args.json:
        for key, value in results.items():
            print(f"{key:>24}: {value}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
