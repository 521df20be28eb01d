"""No-grad network calls replayed from CUDA graphs: one graph per input shape, which the shape buckets keep few.

A GPU forward of a small network at a small batch is bound by the host launching hundreds of kernels one by one. A
CUDA graph records the launches once and replays them in one call. Only calls without a graph (no autograd), without
FiLM and on CUDA are replayed; everything else runs eagerly. Each graph has its own input and output buffers: the
input is copied in, the graph replayed, the output copied out (the next replay of any graph may overwrite it, as all
graphs share one memory pool).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

Forward = Callable[[torch.Tensor, Any], torch.Tensor]


class GraphedForward:
    """``fn(frames, film)`` with no-grad, FiLM-free CUDA calls replayed from a graph captured on first sight of a shape.

    Args:
        fn: the eager forward, ``(frames [B, 3, S, S], film or None) -> features [B, D]``.
        warmup: eager runs on a side stream before a capture (cuDNN picks its algorithms there, not in the graph).
    """

    def __init__(self, fn: Forward, warmup: int = 2) -> None:
        self.fn = fn
        self.warmup = warmup
        self.graphs: dict[tuple, tuple[torch.Tensor, torch.Tensor, torch.cuda.CUDAGraph]] = {}
        self._pool: Any = None

    def __call__(self, frames: torch.Tensor, film: Any = None) -> torch.Tensor:
        if film or torch.is_grad_enabled() or frames.device.type != "cuda":
            return self.fn(frames, film)
        autocast = torch.is_autocast_enabled("cuda")
        dtype = torch.get_autocast_dtype("cuda") if autocast else None
        key = (tuple(frames.shape), frames.stride(), frames.dtype, dtype)
        if key not in self.graphs:
            self.graphs[key] = self._capture(frames, dtype)
        static_in, static_out, graph = self.graphs[key]
        static_in.copy_(frames)
        graph.replay()
        return static_out.clone()

    def _capture(self, frames: torch.Tensor, dtype: torch.dtype | None) -> tuple:
        # autocast's cache of cast weights must stay out of a capture: its tensors would outlive the graph's memory
        cast = torch.autocast("cuda", dtype=dtype or torch.bfloat16, enabled=dtype is not None, cache_enabled=False)
        static_in = frames.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), cast:
            for _ in range(self.warmup):
                self.fn(static_in, None)
        torch.cuda.current_stream().wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool), cast:
            static_out = self.fn(static_in, None)
        return static_in, static_out, graph
