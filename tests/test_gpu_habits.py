"""The GPU habits that a CPU can check: each new path gives the old path's values (fp32, within 1e-6), the training
loop's host-device syncs are pinned, and the CUDA-only habits are refused or left off where there is no CUDA."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from orbit_lite import runtime
from orbit_lite.checkpoint import load_checkpoint
from orbit_lite.config import Config, LiteConfig, ModelConfig, TrainConfig, from_dict
from orbit_lite.engine.schedule import build_optimizer
from orbit_lite.engine.train import Monitor, train
from orbit_lite.errors import OrbitLiteError
from orbit_lite.learners import create_learner
from orbit_lite.lite import NoGradRows
from orbit_lite.profiling import SyncCounter
from tests.conftest import TINY_RECIPE

CPU = torch.device("cpu")
SIZE = 16  # tiny_cnn's smallest frames: these tests check values, not speed


def _learner(name: str = "protonets", seed: int = 0, lite: LiteConfig | None = None):
    torch.manual_seed(seed)
    model = ModelConfig(learner=name, backbone="tiny_cnn", weights="none")
    return create_learner(model, SIZE, buckets=runtime.buckets_of(lite or LiteConfig()))


def _tasks(count: int, seed: int = 0) -> list[tuple]:
    g = torch.Generator().manual_seed(seed)
    tasks = []
    for i in range(count):
        way, n, q = 3, 9 + 5 * i, 4 + i  # contexts of different sizes: batches cross task boundaries
        context = torch.randint(0, 256, (n, 1, 3, SIZE, SIZE), dtype=torch.uint8, generator=g)
        labels = torch.cat([torch.arange(way), torch.randint(0, way, (n - way,), generator=g)])
        query = torch.randint(0, 256, (q, 1, 3, SIZE, SIZE), dtype=torch.uint8, generator=g)
        tasks.append((context, labels, query, torch.randint(0, way, (q,), generator=g), way))
    return tasks


def _grads(learner) -> list[torch.Tensor]:
    return [p.grad.clone() for p in learner.parameters() if p.grad is not None]


def test_batched_context_rows_give_the_per_task_values_and_gradients() -> None:
    lite = LiteConfig(h=3, chunk_size=8, query_chunk=4)
    tasks = _tasks(3)
    old, new = _learner(), _learner()
    stats_old = [old.train_task(*t, lite, torch.Generator().manual_seed(i)) for i, t in enumerate(tasks)]
    gens = [torch.Generator().manual_seed(i) for i in range(len(tasks))]
    calls: list[int] = []
    new.backbone.net.register_forward_pre_hook(lambda _m, a: calls.append(a[0].shape[0]))
    ahead = new.no_grad_rows_ahead([t[0] for t in tasks], lite, gens)
    assert sum(calls) == sum(len(t[0]) - lite.h for t in tasks) and calls[:-1] == [8] * (len(calls) - 1)  # full
    stats_new = [new.train_task(*t, lite, g, ahead=a) for t, g, a in zip(tasks, gens, ahead, strict=True)]
    for a, b in zip(stats_old, stats_new, strict=True):
        assert b.loss == pytest.approx(a.loss, abs=1e-6) and b.accuracy == a.accuracy
    for a, b in zip(_grads(old), _grads(new), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-6)


def test_rows_ahead_must_come_from_the_same_draw() -> None:
    learner, lite = _learner(), LiteConfig(h=3, chunk_size=8, query_chunk=4)
    task = _tasks(1)[0]
    (ahead,) = learner.no_grad_rows_ahead([task[0]], lite, [torch.Generator().manual_seed(0)])
    assert isinstance(ahead, NoGradRows)
    with pytest.raises(ValueError, match="another generator state"):
        learner.train_task(*task, lite, torch.Generator().manual_seed(1), ahead=ahead)


def test_film_learners_forward_their_own_context() -> None:
    learner = _learner("simple_cnaps")
    assert learner.no_grad_rows_ahead([_tasks(1)[0][0]], LiteConfig(h=3), [None]) == [None]


class _CountSyncs(Monitor):
    """Counts the host-device syncs from the first task to the last one of the epoch (its optimizer steps included)."""

    def __init__(self) -> None:
        self.counter: SyncCounter | None = None
        self.left = 0

    def model_ready(self, learner) -> None:
        self.learner = learner

    def start_epoch(self, epoch: int, epochs: int, tasks: int) -> None:
        self.counter, self.left, self.tasks = SyncCounter([*self.learner.parameters()], CPU), tasks, tasks
        self.counter.__enter__()

    def task_done(self, loss: float, accuracy: float, memory_mb: float) -> None:
        self.left -= 1
        if self.left == 0:
            self.counter.__exit__(None, None, None)


def test_training_reads_the_device_once_per_optimizer_step(tiny_frames: Path, tiny_checkpoint: Path, tmp_path: Path):
    """A new ``.item()``, ``float(loss)`` or ``nonzero`` in the training loop breaks this. The run batches its context
    rows, and ends with the weights of the same run without (``tiny_checkpoint``: one epoch, per-task forwards)."""
    monitor = _CountSyncs()
    recipe = {**TINY_RECIPE, "train": {**TINY_RECIPE["train"], "epochs": 1, "batch_context": "on"}}
    train(from_dict(Config, recipe), tiny_frames, tmp_path / "run", monitor=monitor)
    steps = -(-monitor.tasks // TINY_RECIPE["train"]["tasks_per_batch"])
    assert monitor.tasks >= 4 and dict(monitor.counter.counts) == {"tolist": steps}  # read_stats, once per step
    batched = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt", "training")["model"]
    for key, value in load_checkpoint(tiny_checkpoint, "training")["model"].items():
        torch.testing.assert_close(batched[key], value, rtol=1e-6, atol=1e-6)


def test_sync_counter_counts_reads_of_device_tensors_only() -> None:
    weight = torch.nn.Parameter(torch.ones(3))
    labels = torch.tensor([0, 1, 2])  # from the loader: on the host
    with SyncCounter([weight], CPU) as counter:
        loss = (weight * 2).sum()
        float(loss), labels.max().item(), weight[weight > 0], loss.detach().tolist()
        moved = labels.to(CPU)  # .to(device): on the device from here on
        int(moved.max())
    assert dict(counter.counts) == {"__float__": 1, "boolean index": 1, "tolist": 1, "__int__": 1}


def test_fused_adam_takes_the_same_steps() -> None:
    cfg = TrainConfig(lr=1e-2, weight_decay=0.2)
    plain, fused = _learner(), _learner()
    optimizers = [build_optimizer(plain, cfg), build_optimizer(fused, cfg, fused=True)]
    assert optimizers[1].defaults["fused"]
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        grads = [torch.randn(p.shape, generator=g) for p in plain.parameters() if p.requires_grad]
        for learner, optimizer in zip((plain, fused), optimizers, strict=True):
            for p, grad in zip([p for p in learner.parameters() if p.requires_grad], grads, strict=True):
                p.grad = grad.clone()
            optimizer.step()
    for a, b in zip(plain.parameters(), fused.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-6)


def test_warm_up_runs_every_bucket_and_leaves_the_learner_as_it_was() -> None:
    lite = LiteConfig(h=2, chunk_size=16, query_chunk=8, buckets="on", bucket_step=8, bucket_largest=16)
    learner = _learner(lite=lite)
    ran = runtime.prepare_backbone(learner.backbone, CPU, TrainConfig(warmup="on"))
    assert ran.warmup
    before = {k: v.clone() for k, v in learner.state_dict().items()}
    seen: set[tuple[int, bool]] = set()
    learner.backbone.net.register_forward_pre_hook(lambda _m, a: seen.add((a[0].shape[0], torch.is_grad_enabled())))
    runtime.warm_up(learner, lite)
    sizes = learner.backbone.buckets.sizes
    assert seen == {(n, False) for n in sizes} | {(n, True) for n in sizes if n <= 8}  # graphs up to query_chunk
    assert all(p.grad is None for p in learner.parameters())
    for key, value in learner.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_cuda_only_habits_stay_off_on_the_cpu() -> None:
    learner = _learner()
    ran = runtime.prepare_backbone(learner.backbone, CPU, TrainConfig())
    assert not (ran.tf32 or ran.cuda_graphs or ran.batch_context or ran.warmup or ran.fused_adam)  # auto: CUDA only
    with pytest.raises(OrbitLiteError, match=r"train\.cuda_graphs=on needs a CUDA device"):
        runtime.prepare_backbone(learner.backbone, CPU, TrainConfig(cuda_graphs="on"))
