"""The names a user picks from, defined once: the engine checks them and the command line offers them (without
loading torch or numpy, so that ``--help`` and mistakes answer at once)."""

from __future__ import annotations

import difflib

SPLITS = ("train", "validation", "test")  # an ORBIT tree's folders of users
PROTOCOLS = ("orbit2022", "orbit2021")  # evaluation protocols (orbit2022: the benchmark's current one)
MODES = ("clutter", "clean")  # what the query videos are: clutter videos, or held-out clean ones

# The registries' names (orbit_lite.models.backbones.BACKBONES, orbit_lite.learners.LEARNERS,
# orbit_lite.models.heads.HEADS): a recipe's misspelt learner, head or backbone answers before torch loads them.
# tests/test_newcomer.py keeps them equal to the registries.
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
