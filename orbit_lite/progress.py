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
    fn: Callable[[torch.Tensor], torch.Tensor], progress: Progress, kind: str, rows: int, unit: int
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``fn`` over batches of rows, telling ``progress`` after each batch how many of ``rows`` rows it has done, in
    units of ``unit`` (e.g. frames per clip). Says ``done=0`` at once, so a front end knows the work began."""
    done = 0
    progress(Step(kind, 0, rows * unit))

    def counted(batch: torch.Tensor) -> torch.Tensor:
        nonlocal done
        out = fn(batch)
        done += len(batch)
        progress(Step(kind, min(done, rows) * unit, rows * unit))
        return out

    return counted


def frames_per_clip(clips: torch.Tensor) -> int:
    """L of clips ``[n, L, 3, S, S]``; 1 for single frames ``[n, 3, S, S]``."""
    return int(clips.shape[1]) if clips.dim() == 5 else 1
