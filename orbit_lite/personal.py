"""A personal recognizer on disk: one self-contained file that loads and runs on a CPU-only machine.

It holds the object names in label order, the backbone's weights, this user's FiLM parameters (when the learner
adapts the backbone), the head and its state (prototypes, or means and covariance factors), the frame size, clip
length and input normalization, the configuration it came from, and one context clip per object (what `export
--check` runs both runtimes on). The set encoder and FiLM generator are not
needed any more and are not stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from orbit_lite.checkpoint import load_checkpoint, save_checkpoint
from orbit_lite.errors import OrbitLiteError
from orbit_lite.learners.base import Personalized
from orbit_lite.models.backbones import create_backbone
from orbit_lite.models.heads import create_head
from orbit_lite.runtime import prepare_backbone

KIND = "personal"


@dataclass
class PersonalModel:
    """A loaded personal recognizer with what it needs to read frames."""

    recognizer: Personalized
    object_names: list[str]
    user: str
    frame_size: int
    clip_length: int
    config: dict[str, Any]
    check_clips: torch.Tensor | None = None  # uint8 [N, L, 3, S, S]: a few context clips, for `export --check`


def _plain(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu").clone()  # also turns inference-mode tensors into ordinary ones


def save_personal(path: Path | str, model: PersonalModel) -> None:
    """Write ``model`` atomically."""
    r = model.recognizer
    film = None if r.film is None else {k: [_plain(g), _plain(b)] for k, (g, b) in r.film.items()}
    payload = {
        "user": model.user,
        "object_names": list(model.object_names),
        "frame_size": model.frame_size,
        "clip_length": model.clip_length,
        "backbone_name": r.backbone.spec.name,
        "head_name": r.head.name,
        "style": r.backbone.film_style,  # FiLM formula and head variant (model.style)
        "learn_scale": bool(r.head.learn_scale),
        "normalization": {"mean": list(r.backbone.spec.mean), "std": list(r.backbone.spec.std)},
        "backbone": {k: _plain(v) for k, v in r.backbone.state_dict().items()},
        "head": {k: _plain(v) for k, v in r.head.state_dict().items()},
        "film": film,
        "state": [_plain(t) for t in r.state],
        "config": model.config,
        "check_clips": None if model.check_clips is None else _plain(model.check_clips),
    }
    save_checkpoint(path, payload, KIND)


def _head_width(path: Path | str, head: Any, feature_dim: int, state: list[torch.Tensor]) -> int:
    """How many objects the head scores with this state (one zero feature through it): the state decides, whatever
    the head."""
    try:
        with torch.no_grad():
            return int(head.logits(torch.zeros(1, feature_dim), tuple(t.float() for t in state)).shape[-1])
    except (RuntimeError, ValueError, IndexError, TypeError) as e:
        reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise OrbitLiteError(
            f"{path}: damaged personal recognizer: its head state does not fit its head ({reason})"
        ) from None


def load_personal(path: Path | str, device: torch.device | str = "cpu") -> PersonalModel:
    """Read a personal recognizer written by :func:`save_personal` onto ``device``."""
    record = load_checkpoint(path, KIND)
    try:
        style = record.get("style", "orbit_lite")  # files written before styles existed are orbit-lite's
        backbone = create_backbone(record["backbone_name"], "none", record["frame_size"], film_style=style)
        backbone.load_state_dict(record["backbone"])
        head = create_head(record["head_name"], backbone.feature_dim, None, bool(record["learn_scale"]), style=style)
        head.load_state_dict(record["head"])
    except (KeyError, RuntimeError, TypeError, ValueError) as e:
        raise OrbitLiteError(f"{path}: damaged personal recognizer ({str(e).splitlines()[0][:120]})") from None
    names = record["object_names"]
    way = _head_width(path, head, backbone.feature_dim, record["state"])
    if way != len(names):  # a wrong count would name the wrong objects (recognize) or export a mislabelled model
        raise OrbitLiteError(
            f"{path}: damaged personal recognizer: {len(names)} object names for a head that scores {way} objects"
        )
    backbone.to(device).eval()
    prepare_backbone(backbone, torch.device(device))  # shape buckets and channels-last on a GPU
    head.to(device).eval()
    film = record["film"]
    film = None if film is None else {k: (g.to(device), b.to(device)) for k, (g, b) in film.items()}
    state = tuple(t.to(device) for t in record["state"])
    recognizer = Personalized(backbone, head, film, state, len(record["object_names"]))
    return PersonalModel(
        recognizer,
        list(record["object_names"]),
        record["user"],
        record["frame_size"],
        record["clip_length"],
        record["config"],
        record.get("check_clips"),
    )
