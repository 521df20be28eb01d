"""LITE: exact forward values over a large support set, back-propagation through a random subset of it.

``lite_forward(fn, inputs, h=H)`` returns ``fn`` applied to every row of ``inputs``. All rows but a uniformly drawn
subset of H are computed under ``no_grad`` in chunks, so activation memory does not grow with the number of rows; the
H rows are computed with grad and their gradients are multiplied by N/H. For a loss L that depends on the rows, the
gradient is then an unbiased estimate of the full one: E[(N/H) sum_{h in H} dL/dy_h * dy_h/dtheta] =
sum_n dL/dy_n * dy_n/dtheta, because each row is in the subset with probability H/N.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from orbit_lite.errors import OrbitLiteError


@dataclass(frozen=True)
class NoGradRows:
    """The no-grad rows of one ``lite_forward`` call, computed ahead (e.g. batched with other tasks' rows).

    Attributes:
        order: the permutation the call will draw, ``[N]``; rows ``order[h:]`` are the no-grad ones.
        values: ``fn(inputs[order[h:]])`` computed without a graph, ``[N - h, D]``.
    """

    order: torch.Tensor
    values: torch.Tensor


def draw_order(n: int, generator: torch.Generator | None) -> torch.Tensor:
    """The permutation ``lite_forward`` draws for ``n`` rows; its first ``h`` rows are back-propagated."""
    return torch.randperm(n, generator=generator)


def _chunked(fn: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, chunk_size: int) -> torch.Tensor:
    return torch.cat([fn(chunk) for chunk in inputs.split(chunk_size)])


def lite_forward(
    fn: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    *,
    h: int,
    chunk_size: int,
    generator: torch.Generator | None = None,
    ahead: NoGradRows | None = None,
) -> torch.Tensor:
    """Apply ``fn`` to every row of ``inputs`` (``[N, ...]`` -> ``[N, D]``), back-propagating through H random rows.

    Args:
        fn: maps a batch of rows ``[n, ...]`` to ``[n, D]``; must treat rows independently (no batch statistics),
            so that the no-grad and the grad rows agree.
        inputs: ``[N, ...]``, on any device (``fn`` moves each chunk where it computes).
        h: number of rows computed with gradient; ``h >= N`` is ordinary back-propagation through every row.
        chunk_size: rows per no-grad forward call; bounds activation memory.
        generator: CPU random generator choosing the subset (for reproducibility).
        ahead: the no-grad rows' values, computed ahead with the permutation this call draws (checked); they are
            used instead of computing them here.

    Returns:
        ``[N, D]`` in row order; the forward values are ``fn(inputs)`` exactly, and only the H chosen rows carry
        gradient, scaled by N/H. Outside grad mode every row is computed in no-grad chunks.
    """
    if h <= 0:
        raise OrbitLiteError(f"LITE's h (rows back-propagated per task) must be >= 1, got {h}")
    if chunk_size <= 0:
        raise OrbitLiteError(f"LITE's chunk_size must be >= 1, got {chunk_size}")
    n = inputs.shape[0]
    if n == 0:
        raise ValueError("lite_forward needs at least one row")
    if not torch.is_grad_enabled():
        return _chunked(fn, inputs, chunk_size)
    if h >= n:
        return _chunked(fn, inputs, chunk_size)
    order = draw_order(n, generator)
    grad_rows, rest = order[:h], order[h:]
    if ahead is not None:
        if not torch.equal(ahead.order, order) or len(ahead.values) != n - h:  # host tensors: no device sync
            raise ValueError("the no-grad rows computed ahead were drawn with another generator state or h")
        rest_out = ahead.values
    else:
        with torch.no_grad():
            rest_out = torch.cat([fn(inputs[rows]) for rows in rest.split(chunk_size)])
    grad_out = fn(inputs[grad_rows])
    # y + (s - 1) * (y - y.detach()): the forward value is y exactly, the gradient is s * dy.
    scale = n / h
    grad_out = grad_out + (scale - 1.0) * (grad_out - grad_out.detach())
    stacked = torch.cat([grad_out, rest_out.to(grad_out.dtype)])
    # non_blocking: a plain .to() of a host tensor would wait for the GPU to finish everything queued before it
    return stacked[torch.argsort(order).to(stacked.device, non_blocking=True)]
