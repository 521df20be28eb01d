"""Data-parallel training and sharded evaluation over torch.distributed (launched with ``torchrun``).

Every rank holds the whole model. A training step's tasks are dealt out across the ranks; each rank accumulates its
tasks' gradients, and one all-reduce (a sum over ranks: the loss is already weighted by the *global* tasks per
step) per optimizer step makes every replica's gradient the one a single process would have accumulated over the
same tasks. The all-reduce is done here rather than by ``DistributedDataParallel``'s hooks because a LITE task runs
several backward passes (one per query chunk, then one through the support path); DDP would synchronize on each.
Evaluation deals out users and gathers their results on rank 0. nccl on GPUs, gloo on CPUs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from orbit_lite.errors import OrbitLiteError


@dataclass(frozen=True)
class Dist:
    """This process's place in the job. The defaults are a single process."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def from_env(env: Mapping[str, str]) -> Dist:
    """The job layout torchrun publishes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); one process without them."""
    try:
        return Dist(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))
    except ValueError:
        raise OrbitLiteError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (they are set by torchrun)") from None


def setup(d: Dist, device: torch.device) -> torch.device:
    """Join the process group (when there is one) and return this rank's device."""
    if not d.active:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", d.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=d.rank, world_size=d.world)
    return device


def teardown(d: Dist) -> None:
    if d.active and dist.is_initialized():
        dist.destroy_process_group()


def barrier(d: Dist) -> None:
    if d.active:
        dist.barrier()


def all_reduce_gradients(parameters: Iterable[torch.nn.Parameter], d: Dist) -> None:
    """Sum every trainable parameter's gradient over the ranks, in one flat message (a missing gradient is zero)."""
    if not d.active:
        return
    params = [p for p in parameters if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def all_sum(values: list[float], d: Dist, device: torch.device) -> list[float]:
    """Element-wise sum of small lists of numbers over the ranks."""
    if not d.active:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def replica_spread(parameters: Iterable[torch.nn.Parameter], d: Dist, device: torch.device) -> float:
    """The largest difference between ranks of three fingerprints of the weights (0.0 when the replicas agree)."""
    if not d.active:
        return 0.0
    flat = torch.cat([p.detach().reshape(-1).double() for p in parameters])
    ramp = torch.linspace(-1, 1, flat.numel(), dtype=torch.float64, device=flat.device)
    prints = torch.stack([flat.sum(), flat.abs().sum(), (flat * ramp).sum()]).to(device)
    gathered = [torch.zeros_like(prints) for _ in range(d.world)]
    dist.all_gather(gathered, prints)
    stacked = torch.stack(gathered)
    return float((stacked - stacked[0]).abs().max())


def broadcast_parameters(module: torch.nn.Module, d: Dist) -> None:
    """Start every replica from rank 0's weights."""
    if d.active:
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)


def gather_to_main(obj: Any, d: Dist) -> list[Any] | None:
    """Every rank's ``obj``, on rank 0 (None elsewhere)."""
    if not d.active:
        return [obj]
    out: list[Any] | None = [None] * d.world if d.main else None
    dist.gather_object(obj, out, dst=0)
    return out
