"""The one way to open a model: a typed source in, a learner built, loaded and prepared on its device out.

A command (or a service) says where its model comes from with one of three sources, parsed once from the command
line by :func:`parse_source`:

- :class:`Checkpoint`: a training checkpoint's learner, as trained;
- :class:`Recipe`: a learner without meta-trained parts, built from recipe files (its backbone's weights are
  ``model.weights``: a pretrained tag or a local file);
- :class:`CheckpointBackbone`: a training checkpoint's backbone under such a learner (a FineTuner re-using a trained
  backbone, as the ORBIT reference's ``--model_path`` does).

:func:`open_model` turns any of them into an :class:`OpenedModel` (the learner in eval mode on the device, and the
resolved config). Which learner accepts which source is its registry entry's ``sources``
(:data:`orbit_lite.learners.LEARNERS`), so a new learner is one entry and one class. A personal recognizer (the file
``orbit-lite personalize`` writes) opens with :func:`open_personal`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch

from orbit_lite import runtime
from orbit_lite.checkpoint import load_checkpoint
from orbit_lite.config import Config, apply_overrides, from_dict, load_config, to_dict
from orbit_lite.errors import OrbitLiteError
from orbit_lite.learners import LEARNERS, Learner, create_learner, learners_from
from orbit_lite.personal import PersonalModel, load_personal


@dataclass(frozen=True)
class Checkpoint:
    """A training checkpoint's learner as trained. ``settings`` (``section.key=value``) change how it is run and
    tested (``test_sampling.*``, ``lite.*``, the runtime keys), never what was trained."""

    kind: ClassVar[str] = "checkpoint"
    path: Path
    settings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Recipe:
    """A learner without meta-trained parts, from recipe files layered in order, then ``settings``."""

    kind: ClassVar[str] = "recipe"
    paths: tuple[Path, ...]
    settings: tuple[str, ...] = ()


@dataclass(frozen=True)
class CheckpointBackbone:
    """The backbone of the training checkpoint ``path`` under ``learner`` (one without meta-trained parts); the
    checkpoint's config with ``settings`` (e.g. ``finetune.*``) configures the rest."""

    kind: ClassVar[str] = "backbone"
    path: Path
    learner: str
    settings: tuple[str, ...] = ()


ModelSource = Checkpoint | Recipe | CheckpointBackbone


class OpenedModel(NamedTuple):
    """A learner in eval mode on its device, prepared for it, and the config it runs under."""

    learner: Learner
    config: Config


# How a model runs on this device, not what it is: a checkpoint's training settings that may still be changed.
RUNTIME_KEYS = ("train.channels_last", "train.pin_memory", "train.cudnn_benchmark")


def parse_source(
    checkpoint: Path | None, recipes: Sequence[Path], overrides: Sequence[str], *, settings: bool = False
) -> ModelSource:
    """The source named by ``--checkpoint`` / ``--config`` (exactly one) and ``--set``.

    With a checkpoint, ``--set model.learner=NAME`` re-uses its backbone under NAME. Other ``--set`` with a checkpoint
    are refused unless ``settings`` (evaluate), which accepts any but those that would change what was trained
    (``model.*``, ``train.*`` but for :data:`RUNTIME_KEYS`): recorded in the results, they would not change the
    weights that are evaluated."""
    if (checkpoint is None) == (not recipes):
        raise OrbitLiteError(
            "give either --checkpoint CKPT (a trained or imported model) or --config RECIPE.yaml (a learner without "
            f"meta-trained parts: {', '.join(learners_from('recipe'))})"
        )
    if checkpoint is None:
        return Recipe(tuple(recipes), tuple(overrides))
    learner = [o.partition("=")[2] for o in overrides if o.partition("=")[0] == "model.learner"]
    if settings:
        _refuse_model_settings(overrides)
    elif overrides and not learner:
        raise OrbitLiteError(
            "--set with --checkpoint only re-uses its backbone in a FineTuner "
            "(--set model.learner=finetuner or finetuner_film, with finetune.* settings)"
        )
    if not learner:
        return Checkpoint(checkpoint, tuple(overrides))
    if learner[-1] not in learners_from("backbone"):
        raise OrbitLiteError(
            f"--set model.learner={learner[-1]}: a checkpoint can only be re-used by learners without meta-trained "
            f"parts ({', '.join(learners_from('backbone'))})"
        )
    rest = tuple(o for o in overrides if o.partition("=")[0] != "model.learner")
    return CheckpointBackbone(checkpoint, learner[-1], rest)


