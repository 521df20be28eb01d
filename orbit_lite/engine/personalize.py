"""Personalization: a trained learner and one user's clean videos make that user's recognizer."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from orbit_lite.config import Config, SamplingConfig, to_dict
from orbit_lite.data.layout import User
from orbit_lite.data.tasks import TaskBuilder, TaskContext
from orbit_lite.errors import OrbitLiteError
from orbit_lite.learners import Learner
from orbit_lite.personal import PersonalModel
from orbit_lite.progress import Progress
from orbit_lite.results import Skipped


def context_sampling(cfg: Config, objects: int) -> SamplingConfig:
    """The test protocol's context sampling (all clean videos, uniform frames) over every object of the user."""
    return dataclasses.replace(
        cfg.test_sampling, way_method="max", object_cap=max(objects, 1), drop_objects_without_target=False
    )


def check_user(user: User, builder: TaskBuilder) -> None:
    """A recognizer needs two objects, each with at least one usable clean video."""
    if len(user.objects) < 2:
        names = ", ".join(user.object_names) or "none"
        raise OrbitLiteError(
            f"user {user.user_id} has {len(user.objects)} object ({names}); a recognizer needs at "
            "least two: add clean videos of another object"
        )
    missing = [c.name for c in builder.candidates(user) if not c.context]
    if missing:
        raise OrbitLiteError(
            f"user {user.user_id}: no usable clean video for {', '.join(repr(m) for m in missing)}; "
            "film at least one clean video of each object (or remove the object)"
        )


def personal_context(
    user: User,
    cfg: Config,
    seed: int = 0,
    skipped: list[Skipped] | None = None,
    progress: Progress | None = None,
) -> TaskContext:
    """The user's context set: decoded clips of every object's clean videos. Corrupt frames and videos are left out
    (and appended to ``skipped`` as in ``TaskBuilder.skipped``); an object left with no readable clean video is an
    error that names it. ``progress`` hears of each video decoded (``read``; a video found corrupt starts the count
    again, without it)."""
    builder = TaskBuilder(context_sampling(cfg, len(user.objects)), cfg.data, progress)
    check_user(user, builder)
    task = builder.build(user, np.random.default_rng(seed), train=False, context_only=True)
    if task is None or task.way != len(user.objects):
        builder.probe_context(user)  # name every object left without a readable clean video, not the first ones
        lost = [c.name for c in builder.candidates(user) if not c.context]
        raise OrbitLiteError(
            f"user {user.user_id}: no readable clean video left for {', '.join(map(repr, lost))}; "
            "run `orbit-lite data check` on the data"
        )
    if skipped is not None:
        skipped.extend(builder.skipped())
    return task


def check_clips(task: TaskContext) -> torch.Tensor:
    """The first context clip of each object, uint8 ``[way, L, 3, S, S]``: inputs a later check can trust."""
    first = [int((task.context_labels == k).nonzero()[0]) for k in range(task.way)]
    return task.context_clips[first].cpu().contiguous()


def progress_kinds(learner: Learner) -> tuple[str, ...]:
    """What :func:`personalize_user` reports to its ``progress``, in order: the videos read, then the learner's."""
    return ("read", *learner.progress_kinds())


def personalize_user(
    learner: Learner, user: User, cfg: Config, seed: int = 0, progress: Progress | None = None
) -> tuple[PersonalModel, TaskContext]:
    """Personalize ``learner`` to ``user``; returns the recognizer and the context task it was built from. What was
    left out as corrupt is recorded in the recognizer's config (``skipped``). ``progress`` hears of the steps of
    :func:`progress_kinds` (the videos read, frames encoded, gradient steps) as they are done; without it nothing
    is reported and nothing changes."""
    skipped: list[Skipped] = []
    task = personal_context(user, cfg, seed, skipped, progress)
    recognizer = learner.personalize(
        task.context_clips, task.context_labels, task.way, cfg.lite.chunk_size, progress=progress
    )
    config = {
        "model": to_dict(cfg.model),
        "data": to_dict(cfg.data),
        "context_sampling": to_dict(context_sampling(cfg, len(user.objects))),
        "skipped": [s.to_json() for s in skipped],
    }
    model = PersonalModel(
        recognizer,
        task.object_names,
        user.user_id,
        cfg.data.frame_size,
        cfg.test_sampling.clip_length,
        config,
        check_clips(task),
    )
    return model, task
