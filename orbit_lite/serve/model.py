"""How the service opens its model: ``orbit-lite serve``'s options become the engine's typed model source
(:func:`orbit_lite.engine.model.parse_source`), opened once by the engine's one way in
(:func:`orbit_lite.engine.model.open_model`); the service adds only its default recipe."""

from __future__ import annotations

from pathlib import Path

import torch

from orbit_lite.config import Config
from orbit_lite.engine.model import ModelSource, Recipe, parse_source
from orbit_lite.engine.model import open_model as open_engine_model
from orbit_lite.errors import OrbitLiteError
from orbit_lite.learners import Learner

__all__ = ["ModelSource", "default_recipe", "describe", "open_model", "parse_source"]

DEFAULT_RECIPE = "photos_pretrained.yaml"


def describe(source: ModelSource) -> str:
    if isinstance(source, Recipe):
        return "recipe " + " + ".join(str(p) for p in source.paths)
    return f"checkpoint {source.path}"


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


def open_model(source: ModelSource, device: torch.device) -> tuple[Learner, Config]:
    """The learner that teaches every collection, in eval mode on ``device``, and its config."""
    opened = open_engine_model(source, device)
    return opened.learner, opened.config
