"""Progress of long work, as typed values: the engine says what it has done, a front end decides how to show it.

Work that reports takes an optional :data:`Progress` callback; with none it makes no report and wraps nothing, so
it runs exactly as before (same calls, same results).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

# What personalization reports, in the order it does it:
#   read    videos decoded into the context set
#   adapt   context frames through the set encoder (learners with FiLM)
#   encode  context frames through the backbone
#   tune    gradient steps (the FineTuners)
KINDS = ("read", "adapt", "encode", "tune")


@dataclass(frozen=True)
class Step:
    """``done`` of ``total`` units of one kind of work (one of :data:`KINDS`); ``done`` 0 says it starts."""

    kind: str
    done: int
    total: int


Progress = Callable[[Step], None]


def counting(
    fn: Callable[[torch.Tensor], torch.Tensor], progress: Progress | None, kind: str, clips: torch.Tensor
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``fn`` over batches of the rows of ``clips`` (``[n, L, 3, S, S]`` or frames ``[n, 3, S, S]``), telling
    ``progress`` after each batch how many of the frames it has done. Says ``done=0`` at once, so a front end knows
    the work began. Without ``progress``: ``fn`` itself, nothing wrapped."""
    if progress is None:
        return fn
    rows, unit = len(clips), int(clips.shape[1]) if clips.dim() == 5 else 1
    done = 0
    progress(Step(kind, 0, rows * unit))

    def counted(batch: torch.Tensor) -> torch.Tensor:
        nonlocal done
        out = fn(batch)
        done += len(batch)
        progress(Step(kind, min(done, rows) * unit, rows * unit))
        return out

    return counted
