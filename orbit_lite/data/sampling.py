"""Pure sampling functions: ways, shots, clips and test frames, each with an explicit ``numpy.random.Generator``.

Positions are 0-based indices into a list of frames (usually a video's valid frames). A clip is ``L`` consecutive
positions. Unlike the reference code, clip methods select *clip* indices and map them to frame positions, so
``clip_length > 1`` is correct for every method.
"""

from __future__ import annotations

import numpy as np

from orbit_lite.config import CLIP_METHODS, SHOT_METHODS, WAY_METHODS


def sample_way(n_objects: int, method: str, cap: int, rng: np.random.Generator, min_way: int = 2) -> np.ndarray:
    """Which of ``n_objects`` objects go into a task, as sorted indices (the label of object i is its rank).

    ``max``: all objects (a random ``cap`` of them when there are more). ``random``: a uniform number of objects in
    ``[min_way, min(n_objects, cap)]``, drawn without replacement. With fewer than ``min_way`` objects, all of them.
    """
    if method not in WAY_METHODS:
        raise ValueError(f"unknown way method {method!r}; expected one of {WAY_METHODS}")
    upper = min(n_objects, cap)
    if method == "max" or upper <= min_way:
        k = upper
    else:
        k = int(rng.integers(min_way, upper + 1))
    chosen = np.arange(n_objects) if k == n_objects else rng.choice(n_objects, size=k, replace=False)
    return np.sort(chosen)


def sample_shots(n_videos: int, method: str, cap: int, shot: int, rng: np.random.Generator) -> np.ndarray:
    """Which of an object's ``n_videos`` videos to use.

    ``max``: ``min(n, cap)`` videos in random order. ``random``: ``k ~ U{1..min(n, cap)}`` random videos.
    ``fixed``: ``min(shot, cap, n)`` random videos. ``specific``: the first ``min(shot, n)`` videos.
    """
    if method not in SHOT_METHODS:
        raise ValueError(f"unknown shot method {method!r}; expected one of {SHOT_METHODS}")
    if n_videos <= 0:
        return np.zeros(0, dtype=np.int64)
    upper = min(n_videos, cap)
    if method == "specific":
        return np.arange(min(shot, n_videos))
    if method == "max":
        k = upper
    elif method == "random":
        k = int(rng.integers(1, upper + 1))
    else:  # fixed
        k = min(shot, upper)
    return rng.permutation(n_videos)[:k]


def clip_grid(n_frames: int, clip_length: int, frame_cap: int) -> np.ndarray:
    """All non-overlapping clips of the first ``frame_cap`` frames, ``[M, L]`` positions.

    The frames are padded with copies of the last one up to a multiple of ``L`` (and only when they are not one
    already: the reference code added a whole clip of padding in that case).
    """
    n = min(n_frames, frame_cap)
    if n <= 0:
        return np.zeros((0, clip_length), dtype=np.int64)
    m = -(-n // clip_length)
    positions = np.minimum(np.arange(m * clip_length), n - 1)
    return positions.reshape(m, clip_length)


def sample_clips(
    n_frames: int,
    method: str,
    clip_length: int,
    rng: np.random.Generator,
    *,
    clip_cap: int = 200,
    subsample_factor: int = 30,
    frame_cap: int = 1000,
) -> np.ndarray:
    """Clips from a list of ``n_frames`` frames, ``[K, L]`` positions.

    ``max``: every clip, in order. ``random``: ``k ~ U{1..min(M, clip_cap)}`` distinct clips in random order.
    ``random_200``: ``min(M, clip_cap)`` distinct clips in random order. ``uniform``: every
    ``max(1, subsample_factor // L)``-th clip from the first (frame 0, 30, 60, ... for L=1), at most ``clip_cap``;
    deterministic.
    """
    if method not in CLIP_METHODS:
        raise ValueError(f"unknown clip method {method!r}; expected one of {CLIP_METHODS}")
    grid = clip_grid(n_frames, clip_length, frame_cap)
    m = len(grid)
    if m == 0:
        return grid
    if method == "max":
        return grid
    if method == "uniform":
        step = max(1, subsample_factor // clip_length)
        return grid[np.arange(0, m, step)[:clip_cap]]
    upper = min(m, clip_cap)
    k = upper if method == "random_200" else int(rng.integers(1, upper + 1))
    return grid[rng.choice(m, size=k, replace=False)]


def causal_windows(positions: np.ndarray, clip_length: int) -> np.ndarray:
    """For each frame position t, the window ``[t-L+1 .. t]`` with the video's first frame repeated before the
    start: ``[F] -> [F, L]``. A prediction for frame t then uses only t and earlier frames."""
    offsets = np.arange(-clip_length + 1, 1)
    return np.maximum(np.asarray(positions, dtype=np.int64)[:, None] + offsets[None, :], 0)


def clean_clean_split(n_videos: int, n_context: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """The clean/clean (CLE-VE) split of an object's clean videos sorted by name: the first ``min(n_context, n-1)``
    are context, the rest target. Deterministic."""
    k = max(0, min(n_context, n_videos - 1))
    return np.arange(k), np.arange(k, n_videos)


def train_shot_caps(way: int, context_cap: int, target_cap: int) -> tuple[int, int]:
    """The reference ``--with_train_shot_caps`` rule: 5/4 videos for 6 or more objects, else 10/8 (within the caps)."""
    context, target = (5, 4) if way >= 6 else (10, 8)
    return min(context, context_cap), min(target, target_cap)
