"""Learners by name: each is a backbone, an adaptation scheme and a head."""

from __future__ import annotations

from orbit_lite.config import FinetuneConfig, ModelConfig
from orbit_lite.errors import OrbitLiteError
from orbit_lite.learners.base import SOURCES, FewShotLearner, Learner, LearnerSpec, Personalized, TaskStats
from orbit_lite.learners.finetune import FineTuner, why_nothing_to_meta_train
from orbit_lite.shapes import Buckets

LEARNERS: dict[str, LearnerSpec] = {
    "protonets": LearnerSpec(
        FewShotLearner,
        "proto",
        film=False,
        learn_backbone=True,
        description="ProtoNets: learned backbone",
        sources=("checkpoint", "recipe"),
    ),
    "simple_cnaps": LearnerSpec(
        FewShotLearner,
        "mahalanobis",
        film=True,
        learn_backbone=False,
        description="Simple CNAPs: frozen backbone, FiLM, Mahalanobis",
        sources=("checkpoint",),
    ),
    "cnaps": LearnerSpec(
        FewShotLearner,
        "versa",
        film=True,
        learn_backbone=False,
        description="CNAPs: frozen backbone, FiLM, Versa",
        sources=("checkpoint",),
    ),
    "finetuner": LearnerSpec(
        FineTuner,
        "linear",
        film=False,
        learn_backbone=False,
        description="FineTuner: frozen backbone, linear head tuned per task by gradient steps",
        sources=("recipe", "backbone"),
    ),
    "finetuner_film": LearnerSpec(
        FineTuner,
        "linear",
        film=False,
        learn_backbone=False,
        tune_film=True,
        description="FineTuner + FiLM: linear head and the FiLM layers' affines tuned per task (LITE)",
        sources=("recipe", "backbone"),
    ),
}
assert all(set(spec.sources) <= set(SOURCES) for spec in LEARNERS.values())


def learners_from(source: str) -> list[str]:
    """The learners whose model may come from ``source`` (one of :data:`SOURCES`)."""
    return [name for name, spec in LEARNERS.items() if source in spec.sources]


def create_learner(
    model: ModelConfig,
    frame_size: int,
    finetune: FinetuneConfig | None = None,
    bf16: bool = False,
    buckets: Buckets = Buckets(),
) -> Learner:
    """Build the learner ``model.learner``; an unknown name lists the available ones. ``finetune`` configures the
    FineTuner learners (default: the reference's settings); ``bf16`` runs the networks under bf16 autocast;
    ``buckets`` are the batch sizes its networks may see (``runtime.buckets_of(cfg.lite)``)."""
    if model.learner not in LEARNERS:
        raise OrbitLiteError(f"unknown learner {model.learner!r}; available: {', '.join(LEARNERS)}")
    spec = LEARNERS[model.learner]
    if (spec.head == "linear") != ((model.head or spec.head) == "linear"):
        raise OrbitLiteError(
            f"model.head={model.head!r} does not fit learner {model.learner!r}: the linear head is tuned by gradient "
            "steps (learners finetuner, finetuner_film); fix: leave model.head empty"
        )
    if not spec.meta_trained:  # tuned per task: the finetune section says how
        return spec.cls(model, spec, frame_size, finetune or FinetuneConfig(), bf16, buckets=buckets)
    learner = spec.cls(model, spec, frame_size, bf16, buckets)
    if not learner.learn_backbone and not learner.film_enabled and not learner.head_has_parameters():
        raise OrbitLiteError(
            f"learner {model.learner!r} with model.learn_backbone=false and model.film=false has nothing to train; "
            "set one of them to true"
        )
    return learner


__all__ = [
    "LEARNERS",
    "SOURCES",
    "FewShotLearner",
    "FineTuner",
    "Learner",
    "LearnerSpec",
    "Personalized",
    "TaskStats",
    "create_learner",
    "learners_from",
    "why_nothing_to_meta_train",
]
