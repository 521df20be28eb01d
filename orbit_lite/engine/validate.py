"""Minimal evaluation for model selection: frame accuracy per clutter video of the validation users."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from orbit_lite.config import DataConfig, LiteConfig, SamplingConfig
from orbit_lite.data.layout import User
from orbit_lite.data.loader import UserTaskDataset, task_loader
from orbit_lite.learners import FewShotLearner
from orbit_lite.metrics import frame_accuracy, mean_ci95


def validate(
    learner: FewShotLearner,
    users: Sequence[User],
    sampling: SamplingConfig,
    data: DataConfig,
    lite: LiteConfig,
    tasks_per_user: int,
    seed: int,
) -> dict[str, float]:
    """Personalize on each task's context and score every target video; the same tasks on every call.

    Returns:
        ``frame_accuracy`` (mean over (task, video) pairs), its ``ci95``, the number of ``videos`` scored and
        ``chance`` (mean of 1/way over those videos).
    """
    dataset = UserTaskDataset(users, sampling, data, train=False, tasks_per_user=tasks_per_user, seed=seed)
    loader = task_loader(dataset, shuffle=False, num_workers=data.num_workers, seed=seed)
    scores: list[float] = []
    chance: list[float] = []
    was_training = learner.training
    learner.eval()
    try:
        for task in loader:
            if task is None:
                continue
            personal = learner.personalize(task.context_clips, task.context_labels, task.way, lite.chunk_size)
            for video in task.target_videos:
                predictions = personal.predict(video.clips, lite.chunk_size).argmax(1).cpu().numpy()
                scores.append(frame_accuracy(predictions, video.label))
                chance.append(1.0 / task.way)
    finally:
        learner.train(was_training)
    mean, ci = mean_ci95(scores)
    return {"frame_accuracy": mean, "ci95": ci, "videos": len(scores), "chance": float(np.mean(chance or [np.nan]))}
