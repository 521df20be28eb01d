"""Personalization: a trained learner and one user's clean videos make that user's recognizer."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from orbit_lite import runtime
from orbit_lite.checkpoint import load_checkpoint
from orbit_lite.config import Config, SamplingConfig, apply_overrides, from_dict, load_config, to_dict
from orbit_lite.data.layout import User
from orbit_lite.data.tasks import Task, TaskBuilder
from orbit_lite.errors import OrbitLiteError
from orbit_lite.learners import LEARNERS, FewShotLearner, create_learner
from orbit_lite.personal import PersonalModel


def load_learner(checkpoint: Path | str, device: torch.device) -> tuple[FewShotLearner, Config]:
    """The learner of a training checkpoint (``last.pt`` / ``best.pt``), in eval mode on ``device``."""
    record = load_checkpoint(checkpoint, "training")
    try:
        cfg = from_dict(Config, record["config"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise OrbitLiteError(f"{checkpoint}: damaged training checkpoint: its config cannot be read ({e})") from None
    model = dataclasses.replace(cfg.model, weights="none")  # the checkpoint has the weights: never download
    learner = create_learner(model, cfg.data.frame_size)
    try:
        learner.load_state_dict(record["model"])
    except RuntimeError as e:
        raise OrbitLiteError(f"{checkpoint}: weights do not fit its own model ({str(e).splitlines()[0]})") from None
    learner = learner.to(device).eval()
    runtime.prepare(learner, cfg, device, allow_compile=False)
    return learner, cfg


def from_pretrained_learners() -> list[str]:
    """Learners that personalize straight from a backbone's pretrained weights, with no meta-trained parts."""
    return [name for name, spec in LEARNERS.items() if spec.from_pretrained]


def learner_from_recipe(
    recipes: list[Path], overrides: list[str], device: torch.device
) -> tuple[FewShotLearner, Config]:
    """A learner without meta-trained parts built from a recipe; the backbone's weights come from ``model.weights``
    (a pretrained tag, or a local file holding the backbone's plain state_dict)."""
    cfg = load_config([str(p) for p in recipes], overrides)
    if cfg.model.learner in LEARNERS and not LEARNERS[cfg.model.learner].from_pretrained:
        raise OrbitLiteError(
            f"learner {cfg.model.learner!r} has meta-trained parts, so it needs --checkpoint; a recipe alone serves "
            f"{', '.join(from_pretrained_learners())}"
        )
    learner = create_learner(cfg.model, cfg.data.frame_size, cfg.finetune).to(device).eval()
    runtime.prepare(learner, cfg, device, allow_compile=False)
    return learner, cfg


def finetuner_from_checkpoint(
    checkpoint: Path | str, overrides: list[str], device: torch.device
) -> tuple[FewShotLearner, Config]:
    """A FineTuner (``--set model.learner=finetuner``) starting from a training checkpoint's backbone, as the
    reference's ``--model_path`` does; ``finetune.*`` may be overridden too."""
    record = load_checkpoint(checkpoint, "training")
    cfg = from_dict(Config, apply_overrides(record["config"], overrides))
    spec = LEARNERS.get(cfg.model.learner)
    if spec is None or spec.meta_trained:
        raise OrbitLiteError(f"--set model.learner={cfg.model.learner}: a checkpoint can only be re-used by "
                             "learners without meta-trained parts (finetuner, finetuner_film)")  # fmt: skip
    model = dataclasses.replace(cfg.model, weights="none", head="")
    cfg = dataclasses.replace(cfg, model=model)
    learner = create_learner(model, cfg.data.frame_size, cfg.finetune)
    backbone = {k.removeprefix("backbone."): v for k, v in record["model"].items() if k.startswith("backbone.")}
    try:
        learner.backbone.load_state_dict(backbone)
    except RuntimeError as e:
        raise OrbitLiteError(
            f"{checkpoint}: its backbone does not fit {model.backbone} ({str(e).splitlines()[0]})"
        ) from None
    learner = learner.to(device).eval()
    runtime.prepare(learner, cfg, device, allow_compile=False)
    return learner, cfg