def _refuse_model_settings(overrides: Sequence[str]) -> None:
    for item in overrides:
        key, _, value = item.partition("=")
        section = key.split(".")[0]
        if key in RUNTIME_KEYS:
            continue
        if key == "model.learner" and value in learners_from("backbone"):
            continue  # a learner re-using the checkpoint's backbone
        if section in ("model", "train"):
            raise OrbitLiteError(
                f"--set {item}: evaluate takes {section}.* from the checkpoint and cannot change it; "
                "train a model with that setting instead"
            )


def open_model(source: ModelSource, device: torch.device) -> OpenedModel:
    """Build ``source``'s learner, load its weights, and prepare it on ``device`` (in eval mode, never compiled).

    Args:
        source: where the model comes from (:class:`Checkpoint`, :class:`Recipe` or :class:`CheckpointBackbone`).
        device: where it runs (:func:`orbit_lite.runtime.select_device` turns ``auto``/``cpu``/``cuda`` into one).

    Returns:
        The learner and its resolved config (the source's settings applied). Anything wrong with the files or the
        settings is an :class:`~orbit_lite.errors.OrbitLiteError` naming the file or setting."""
    if isinstance(source, Checkpoint):
        learner, cfg = _trained(source)
    elif isinstance(source, Recipe):
        learner, cfg = _from_recipe(source)
    elif isinstance(source, CheckpointBackbone):
        learner, cfg = _reused_backbone(source)
    else:
        raise TypeError(f"not a model source: {source!r}")
    learner = learner.to(device).eval()
    runtime.prepare(learner, cfg, device, allow_compile=False)
    return OpenedModel(learner, cfg)


def open_personal(path: Path | str, device: torch.device | str = "cpu") -> PersonalModel:
    """A personal recognizer (written by ``orbit-lite personalize``), loaded and prepared on ``device``."""
    return load_personal(path, device)


def source_record(source: ModelSource) -> dict[str, Any]:
    """Where the model came from, as results record it (``checkpoint``: a path or None; ``recipes``: paths)."""
    if isinstance(source, Recipe):
        return {"checkpoint": None, "recipes": [str(p) for p in source.paths]}
    return {"checkpoint": str(source.path), "recipes": []}


def _config_of(path: Path, record: dict[str, Any]) -> Config:
    try:
        return from_dict(Config, record["config"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise OrbitLiteError(f"{path}: damaged training checkpoint: its config cannot be read ({e})") from None


def _trained(source: Checkpoint) -> tuple[Learner, Config]:
    record = load_checkpoint(source.path, "training")
    cfg = _config_of(source.path, record)
    model = dataclasses.replace(cfg.model, weights="none")  # the checkpoint has the weights: never download
    if source.settings:  # how it runs (its buckets among them), never what it is: cfg.model stays the trained one
        cfg = from_dict(Config, apply_overrides(to_dict(cfg), list(source.settings)))
    learner = create_learner(model, cfg.data.frame_size, buckets=runtime.buckets_of(cfg.lite))
    try:
        learner.load_state_dict(record["model"])
    except RuntimeError as e:
        raise OrbitLiteError(f"{source.path}: weights do not fit its own model ({str(e).splitlines()[0]})") from None
    return learner, cfg


def _from_recipe(source: Recipe) -> tuple[Learner, Config]:
    cfg = load_config([str(p) for p in source.paths], list(source.settings))
    if cfg.model.learner in LEARNERS and not LEARNERS[cfg.model.learner].from_pretrained:
        raise OrbitLiteError(
            f"learner {cfg.model.learner!r} has meta-trained parts, so it needs --checkpoint; a recipe alone serves "
            f"{', '.join(learners_from('recipe'))}"
        )
    return create_learner(cfg.model, cfg.data.frame_size, cfg.finetune, buckets=runtime.buckets_of(cfg.lite)), cfg


def _reused_backbone(source: CheckpointBackbone) -> tuple[Learner, Config]:
    record = load_checkpoint(source.path, "training")
    _config_of(source.path, record)  # a damaged config is named as such before any setting is applied to it
    settings = [*source.settings, f"model.learner={source.learner}"]
    cfg = from_dict(Config, apply_overrides(record["config"], settings))
    model = dataclasses.replace(cfg.model, weights="none", head="")
    cfg = dataclasses.replace(cfg, model=model)
    learner = create_learner(model, cfg.data.frame_size, cfg.finetune, buckets=runtime.buckets_of(cfg.lite))
    backbone = {k.removeprefix("backbone."): v for k, v in record["model"].items() if k.startswith("backbone.")}
    try:
        learner.backbone.load_state_dict(backbone)
    except RuntimeError as e:
        raise OrbitLiteError(
            f"{source.path}: its backbone does not fit {model.backbone} ({str(e).splitlines()[0]})"
        ) from None
    return learner, cfg
