"""On-device export: a personal recognizer as one ONNX graph, uint8 frames in, logits and probabilities out.

The user's FiLM parameters are folded into the backbone's norm layers (their affine parameters become the FiLM-ed
ones, in the backbone's FiLM style), and the head's state becomes constants of plain matrix products (Mahalanobis:
precisions from the Cholesky factors; no triangular solves on the device), so the graph needs no orbit-lite code to run.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from orbit_lite.errors import OrbitLiteError
from orbit_lite.models.backbones import Backbone
from orbit_lite.models.film import film_affine
from orbit_lite.outputs import ONNX_MARKER, new_id
from orbit_lite.personal import PersonalModel
from orbit_lite.publish import publish_file

log = logging.getLogger(__name__)


def _fold_film(backbone: Backbone, film: dict[str, tuple[torch.Tensor, torch.Tensor]] | None) -> Backbone:
    folded = copy.deepcopy(backbone).cpu().eval()
    with torch.no_grad():
        for name, (gamma, beta) in (film or {}).items():
            norm = folded.net.get_submodule(name)
            bias = getattr(norm, "bias", None)
            weight, bias = film_affine(folded.film_style, norm.weight, bias, gamma.cpu(), beta.cpu())
            norm.weight.copy_(weight)
            if bias is not None:
                norm.bias.copy_(bias)
    return folded


class ExportedRecognizer(nn.Module):
    """uint8 frames ``[B, L, 3, S, S]`` (``[B, 3, S, S]`` when L = 1) -> logits and probabilities ``[B, K]``."""

    def __init__(self, model: PersonalModel) -> None:
        super().__init__()
        r = model.recognizer
        self.backbone = _fold_film(r.backbone, r.film)
        self.head = r.head.exportable(r.state)
        self.clip_length = model.clip_length

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.clip_length == 1:
            features = self.backbone(frames)
        else:
            b = frames.shape[0]
            features = self.backbone(frames.flatten(0, 1)).view(b, self.clip_length, -1).mean(1)
        logits = self._head(features.float())
        return logits, torch.softmax(logits, dim=1)

    def _head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)


def example_input(model: PersonalModel, batch: int = 2, seed: int = 0) -> torch.Tensor:
    shape = (batch, 3, model.frame_size, model.frame_size)
    if model.clip_length > 1:
        shape = (batch, model.clip_length, *shape[1:])
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def export_onnx(model: PersonalModel, path: Path | str, opset: int = 18) -> Path:
    """Write ``model`` as ONNX (dynamic batch) to ``path``; returns the path."""
    try:
        import onnx  # the exporter needs it: fail with the fix rather than deep inside torch
    except ImportError:
        raise OrbitLiteError("ONNX export needs the onnx packages: pip install 'orbit-lite[export]'") from None
    module = ExportedRecognizer(model).eval()
    path = Path(path)
    batch = torch.export.Dim("batch", min=1, max=4096)
    try:
        with publish_file(path) as tmp:
            torch.onnx.export(
                module,
                (example_input(model),),
                str(tmp),
                input_names=["frames"],
                output_names=["logits", "probabilities"],
                dynamic_shapes=({0: batch},),
                opset_version=opset,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
            graph = onnx.load(str(tmp))
            # the proof that orbit-lite wrote this file: only such a file is ever replaced by a later export
            props = {ONNX_MARKER: new_id(), "orbit_lite_objects": ",".join(model.object_names)}
            onnx.helper.set_model_props(graph, props)
            tmp.write_bytes(graph.SerializeToString())
    except OrbitLiteError:
        raise
    except ImportError:  # onnxscript, which the exporter imports itself
        raise OrbitLiteError("ONNX export needs the onnx packages: pip install 'orbit-lite[export]'") from None
    except Exception as exc:  # the exporter fails in many types (dynamo, torch.export, onnxscript); all mean "cannot"
        name = model.recognizer.backbone.spec.name
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise OrbitLiteError(
            f"the {name} backbone does not export to ONNX ({type(exc).__name__}: {reason}); fix: run the recognizer "
            f"with `orbit-lite recognize`, or train with a backbone that exports (`orbit-lite backbones NAME --onnx` "
            "checks one)"
        ) from None
    return path


PROBABILITY_TOLERANCE = 1e-3  # largest |onnxruntime - PyTorch| probability accepted
LOGIT_TOLERANCE = 1e-3  # largest logit difference accepted, relative to the largest |logit| of the same input


@dataclass(frozen=True)
class Parity:
    """onnxruntime against PyTorch on ``inputs`` inputs from ``source``."""

    inputs: int
    source: str
    probability_diff: float  # max |p_onnx - p_torch|
    logit_diff: float  # max over inputs of max_k |l_onnx - l_torch| / max_k |l_torch|
    argmax_changed: int  # inputs whose top object differs (near-ties within the probability tolerance excepted)

    @property
    def ok(self) -> bool:
        within = self.probability_diff <= PROBABILITY_TOLERANCE and self.logit_diff <= LOGIT_TOLERANCE
        return within and self.argmax_changed == 0

    def summary(self) -> str:
        return (
            f"on {self.inputs} {self.source}: max |probability difference| {self.probability_diff:.2e} "
            f"(tolerance {PROBABILITY_TOLERANCE:.0e}), max relative logit difference {self.logit_diff:.2e} "
            f"(tolerance {LOGIT_TOLERANCE:.0e}), top object changed on {self.argmax_changed}"
        )


def check_inputs(model: PersonalModel) -> tuple[torch.Tensor, str]:
    """Inputs on which the comparison means something: the context clips stored in the personal file (one per
    object), else rendered object frames. Random noise is no such input: on it a real backbone's features, and so
    the logits, can be orders of magnitude larger than on any photo, and the softmax saturates."""
    if model.check_clips is not None and len(model.check_clips):
        clips, source = model.check_clips, "context clips from the personal file"
    else:
        from orbit_lite.data.synth_render import object_frames

        frames = object_frames(2 * max(len(model.object_names), 2) * model.clip_length, model.frame_size)
        clips, source = frames.view(-1, model.clip_length, *frames.shape[1:]), "rendered object frames"
    return (clips[:, 0] if model.clip_length == 1 else clips), source


def compare(logits: np.ndarray, probabilities: np.ndarray, expected: np.ndarray, source: str) -> Parity:
    """Compare another runtime's ``logits`` and ``probabilities`` ``[N, K]`` with PyTorch's ``expected`` logits."""
    p, q = probabilities.astype(np.float64), softmax(expected)
    scale = np.maximum(np.abs(expected).max(1), 1e-12)
    relative = float((np.abs(logits - expected).max(1) / scale).max())
    top = np.sort(q, axis=1)
    near_tie = top[:, -1] - top[:, -2] <= PROBABILITY_TOLERANCE if q.shape[1] > 1 else np.zeros(len(q), bool)
    changed = int(((p.argmax(1) != q.argmax(1)) & ~near_tie).sum())
    if not (np.isfinite(logits).all() and np.isfinite(p).all()):  # NaN compares as within any tolerance
        return Parity(len(logits), source, float("inf"), float("inf"), changed)
    return Parity(len(logits), source, float(np.abs(p - q).max()), relative, changed)


def softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x.astype(np.float64) - x.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def onnx_parity(model: PersonalModel, path: Path | str) -> Parity:
    """onnxruntime's output for the ONNX file at ``path`` against ``model``'s in PyTorch on :func:`check_inputs`."""
    import onnxruntime as ort

    frames, source = check_inputs(model)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits, probabilities = session.run(["logits", "probabilities"], {"frames": frames.numpy()})
    with torch.inference_mode():
        expected = model.recognizer.predict(frames).cpu().numpy()
    return compare(logits, probabilities, expected, source)