def check_model_source(checkpoint: Path | None, recipes: list[Path] | None, overrides: list[str]) -> None:
    """Exactly one of ``--checkpoint`` and ``--config``; with a checkpoint, ``--set`` only turns it into a FineTuner."""
    if (checkpoint is None) == (not recipes):
        raise OrbitLiteError(
            "give either --checkpoint CKPT (a trained or imported model) or --config RECIPE.yaml (a learner without "
            f"meta-trained parts: {', '.join(from_pretrained_learners())})"
        )
    if checkpoint is not None and overrides and not any(o.startswith("model.learner=") for o in overrides):
        raise OrbitLiteError("--set with --checkpoint only re-uses its backbone in a FineTuner "
                             "(--set model.learner=finetuner or finetuner_film, with finetune.* settings)")  # fmt: skip


def open_learner(
    checkpoint: Path | None, recipes: list[Path] | None, overrides: list[str], device: torch.device
) -> tuple[FewShotLearner, Config]:
    """The learner of ``--checkpoint`` or of ``--config`` (exactly one of them). With a checkpoint, overrides other
    than ``model.learner`` (to a FineTuner) and ``finetune.*`` are the caller's to apply or refuse."""
    if (checkpoint is None) == (not recipes):
        check_model_source(checkpoint, recipes, [])  # raises
    if recipes:
        return learner_from_recipe(recipes, overrides, device)
    if any(o.partition("=")[0] == "model.learner" for o in overrides):
        return finetuner_from_checkpoint(checkpoint, overrides, device)
    return load_learner(checkpoint, device)


def context_sampling(cfg: Config, objects: int) -> SamplingConfig:
    """The test protocol's context sampling (all clean videos, uniform frames) over every object of the user."""
    return dataclasses.replace(cfg.test_sampling, way_method="max", object_cap=max(objects, 1),
                               drop_objects_without_target=False)  # fmt: skip


def check_user(user: User, builder: TaskBuilder) -> None:
    """A recognizer needs two objects, each with at least one usable clean video."""
    if len(user.objects) < 2:
        names = ", ".join(user.object_names) or "none"
        raise OrbitLiteError(f"user {user.user_id} has {len(user.objects)} object ({names}); a recognizer needs at "
                             "least two: add clean videos of another object")  # fmt: skip
    missing = [c.name for c in builder.candidates(user) if not c.context]
    if missing:
        raise OrbitLiteError(f"user {user.user_id}: no usable clean video for {', '.join(repr(m) for m in missing)}; "
                             "film at least one clean video of each object (or remove the object)")  # fmt: skip


def personal_context(user: User, cfg: Config, seed: int = 0, skipped: list | None = None) -> Task:
    """The user's context set: decoded clips of every object's clean videos. Corrupt frames and videos are left out
    (and appended to ``skipped`` as in ``TaskBuilder.skipped``); an object left with no readable clean video is an
    error that names it."""
    builder = TaskBuilder(context_sampling(cfg, len(user.objects)), cfg.data)
    check_user(user, builder)
    task = builder.build(user, np.random.default_rng(seed), train=False, context_only=True)
    if task is None or task.way != len(user.objects):
        builder.probe_context(user)  # name every object left without a readable clean video, not the first ones
        lost = [c.name for c in builder.candidates(user) if not c.context]
        raise OrbitLiteError(f"user {user.user_id}: no readable clean video left for {', '.join(map(repr, lost))}; "
                             "run `orbit-lite data check` on the data")  # fmt: skip
    if skipped is not None:
        skipped.extend(builder.skipped())
    return task


def check_clips(task: Task) -> torch.Tensor:
    """The first context clip of each object, uint8 ``[way, L, 3, S, S]``: inputs a later check can trust."""
    first = [int((task.context_labels == k).nonzero()[0]) for k in range(task.way)]
    return task.context_clips[first].cpu().contiguous()


def personalize_user(learner: FewShotLearner, user: User, cfg: Config, seed: int = 0) -> tuple[PersonalModel, Task]:
    """Personalize ``learner`` to ``user``; returns the recognizer and the context task it was built from. What was
    left out as corrupt is recorded in the recognizer's config (``skipped``)."""
    skipped: list = []
    task = personal_context(user, cfg, seed, skipped)
    recognizer = learner.personalize(task.context_clips, task.context_labels, task.way, cfg.lite.chunk_size)
    config = {"model": to_dict(cfg.model), "data": to_dict(cfg.data),
              "context_sampling": to_dict(context_sampling(cfg, len(user.objects))), "skipped": skipped}  # fmt: skip
    model = PersonalModel(recognizer, task.object_names, user.user_id, cfg.data.frame_size,
                          cfg.test_sampling.clip_length, config, check_clips(task))  # fmt: skip
    return model, task
