"""FiLM: per-channel scales and shifts of a backbone's norm layers, generated from the task embedding.

For each adapted layer with C channels, two small networks map the task embedding z to ``g_gamma(z)`` and
``g_beta(z)`` (Linear -> LayerNorm -> ReLU -> Linear), and two learned vectors ``r_gamma``, ``r_beta`` (initialised
N(0, 0.001^2)) gate them: ``gamma = 1 + g_gamma(z) * r_gamma``, ``beta = g_beta(z) * r_beta``. FiLM therefore starts
at the identity, and the regularizer ``sum ||r||^2`` keeps it near there.

How ``(gamma, beta)`` change a norm layer's affine ``(w, b)`` is the FiLM *style* (:func:`film_affine`): orbit-lite's
``gamma * norm(x) + beta`` scales the layer's own bias too, while the ORBIT reference code only shifts it.
The generator is the same for both; its outputs mean different things.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

FILM_STYLES = ("orbit_lite", "reference")


def film_affine(
    style: str, weight: Tensor, bias: Tensor | None, gamma: Tensor, beta: Tensor
) -> tuple[Tensor, Tensor | None]:
    """The adapted affine parameters ``(w', b')`` of a norm layer, all tensors ``[C]``.

    - ``orbit_lite``: ``w' = gamma * w``, ``b' = gamma * b + beta``, i.e. ``gamma * norm(x) + beta``.
    - ``reference``: ``w' = gamma * w``, ``b' = b + beta``; with ``gamma = 1 + r_w g_w(z)`` and ``beta = r_b g_b(z)``
      this is the reference's ``w0 (1 + r_w g_w(z))``, ``b0 + r_b g_b(z)``.

    Either way ``gamma = 1, beta = 0`` gives ``(w, b)`` bit for bit, and gradients reach gamma, beta, w and b.
    ``(w, b)`` are the layer's current parameters; the reference's ``(w0, b0)`` are copies taken when it builds the
    model. They agree whenever the backbone is frozen, as it is in every published FiLM checkpoint; a fine-tuned
    backbone here carries its FiLM base along rather than adapting parameters it no longer has.

    A layer without a bias (``bias`` None: RMSNorm, LayerNorm(bias=False)) is scaled only: ``(gamma * w, None)``.
    """
    if style in FILM_STYLES and bias is None:
        return gamma * weight, None
    if style == "orbit_lite":
        return gamma * weight, gamma * bias + beta
    if style == "reference":
        return gamma * weight, bias + beta
    raise ValueError(f"unknown FiLM style {style!r}; expected one of {', '.join(FILM_STYLES)}")


def _dense(embed: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(embed, embed), nn.LayerNorm(embed), nn.ReLU(inplace=True), nn.Linear(embed, out))


class FilmGenerator(nn.Module):
    """Task embedding ``[E]`` -> ``{layer: (gamma [C], beta [C])}`` for the backbone's FiLM layers.

    Args:
        layers: ``(name, channels)`` of the adapted norm layers, in the backbone's (sorted) order.
        embed_dim: size of the task embedding.
        init_std: standard deviation of the initial gates ``r``.
        scale_only: layers without a bias, which FiLM only scales: no beta network; their beta is zero.
    """

    def __init__(
        self,
        layers: list[tuple[str, int]],
        embed_dim: int = 64,
        init_std: float = 1e-3,
        scale_only: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__()
        self.names = [name for name, _ in layers]
        keys = [name.replace(".", "_") for name in self.names]  # ModuleDict keys cannot contain dots
        shifted = [(k, c) for k, (name, c) in zip(keys, layers, strict=True) if name not in scale_only]
        self.gamma = nn.ModuleDict({k: _dense(embed_dim, c) for k, (_, c) in zip(keys, layers, strict=True)})
        self.beta = nn.ModuleDict({k: _dense(embed_dim, c) for k, c in shifted})
        self.r_gamma = nn.ParameterDict(
            {k: nn.Parameter(torch.randn(c) * init_std) for k, (_, c) in zip(keys, layers, strict=True)}
        )
        self.r_beta = nn.ParameterDict({k: nn.Parameter(torch.randn(c) * init_std) for k, c in shifted})
        self._keys = keys

    def forward(self, z: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        film = {}
        for name, k in zip(self.names, self._keys, strict=True):
            gamma = 1.0 + self.gamma[k](z) * self.r_gamma[k]
            film[name] = (gamma, self.beta[k](z) * self.r_beta[k] if k in self.beta else torch.zeros_like(gamma))
        return film

    def regularizer(self) -> torch.Tensor:
        """``sum ||r||^2`` over every gate vector."""
        gates = list(self.r_gamma.values()) + list(self.r_beta.values())
        return torch.stack([g.pow(2).sum() for g in gates]).sum()
