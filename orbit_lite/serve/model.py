"""The one place the service opens its model: the options of ``orbit-lite serve`` as a typed source, and the engine
function that builds, loads and prepares the learner from it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from orbit_lite.config import Config
from orbit_lite.errors import OrbitLiteError
from orbit_lite.learners import FewShotLearner

DEFAULT_RECIPE = "photos_pretrained.yaml"


@dataclass(frozen=True)
class ModelSource:
    """``--checkpoint`` or ``--config`` (with ``--set`` overrides): what ``personalize`` takes."""

    checkpoint: Path | None = None
    recipes: tuple[Path, ...] = ()
    overrides: tuple[str, ...] = ()


def parse_source(checkpoint: Path | None, recipes: Sequence[Path], overrides: Sequence[str] = ()) -> ModelSource:
    """The source named by ``--checkpoint`` / ``--config`` (exactly one) and ``--set``; mistakes in one line."""
    from orbit_lite.engine.personalize import check_model_source

    check_model_source(checkpoint, list(recipes), list(overrides))
    return ModelSource(checkpoint, tuple(recipes), tuple(overrides))


def describe(source: ModelSource) -> str:
    if source.checkpoint is not None:
        return f"checkpoint {source.checkpoint}"
    return "recipe " + " + ".join(str(p) for p in source.recipes)


def default_recipe() -> Path:
    """The shipped pretrained recipe (ImageNet EfficientNet-Lite0, cosine ProtoNets): works offline on a fresh
    machine. It sits in ``configs/`` beside the package in a source checkout."""
    path = Path(__file__).resolve().parents[2] / "configs" / DEFAULT_RECIPE
    if not path.is_file():
        raise OrbitLiteError(
            f"the default recipe configs/{DEFAULT_RECIPE} is not beside this installation; pass "
            "--config PATH/TO/RECIPE.yaml or --checkpoint CKPT"
        )
    return path


def open_model(source: ModelSource, device: torch.device) -> tuple[FewShotLearner, Config]:
    """The learner that teaches every collection, in eval mode on ``device``, and its config."""
    from orbit_lite.engine.personalize import open_learner

    return open_learner(source.checkpoint, list(source.recipes), list(source.overrides), device)
