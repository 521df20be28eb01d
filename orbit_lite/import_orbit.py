"""The ORBIT reference code's published checkpoints as orbit-lite training checkpoints.

A published file is the reference model's bare ``state_dict``: backbone (``feature_extractor.*``) and, for the CNAPs
family, set encoder, FiLM generator and Versa networks. This module says which orbit-lite model it is (from the file
name or the caller), maps every reference key onto that model's own key, checks that every key is used and every
shape is right, and returns the payload of an orbit-lite training checkpoint. The model is built in the ``reference``
style (``model.style``), so it computes what the reference computes; what the file does not hold comes from the
reference code: the logit scale (32 for cosine ProtoNets, else 1) and the FiLM base values (the backbone's own norm
parameters, which the frozen CNAPs-family backbones never changed).

Reading never runs code: ``torch.load(weights_only=True)``, and a pickle that asks for more is refused.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orbit_lite.config import Config, DataConfig, ModelConfig, to_dict
from orbit_lite.errors import OrbitLiteError

if TYPE_CHECKING:  # torch and the learners load when a file is read: the command line names its choices without them
    from torch import Tensor

    from orbit_lite.learners import FewShotLearner

# The reference's --feature_extractor names -> our registry names for the same timm networks.
BACKBONES = {
    "efficientnet_b0": "tf_efficientnet_b0",
    "efficientnet_v2_s": "tf_efficientnetv2_s_in21k",
    "vit_b_32": "vit_b_32_in21k",
    "vit_b_32_clip": "vit_b_32_clip_laion2b",
}
HEADS = {"protonets": ("proto", "proto_cosine"), "simple_cnaps": ("mahalanobis",), "cnaps": ("versa",)}
FRAME_SIZE = 224
# Per-task head state that the reference resets after every task; a file may still carry it.
_STRAY = {f"classifier.{k}" for k in ("weight", "bias", "means", "precisions", "task_mean", "task_precision")}
_FILE_NAME = re.compile(
    r"orbit_cluve_(?P<learner>protonets|simple_cnaps|cnaps)(?P<cosine>_cosine)?_"
    r"(?P<backbone>efficientnet_b0|efficientnet_v2_s|vit_b_32_clip|vit_b_32)_224_lite"
)


@dataclass(frozen=True)
class ReferenceModel:
    """Which reference configuration a checkpoint holds: reference learner, backbone and head names."""

    learner: str
    backbone: str
    head: str

    def describe(self) -> str:
        return f"--learner {self.learner} --backbone {self.backbone} --head {self.head}"

    def model_config(self) -> ModelConfig:
        """The orbit-lite model that computes what this reference model computes."""
        from orbit_lite.models.heads import HEADS as HEAD_TYPES  # torch: only once a model is built

        return ModelConfig(
            learner=self.learner,
            backbone=BACKBONES[self.backbone],
            weights="pretrained",
            head=self.head,
            logit_scale=HEAD_TYPES[self.head].default_scale,  # not in the files: the reference's own
            style="reference",
        )


def resolve(
    path: Path, learner: str | None = None, backbone: str | None = None, head: str | None = None
) -> ReferenceModel:
    """The configuration from the flags, and from the published file name for those not given."""
    if backbone is not None:  # orbit-lite's backbone names (as in the README) stand for the file-name tokens
        backbone = {name: token for token, name in BACKBONES.items()}.get(backbone, backbone)
    match = _FILE_NAME.search(path.name)
    if match is not None:
        learner = learner or match["learner"]
        backbone = backbone or match["backbone"]
        if head is None and learner == match["learner"]:
            head = ("proto_cosine" if match["cosine"] else "proto") if learner == "protonets" else None
    if learner is None or backbone is None:
        raise OrbitLiteError(
            f"{path.name} is not named like a published checkpoint (orbit_cluve_<learner>[_cosine]_<backbone>"
            f"_224_lite.pth); fix: give --learner ({', '.join(HEADS)}) and --backbone ({', '.join(BACKBONES)})"
        )
    if learner not in HEADS or backbone not in BACKBONES:
        raise OrbitLiteError(
            f"unknown reference model {learner} on {backbone}; fix: --learner one of "
            f"{', '.join(HEADS)}, --backbone one of {', '.join(BACKBONES)} "
            f"(or {', '.join(BACKBONES.values())})"
        )
    head = head or HEADS[learner][0]
    if head not in HEADS[learner]:
        raise OrbitLiteError(
            f"--head {head} does not go with --learner {learner}; fix: use {' or '.join(HEADS[learner])}"
        )
    return ReferenceModel(learner, backbone, head)


def read_state(path: Path) -> dict[str, Tensor]:
    """The tensors of a reference checkpoint, read without running any code; one-line errors otherwise."""
    from torch import Tensor

    from orbit_lite.checkpoint import read_torch_file

    try:
        state = read_torch_file(path, "a reference checkpoint (.pth)")
    except OrbitLiteError as e:
        if "would run code" in str(e):
            raise OrbitLiteError(f"{e}; fix: use the published .pth file (a plain state_dict)") from None
        raise
    if isinstance(state, dict) and isinstance(state.get("model_state_dict"), dict):
        state = state["model_state_dict"]  # the reference's per-epoch training checkpoint wraps the same state_dict
    if isinstance(state, dict) and state.get("format") == "orbit-lite":
        raise OrbitLiteError(f"{path} is already an orbit-lite {state.get('kind')} file; use it as it is")
    if not isinstance(state, dict) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise OrbitLiteError(f"{path} holds no state_dict (a dict of tensors); fix: pass a published ORBIT .pth file")
    return {str(k): v for k, v in state.items()}


def key_map(learner: FewShotLearner) -> dict[str, str]:
    """Reference key -> orbit-lite key, for every tensor a reference checkpoint of this model holds."""
    mapping = {f"feature_extractor.{k}": f"backbone.net.{k}" for k in learner.backbone.net.state_dict()}
    if learner.set_encoder is not None:
        net = learner.set_encoder.net
        for block in range(5):
            for part in (0, 1):  # conv, BatchNorm
                index = learner.set_encoder.layer_index(block, part)
                for k in net[index].state_dict():
                    mapping[f"set_encoder.encoder.layer{block + 1}.{part}.{k}"] = f"set_encoder.net.{index}.{k}"
    if learner.film is not None:
        film = learner.film
        keys = dict(zip(film.names, film.gamma.keys(), strict=True))
        # generator i belongs to the i-th FiLM parameter name in string order (bias before weight)
        names = sorted(f"{layer}.{which}" for layer in film.names for which in ("bias", "weight"))
        for i, name in enumerate(names):
            layer, which = name.rsplit(".", 1)
            ours = "gamma" if which == "weight" else "beta"
            key = keys[layer]
            for k in film.gamma[key].state_dict():  # block.0 Linear, block.1 LayerNorm, block.3 Linear
                mapping[f"film_generator.generators.{i}.block.{k}"] = f"film.{ours}.{key}.{k}"
            mapping[f"film_generator.regularizers.{i}"] = f"film.r_{ours}.{key}"
    mapping.update({ref: f"head.{ours}" for ref, ours in learner.head.reference_keys().items()})
    return mapping


def _guess(state: dict[str, Tensor]) -> str:
    """A hint at what the file really is, from a few tell-tale keys; empty when unclear."""
    stem = state.get("feature_extractor.conv_stem.weight")
    if "feature_extractor.patch_embed.proj.weight" in state:
        backbone = "vit_b_32_clip" if "feature_extractor.norm_pre.weight" in state else "vit_b_32"
    elif stem is not None and stem.shape[0] in (32, 24):
        backbone = "efficientnet_b0" if stem.shape[0] == 32 else "efficientnet_v2_s"
    else:
        return ""
    if "classifier.weight_processor.linear1.weight" in state:
        learner = "cnaps"
    elif "film_generator.regularizers.0" in state:
        learner = "simple_cnaps"
    else:
        learner = "protonets"
    return f"; the file looks like --learner {learner} --backbone {backbone}"


def check_state(state: dict[str, Tensor], mapping: dict[str, str], expected: dict[str, Tensor], what: str) -> None:
    """Every key used, none missing, every shape right; else one line listing what does not match."""
    keys = set(state) - _STRAY
    unexpected = sorted(keys - set(mapping))
    missing = sorted(set(mapping) - keys)
    shapes = [
        f"{k} {list(state[k].shape)} (expected {list(expected[mapping[k]].shape)})"
        for k in sorted(keys & set(mapping))
        if state[k].shape != expected[mapping[k]].shape
    ]
    if not (unexpected or missing or shapes):
        return
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", shapes)):
        if items:
            more = f", ... {len(items) - 3} more" if len(items) > 3 else ""
            problems.append(f"{len(items)} {label} ({', '.join(items[:3])}{more})")
    raise OrbitLiteError(f"the checkpoint does not match {what}: {'; '.join(problems)}{_guess(state)}")


def import_reference(path: Path, ref: ReferenceModel) -> tuple[dict[str, Any], int]:
    """Read, check and convert a reference checkpoint.

    Returns:
        The payload of an orbit-lite training checkpoint (``config``, ``model``, ``source``), and the number of
        tensors taken from the file.
    """
    from orbit_lite.learners import LEARNERS, create_learner

    state = read_state(path)
    config = Config(data=DataConfig(frame_size=FRAME_SIZE), model=ref.model_config())
    model = dataclasses.replace(config.model, weights="none")  # every weight comes from the file
    learner = create_learner(model, FRAME_SIZE)
    ours = learner.state_dict()
    mapping = key_map(learner)
    check_state(state, mapping, ours, f"{ref.describe()} ({LEARNERS[ref.learner].description})")
    converted = {mapping[k]: v for k, v in state.items() if k in mapping}
    left = set(ours) - set(converted)
    converted.update({k: ours[k] for k in left})  # only the head's scale buffer, set from the reference code
    assert left <= {"head.scale"}, f"key map misses {sorted(left)}"
    learner.load_state_dict(converted)
    source = {"file": path.name, "learner": ref.learner, "backbone": ref.backbone, "head": ref.head}
    return {"config": to_dict(config), "model": learner.state_dict(), "source": source}, len(converted) - len(left)
