"""On-device export: a personal recognizer as one ONNX graph, uint8 frames in, logits and probabilities out.

The user's FiLM parameters are folded into the backbone's norm layers (their affine parameters become the FiLM-ed
ones, in the backbone's FiLM style), and the head's state becomes constants of plain matrix products (Mahalanobis:
precisions from the Cholesky factors; no triangular solves on the device), so the graph needs no orbit-lite code to run.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from orbit_lite.errors import OrbitLiteError
from orbit_lite.models.backbones import Backbone
from orbit_lite.models.film import film_affine
from orbit_lite.personal import PersonalModel

log = logging.getLogger(__name__)


def _fold_film(backbone: Backbone, film: dict[str, tuple[torch.Tensor, torch.Tensor]] | None) -> Backbone:
    folded = copy.deepcopy(backbone).cpu().eval()
    with torch.no_grad():
        for name, (gamma, beta) in (film or {}).items():
            norm = folded.net.get_submodule(name)
            weight, bias = film_affine(folded.film_style, norm.weight, norm.bias, gamma.cpu(), beta.cpu())
            norm.weight.copy_(weight)
            norm.bias.copy_(bias)
    return folded


class ExportedRecognizer(nn.Module):
    """uint8 frames ``[B, L, 3, S, S]`` (``[B, 3, S, S]`` when L = 1) -> logits and probabilities ``[B, K]``."""

    def __init__(self, model: PersonalModel) -> None:
        super().__init__()
        r = model.recognizer
        self.backbone = _fold_film(r.backbone, r.film)
        self.kind = r.head.name
        self.clip_length = model.clip_length
        scale = float(r.head.temperature())
        state = [t.detach().cpu().float() for t in r.state]
        self.register_buffer("scale", torch.tensor(scale))
        if self.kind in ("proto", "proto_cosine"):
            self.register_buffer("means", state[0])
        elif self.kind == "mahalanobis":
            means, chol = state
            precision = torch.cholesky_inverse(chol.double()).float()  # (L L^T)^-1, [K, D, D]
            self.register_buffer("means", means)
            self.register_buffer("precision", precision)
            self.register_buffer("q_means", torch.einsum("kde,ke->kd", precision, means))  # Q_k mu_k
            self.register_buffer("mu_q_mu", (means * self.q_means).sum(1))  # mu_k^T Q_k mu_k
        elif self.kind in ("versa", "linear"):  # FineTuners' tuned norm layers are in the backbone's own weights
            self.register_buffer("weight", state[0])
            self.register_buffer("bias", state[1])
        else:
            raise OrbitLiteError(f"no ONNX export for the {self.kind!r} head")

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "proto":  # -||x - mu||^2 expanded into products
            return self.scale * (2 * x @ self.means.T - (self.means**2).sum(1) - (x**2).sum(1, keepdim=True))
        if self.kind == "proto_cosine":
            xn = x / x.norm(dim=1, keepdim=True).clamp_min(1e-8)
            mn = self.means / self.means.norm(dim=1, keepdim=True).clamp_min(1e-8)
            return self.scale * xn @ mn.T
        if self.kind == "mahalanobis":  # -(x - mu)^T Q (x - mu) = -(x^T Q x - 2 x^T Q mu + mu^T Q mu)
            xq = torch.einsum("nd,kde->nke", x, self.precision)
            quad = (xq * x[:, None, :]).sum(2)
            return -self.scale * (quad - 2 * x @ self.q_means.T + self.mu_q_mu)
        return self.scale * (x @ self.weight.T + self.bias)

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.clip_length == 1:
            features = self.backbone(frames)
        else:
            b = frames.shape[0]
            features = self.backbone(frames.flatten(0, 1)).view(b, self.clip_length, -1).mean(1)
        logits = self._head(features.float())
        return logits, torch.softmax(logits, dim=1)


def example_input(model: PersonalModel, batch: int = 2, seed: int = 0) -> torch.Tensor:
    shape = (batch, 3, model.frame_size, model.frame_size)
    if model.clip_length > 1:
        shape = (batch, model.clip_length, *shape[1:])
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def export_onnx(model: PersonalModel, path: Path | str, opset: int = 18) -> Path:
    """Write ``model`` as ONNX (dynamic batch) to ``path``; returns the path."""
    try:
        import onnx  # noqa: F401  (the exporter needs it; fail with the fix rather than deep inside torch)
    except ImportError:
        raise OrbitLiteError("ONNX export needs the onnx packages: pip install 'orbit-lite[export]'") from None
    module = ExportedRecognizer(model).eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    batch = torch.export.Dim("batch", min=1, max=4096)
    try:
        torch.onnx.export(module, (example_input(model),), str(tmp), input_names=["frames"],
                          output_names=["logits", "probabilities"], dynamic_shapes=({0: batch},), opset_version=opset,
                          dynamo=True, external_data=False, verbose=False)  # fmt: skip
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def onnx_parity(model: PersonalModel, path: Path | str, batch: int = 3) -> float:
    """Largest absolute difference between onnxruntime's and PyTorch's logits on random frames."""
    import onnxruntime as ort

    frames = example_input(model, batch, seed=1)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"frames": frames.numpy()})[0]
    with torch.inference_mode():
        expected = model.recognizer.predict(frames).cpu().numpy()
    return float(np.abs(logits - expected).max())
