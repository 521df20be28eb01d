"""What is on disk, per split, with no filtering: users, objects, videos, frames and frames-per-video statistics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from orbit_lite.data.layout import DatasetIndex
from orbit_lite.errors import CorruptMediaError


@dataclass(frozen=True)
class SplitSummary:
    users: int
    objects: int
    clean_videos: int
    clutter_videos: int
    frames: int
    frames_per_video: dict[str, float]  # min, mean, median, max
    unreadable_videos: int = 0

    def counts(self) -> dict[str, int]:
        """The five counts of ``data summarize --json``."""
        d = asdict(self)
        return {k: d[k] for k in ("users", "objects", "clean_videos", "clutter_videos", "frames")}


def summarize_index(index: DatasetIndex, progress: Callable[[int], None] | None = None) -> dict[str, SplitSummary]:
    """Summarize every split of ``index``. Video files are opened to count their decodable frames.

    Args:
        index: the dataset index.
        progress: called once per video (for a progress bar).
    """
    out = {}
    for split, users in index.splits.items():
        counts: list[int] = []
        clean = clutter = objects = unreadable = 0
        for user in users:
            objects += len(user.objects)
            for obj in user.objects:
                clean += len(obj.clean)
                clutter += len(obj.clutter)
                for video in obj.clean + obj.clutter:
                    try:
                        counts.append(video.num_frames)
                    except CorruptMediaError:
                        counts.append(0)
                        unreadable += 1
                    if progress is not None:
                        progress(1)
        arr = np.asarray(counts, dtype=np.float64)
        stats = (
            {"min": arr.min(), "mean": arr.mean(), "median": float(np.median(arr)), "max": arr.max()}
            if len(arr)
            else dict.fromkeys(("min", "mean", "median", "max"), 0.0)
        )
        out[split] = SplitSummary(
            len(users), objects, clean, clutter, int(arr.sum()), {k: float(v) for k, v in stats.items()}, unreadable
        )
    return out
