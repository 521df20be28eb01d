"""Task plans: which frames of which videos make a task, decided without decoding a pixel.

A plan is a pure function of the user's candidate objects, the sampling config and a random generator, so it can be
tested on its own, and the evaluation can take the union of many tasks' frames before decoding anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from orbit_lite.config import SamplingConfig
from orbit_lite.data.layout import Video
from orbit_lite.data.sampling import (
    causal_windows,
    sample_clips,
    sample_shots,
    sample_way,
    train_shot_caps,
)


@dataclass(frozen=True, eq=False)
class UsableVideo:
    """A video with the 0-based positions of its frames that pass the set's filter (and are not corrupt)."""

    video: Video
    valid: np.ndarray  # [V] int64, sorted
    corrupt: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # positions never to read


@dataclass(frozen=True)
class CandidateObject:
    """An object of a user with its usable context and target videos."""

    name: str
    context: tuple[UsableVideo, ...]
    target: tuple[UsableVideo, ...]


@dataclass(frozen=True, eq=False)
class VideoPlan:
    """Clips to take from one video. ``clips`` are ``[K, L]`` positions into the video's frames."""

    video: Video
    label: int
    clips: np.ndarray

    @property
    def frame_numbers(self) -> np.ndarray:
        """1-based frame number of each clip's last (current) frame, ``[K]``."""
        return self.video.frame_numbers()[self.clips[:, -1]]


@dataclass(frozen=True, eq=False)
class TaskPlan:
    """One task. ``train`` plans stack and shuffle targets; test plans keep them per video in temporal order.

    ``context_order`` / ``target_order`` are permutations of the stacked clips (concatenated in plan order).
    """

    user_id: str
    object_names: tuple[str, ...]
    context: tuple[VideoPlan, ...]
    target: tuple[VideoPlan, ...]
    train: bool
    context_order: np.ndarray
    target_order: np.ndarray | None

    @property
    def num_context(self) -> int:
        return sum(len(v.clips) for v in self.context)

    @property
    def num_target(self) -> int:
        return sum(len(v.clips) for v in self.target)


def select_candidates(objects: list[CandidateObject], cfg: SamplingConfig) -> list[CandidateObject]:
    """Objects that can be in a task: at least one context video, and a target video when the config asks."""
    return [o for o in objects if o.context and (o.target or not cfg.drop_objects_without_target)]


def _clips_from(usable: UsableVideo, method: str, cfg: SamplingConfig, rng: np.random.Generator) -> np.ndarray:
    local = sample_clips(
        len(usable.valid),
        method,
        cfg.clip_length,
        rng,
        clip_cap=cfg.clip_cap,
        subsample_factor=cfg.subsample_factor,
        frame_cap=cfg.frame_cap,
    )
    return usable.valid[local]


def _test_target_clips(usable: UsableVideo, cfg: SamplingConfig, rng: np.random.Generator) -> np.ndarray:
    # Test targets are single frames (any clip method, with L=1) in temporal order, each with its causal history of
    # the L-1 frames before it in the video itself, as an app would see them.
    local = sample_clips(
        len(usable.valid),
        cfg.target_clip_method,
        1,
        rng,
        clip_cap=cfg.clip_cap,
        subsample_factor=cfg.subsample_factor,
        frame_cap=cfg.frame_cap,
    )
    frames = np.sort(usable.valid[local[:, 0]])
    return _skip_corrupt(causal_windows(frames, cfg.clip_length), usable.corrupt)


def _skip_corrupt(windows: np.ndarray, corrupt: np.ndarray) -> np.ndarray:
    """Replace a corrupt history frame by the latest readable frame before it (the window's own frame, valid and
    therefore readable, is the fallback), so a window never asks for a file known to be broken."""
    if not len(corrupt):
        return windows
    out = windows.copy()
    for row in range(len(out)):
        for col in range(out.shape[1] - 2, -1, -1):  # right to left: each slot may lean on the one after it
            if np.isin(out[row, col], corrupt):
                out[row, col] = out[row, col + 1]
    return out


def plan_task(
    user_id: str, objects: list[CandidateObject], cfg: SamplingConfig, rng: np.random.Generator, train: bool
) -> TaskPlan | None:
    """Draw one task from a user's candidate objects; None when fewer than two objects can take part.

    Args:
        user_id: the user.
        objects: the user's candidate objects in label order (sorted by name).
        cfg: sampling options.
        rng: the only source of randomness.
        train: stack and shuffle targets as clips (True), or keep them per video as test frames (False).
    """
    objects = select_candidates(objects, cfg)
    if len(objects) < 2:
        return None
    way = sample_way(len(objects), cfg.way_method, cfg.object_cap, rng, cfg.min_way)
    context_cap, target_cap = cfg.context_shot_cap, cfg.target_shot_cap
    if cfg.with_train_shot_caps:
        context_cap, target_cap = train_shot_caps(len(way), context_cap, target_cap)
    context: list[VideoPlan] = []
    target: list[VideoPlan] = []
    for label, index in enumerate(way):
        obj = objects[index]
        for v in sample_shots(len(obj.context), cfg.context_shot_method, context_cap, cfg.context_shot, rng):
            usable = obj.context[v]
            clips = _clips_from(usable, cfg.context_clip_method, cfg, rng)
            if len(clips):
                context.append(VideoPlan(usable.video, label, clips))
        for v in sample_shots(len(obj.target), cfg.target_shot_method, target_cap, cfg.target_shot, rng):
            usable = obj.target[v]
            if train:
                clips = _clips_from(usable, cfg.target_clip_method, cfg, rng)
            else:
                clips = _test_target_clips(usable, cfg, rng)
            if len(clips):
                target.append(VideoPlan(usable.video, label, clips))
    names = tuple(objects[i].name for i in way)
    n_context = sum(len(p.clips) for p in context)
    n_target = sum(len(p.clips) for p in target)
    context_order = rng.permutation(n_context)
    target_order = rng.permutation(n_target) if train else None
    return TaskPlan(user_id, names, tuple(context), tuple(target), train, context_order, target_order)
