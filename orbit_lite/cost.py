"""What personalizing and recognizing cost, as ORBIT reports it: MACs, parameters and seconds.

MACs come from PyTorch's own :class:`torch.utils.flop_counter.FlopCounterMode` (multiply-accumulates = FLOPs / 2;
it counts convolutions and matrix products, forward and backward, the operations that dominate). The reference
counts with thop and doubles the forward for the backward; here the backward passes that actually
run are counted, so a FineTuner that caches its features pays for one forward per frame, not one per step.

:func:`measure` counts and times one call, waiting for the device before and after; evaluation's many query
encodings use :class:`ChunkMacs` (each batch shape counted once) and :class:`DeviceClock` (no wait per call) instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
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


class ChunkMacs:
    """MACs of frame-by-frame encodings in chunks, counted once per distinct chunk shape and then reused.

    Encoding ``M`` frames in chunks of ``c`` runs the network on ``M // c`` chunks of ``c`` frames and one of
    ``M % c``. FlopCounterMode counts convolutions and matrix products from their shapes alone, so a chunk's MACs
    depend only on the network and the shapes it runs on, and a whole encoding's are the sum of its chunks'. Counting
    is a Python dispatch mode around every op: paid once per shape instead of once per video. One instance serves
    one network (one evaluation run's learner); ``key`` tells apart what changes the network's ops (FiLM or not), and
    ``rows`` maps a chunk's frame count to the batch sizes the network really runs on (shape buckets pad a chunk of
    70 frames to 96: every chunk of 65 to 96 frames then costs the same).

    Attributes:
        counted: how many chunks were run under FlopCounterMode (the distinct shapes seen).
    """

    def __init__(self) -> None:
        self._macs: dict[tuple, int] = {}
        self.counted = 0

    def encode(
        self,
        encode: Callable[[torch.Tensor], torch.Tensor],
        frames: torch.Tensor,
        chunk: int,
        key: tuple = (),
        rows: Callable[[int], Hashable] = lambda n: n,
    ) -> tuple[torch.Tensor, int]:
        """``encode(frames)`` (which must encode chunk by chunk, as ``frames.split(chunk)``) and its MACs. A chunk of
        a shape not seen yet is encoded on its own under the counter; the features are the same either way."""
        parts = frames.split(chunk)
        keys = [(key, rows(len(p)), tuple(p.shape[1:]), p.dtype) for p in parts]
        if all(k in self._macs for k in keys):
            out = encode(frames)
        else:
            outs = []
            for part, k in zip(parts, keys, strict=True):
                if k in self._macs:
                    outs.append(encode(part))
                    continue
                with FlopCounterMode(display=False) as counter:
                    outs.append(encode(part))
                self._macs[k] = int(counter.get_total_flops()) // 2
                self.counted += 1
            out = torch.cat(outs)
        return out, sum(self._macs[k] for k in keys)


class DeviceClock:
    """Seconds of several calls on ``device`` without making the host wait for the device after each.

    On the CPU the work is done when the call returns: ``perf_counter`` around it. On CUDA a pair of timing events
    is queued around the call's kernels; the time between them is the device's, from the call's first kernel to its
    last (idle gaps inside the call included, the host's work between calls not), so the seconds mean what a
    synchronised timing of each call would, without draining the queue per call. :meth:`seconds` reads them all
    after one wait for the last event.
    """

    def __init__(self, device: torch.device | None) -> None:
        self._cuda = device is not None and device.type == "cuda"
        self._spans: list = []

    def time(self, fn: Callable[[], T]) -> T:
        if self._cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = fn()
            end.record()
            self._spans.append((start, end))
            return out
        begin = time.perf_counter()
        out = fn()
        self._spans.append(time.perf_counter() - begin)
        return out

    def seconds(self) -> list[float]:
        """Each timed call's seconds, in order (on CUDA: waits once, for the last call's kernels)."""
        if not self._cuda:
            return list(self._spans)
        if self._spans:
            self._spans[-1][1].synchronize()
        return [start.elapsed_time(end) / 1000 for start, end in self._spans]


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def task_parameters(state: tuple[torch.Tensor, ...], tuned: int = 0) -> int:
    """Numbers a personalization adds: the head's state (e.g. a linear head's W and b) and tuned or generated FiLM
    values."""
    return sum(t.numel() for t in state) + tuned
