"""What personalizing and recognizing cost, as ORBIT reports it: MACs, parameters and seconds.

MACs come from PyTorch's own :class:`torch.utils.flop_counter.FlopCounterMode` (multiply-accumulates = FLOPs / 2;
it counts convolutions and matrix products, forward and backward, the operations that dominate). The reference
counts with thop and doubles the forward for the backward; here the backward passes that actually
run are counted, so a FineTuner that caches its features pays for one forward per frame, not one per step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch.utils.flop_counter import FlopCounterMode

T = TypeVar("T")


@dataclass(frozen=True)
class Measured:
    """MACs and wall seconds of one call."""

    macs: int
    seconds: float


def measure(fn: Callable[[], T], device: torch.device | None = None) -> tuple[T, Measured]:
    """Run ``fn()`` once, counting its MACs (forward and backward) and timing it (synchronised on CUDA)."""
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    with FlopCounterMode(display=False) as counter:
        out = fn()
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, Measured(int(counter.get_total_flops()) // 2, time.perf_counter() - start)


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def task_parameters(state: tuple[torch.Tensor, ...], tuned: int = 0) -> int:
    """Numbers a personalization adds: the head's state (e.g. a linear head's W and b) and tuned or generated FiLM
    values."""
    return sum(t.numel() for t in state) + tuned
