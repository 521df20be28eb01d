"""Learners by name: each is a backbone, an adaptation scheme and a head (spec orbit.md 3, lite.md 3)."""

from __future__ import annotations

from orbit_lite.config import ModelConfig
from orbit_lite.errors import OrbitLiteError
from orbit_lite.learners.base import FewShotLearner, LearnerSpec, Personalized, TaskStats

LEARNERS: dict[str, LearnerSpec] = {
    "protonets": LearnerSpec("proto", film=False, learn_backbone=True, description="ProtoNets: learned backbone"),
    "simple_cnaps": LearnerSpec(
        "mahalanobis", film=True, learn_backbone=False, description="Simple CNAPs: frozen backbone, FiLM, Mahalanobis"
    ),
    "cnaps": LearnerSpec("versa", film=True, learn_backbone=False, description="CNAPs: frozen backbone, FiLM, Versa"),
}


def create_learner(model: ModelConfig, frame_size: int) -> FewShotLearner:
    """Build the learner ``model.learner``; an unknown name lists the available ones."""
    if model.learner not in LEARNERS:
        raise OrbitLiteError(f"unknown learner {model.learner!r}; available: {', '.join(LEARNERS)}")
    learner = FewShotLearner(model, LEARNERS[model.learner], frame_size)
    if not learner.learn_backbone and not learner.film_enabled and not learner.head_has_parameters():
        raise OrbitLiteError(
            f"learner {model.learner!r} with model.learn_backbone=false and model.film=false has nothing to train; "
            "set one of them to true"
        )
    return learner


__all__ = ["LEARNERS", "FewShotLearner", "LearnerSpec", "Personalized", "TaskStats", "create_learner"]
