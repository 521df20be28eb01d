"""A shape discipline for network calls: batches padded up to a few fixed sizes ("buckets").

On a GPU every new input shape costs cuDNN (and torch.compile) a fresh set-up: algorithm search, workspace sizing,
kernel selection. ORBIT tasks differ in size from one to the next (N context clips, Q queries, chunk remainders,
video lengths), so without a discipline that set-up is paid on nearly every call and dominates training time. With
it, the backbone and the set encoder only ever see batch sizes from :meth:`Buckets.sizes`: powers of two up to
``step`` (small batches such as LITE's H rows stay cheap) and multiples of ``step`` above it up to ``largest``;
a longer batch is cut into ``largest``-sized pieces. The padding is zeros, its outputs are dropped, and because
every network we pad treats rows independently (BatchNorm uses running statistics, GroupNorm is per-frame, dropout
is off), the real rows' outputs are unchanged and no gradient comes from the padded ones.

On the CPU there is no per-shape set-up to save and padding is wasted work, so ``mode="auto"`` pads only on CUDA and
MPS. ``run_bucketed`` is the one place that pads; the backbone and the set encoder both go through it.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from orbit_lite.errors import OrbitLiteError

if TYPE_CHECKING:  # config.py validates Buckets at parse time: the command line must not wait for torch
    import torch

MODES = ("auto", "on", "off")
_PADDED_DEVICES = ("cuda", "mps")  # where each new shape has a real set-up cost


@dataclass(frozen=True)
class Buckets:
    """Which batch sizes a network call may see.

    Args:
        mode: "auto" (pad on CUDA and MPS only), "on" (always) or "off" (never).
        step: powers of two up to ``step``, then multiples of ``step``.
        largest: the largest batch; longer inputs are split into pieces of this size.
    """

    mode: str = "auto"
    step: int = 32
    largest: int = 256

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise OrbitLiteError(f"shape buckets mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.step < 1 or self.step & (self.step - 1):
            raise OrbitLiteError(f"lite.bucket_step must be a power of two >= 1, got {self.step}")
        if self.largest < self.step or self.largest % self.step:
            raise OrbitLiteError(
                f"lite.bucket_largest must be a multiple of lite.bucket_step ({self.step}), got {self.largest}"
            )

    @functools.cached_property
    def sizes(self) -> tuple[int, ...]:
        powers = [1 << i for i in range(self.step.bit_length()) if (1 << i) < self.step]
        return (*powers, *range(self.step, self.largest + 1, self.step))

    def bucket(self, n: int) -> int:
        """The smallest bucket that holds ``n`` rows (``1 <= n <= largest``)."""
        if not 1 <= n <= self.largest:
            raise ValueError(f"a bucket holds 1..{self.largest} rows, got {n}")
        return self.sizes[bisect.bisect_left(self.sizes, n)]

    def active(self, device: torch.device) -> bool:
        return self.mode == "on" or (self.mode == "auto" and device.type in _PADDED_DEVICES)

    def seen(self, n: int, device: torch.device) -> tuple[int, ...]:
        """The batch sizes :func:`run_bucketed` runs its network on for ``n`` rows on ``device``."""
        if not self.active(device) or n == 0:
            return (n,)
        full, rest = divmod(n, self.largest)
        return (self.largest,) * full + ((self.bucket(rest),) if rest else ())


def pad_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    """``x`` with zero rows appended up to ``rows``, in ``x``'s memory format (channels-last stays channels-last)."""
    import torch

    n = x.shape[0]
    if rows == n:
        return x
    channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    padded = torch.empty((rows, *x.shape[1:]), dtype=x.dtype, device=x.device, memory_format=fmt)
    padded[:n] = x
    padded[n:] = 0
    return padded


def run_bucketed(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, buckets: Buckets, device: torch.device
) -> torch.Tensor:
    """``fn(x)`` on bucket-sized batches (when ``buckets`` is active on ``device``); rows must be independent."""
    import torch

    if not buckets.active(device) or x.shape[0] == 0:
        return fn(x)
    outputs = []
    for piece in x.split(buckets.largest):
        n = piece.shape[0]
        outputs.append(fn(pad_rows(piece, buckets.bucket(n)))[:n])
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs)
