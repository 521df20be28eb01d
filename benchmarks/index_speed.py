"""Time to index and summarize a tree with the full ORBIT benchmark's shape (3,822 videos, ~2.7M frame files).

The frame files are empty: indexing must read no pixels, so their content does not matter. The tree follows the
real per-split counts: 44/6/17 users, 2,277/347/1,198 videos, ~703 frames per video.

    python benchmarks/index_speed.py --json            # full size: writes 2.7M empty files (a few minutes)
    python benchmarks/index_speed.py --scale 0.1 --json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from orbit_lite.data.layout import index_tree
from orbit_lite.data.summary import summarize_index

SPLITS = {"train": (44, 2277, 1814), "validation": (6, 347, 284), "test": (17, 1198, 898)}  # users, videos, clean
FRAMES_PER_VIDEO = 703


def build_tree(root: Path, scale: float, rng: np.random.Generator) -> int:
    """Write empty frame files in the benchmark layout; returns the number of frames written."""
    total = 0
    for split, (n_users, n_videos, n_clean) in SPLITS.items():
        n_videos = max(n_users * 2, int(n_videos * scale))
        for v in range(n_videos):
            user = f"P{split[:2]}{v % n_users:03d}"
            obj = f"object {v % 7}"
            vtype = "clean" if v < n_videos * n_clean / SPLITS[split][1] else "clutter"
            name = f"{user}--{obj.replace(' ', '-')}--{vtype}--{v:043d}"
            folder = root / split / user / obj / vtype / name
            folder.mkdir(parents=True)
            n = int(rng.integers(FRAMES_PER_VIDEO // 2, FRAMES_PER_VIDEO * 3 // 2))
            for i in range(1, n + 1):
                os.close(os.open(folder / f"{name}-{i:05d}.jpg", os.O_CREAT | os.O_WRONLY))
            total += n
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the benchmark's videos")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="orbit-index-"))
    try:
        t0 = time.perf_counter()
        frames = build_tree(tmp, args.scale, np.random.default_rng(0))
        write_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        index = index_tree(tmp)
        index_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        summary = summarize_index(index)
        summarize_s = time.perf_counter() - t0
        result = {
            "videos": sum(1 for _ in index.videos()),
            "frames": sum(s.frames for s in summary.values()),
            "frames_written": frames,
            "index_seconds": round(index_s, 2),
            "summarize_seconds": round(summarize_s, 3),
            "write_seconds": round(write_s, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not args.json:
        for k, v in result.items():
            print(f"{k:>20}: {v}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
