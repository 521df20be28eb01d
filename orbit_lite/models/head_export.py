"""Each head's logits as a small module with its personal state baked in as buffers: the exportable form
(:meth:`orbit_lite.models.heads.Head.exportable`), written with the plain tensor operations ONNX has."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class _Logits(nn.Module):
    def __init__(self, scale: float, **state: Tensor) -> None:
        super().__init__()
        self.register_buffer("scale", torch.tensor(scale))
        for name, value in state.items():
            self.register_buffer(name, value.detach().cpu().float())


class ProtoLogits(_Logits):
    """``-scale * ||x - mu||^2``, expanded into products."""

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * (2 * x @ self.means.T - (self.means**2).sum(1) - (x**2).sum(1, keepdim=True))


class CosineLogits(_Logits):
    """``scale * cos(x, mu)``."""

    def forward(self, x: Tensor) -> Tensor:
        xn = x / x.norm(dim=1, keepdim=True).clamp_min(1e-8)
        mn = self.means / self.means.norm(dim=1, keepdim=True).clamp_min(1e-8)
        return self.scale * xn @ mn.T


class MahalanobisLogits(_Logits):
    """``-scale * (x - mu)^T Q (x - mu)`` as ``-(x^T Q x - 2 x^T Q mu + mu^T Q mu)``, ``Q`` the precision."""

    def __init__(self, scale: float, means: Tensor, chol: Tensor) -> None:
        precision = torch.cholesky_inverse(chol.detach().cpu().float().double()).float()  # (L L^T)^-1, [K, D, D]
        means = means.detach().cpu().float()
        q_means = torch.einsum("kde,ke->kd", precision, means)  # Q_k mu_k
        super().__init__(scale, means=means, precision=precision, q_means=q_means, mu_q_mu=(means * q_means).sum(1))

    def forward(self, x: Tensor) -> Tensor:
        xq = torch.einsum("nd,kde->nke", x, self.precision)
        quad = (xq * x[:, None, :]).sum(2)
        return -self.scale * (quad - 2 * x @ self.q_means.T + self.mu_q_mu)


class LinearLogits(_Logits):
    """``scale * (x W^T + b)``."""

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * (x @ self.weight.T + self.bias)
