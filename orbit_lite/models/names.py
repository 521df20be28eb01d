"""The registries' names, known without importing torch.

The command line checks a recipe's ``model.learner``, ``model.backbone`` and ``model.head`` against these before it
loads torch (seconds), so a misspelt name answers at once. ``tests/test_names.py`` keeps them equal to the
registries they stand for (:data:`orbit_lite.models.backbones.BACKBONES`, :data:`orbit_lite.learners.LEARNERS`,
:data:`orbit_lite.models.heads.HEADS`).
"""

from __future__ import annotations

import difflib

BACKBONE_NAMES = ("efficientnet_b0", "efficientnet_lite0", "efficientnet_v2_s", "resnet18", "small_cnn",
                  "tf_efficientnet_b0", "tf_efficientnetv2_s_in21k", "tiny_cnn", "tiny_vit", "vit_b_32",
                  "vit_b_32_clip_laion2b", "vit_b_32_in21k")  # fmt: skip
LEARNER_NAMES = ("protonets", "simple_cnaps", "cnaps", "finetuner", "finetuner_film")
HEAD_NAMES = ("proto", "proto_cosine", "mahalanobis", "versa", "linear")
TIMM_PREFIX = "timm/"  # any timm image model: timm/<model>[.<pretrained tag>], resolved by timm itself


def backbone_problem(name: str) -> str | None:
    """Why ``name`` names no backbone (with the closest registered names), or None when it may: a registered name,
    or a ``timm/`` name (timm checks the rest when the model is built)."""
    if name in BACKBONE_NAMES or name.startswith(TIMM_PREFIX):
        return None
    close = difflib.get_close_matches(name, BACKBONE_NAMES, n=2)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    return (f"unknown backbone {name!r}; {hint}fix: use one of {', '.join(BACKBONE_NAMES)}, or any timm image model "
            "as timm/<model>[.<pretrained tag>]")  # fmt: skip
