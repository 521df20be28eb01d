"""Meta-training: user-centric tasks, LITE steps, gradient accumulation, validation, checkpoints and exact resume.

Everything random is keyed: task (epoch, item) is drawn with generator ``[seed, epoch, item]`` and its LITE subsets
with a torch generator seeded from the same key, so a run resumed from a checkpoint (saved at an optimizer-step
boundary) continues exactly as if it had never stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from orbit_lite import runtime
from orbit_lite.checkpoint import load_checkpoint, save_checkpoint
from orbit_lite.config import Config, from_dict, to_dict
from orbit_lite.data.layout import DatasetIndex, index_benchmark
from orbit_lite.data.loader import UserTaskDataset, task_loader
from orbit_lite.engine import distributed
from orbit_lite.engine.distributed import Dist
from orbit_lite.engine.schedule import build_optimizer, learning_rate, set_lr
from orbit_lite.engine.validate import validate
from orbit_lite.errors import OrbitLiteError
from orbit_lite.learners import FewShotLearner, create_learner
from orbit_lite.learners.base import TaskStats, read_stats
from orbit_lite.outputs import RUN_MARKER, check_run_out, mark_run, new_id, run_id_of
from orbit_lite.publish import atomic_write_bytes, atomic_write_text
from orbit_lite.replace_run import old_run, replacing
from orbit_lite.results import TrainProgress
from orbit_lite.runtime import select_device
from orbit_lite.visual import tensorboard
from orbit_lite.visual.curves import plot_curves, read_records

log = logging.getLogger(__name__)


class Monitor:
    """Receives progress from the loop (the CLI draws it; the default does nothing)."""

    def model_ready(self, learner: FewShotLearner) -> None: ...  # built, on its device, before any warm-up

    def start_epoch(self, epoch: int, epochs: int, tasks: int) -> None: ...

    def task_done(self, loss: float, accuracy: float, memory_mb: float) -> None: ...

    def end_epoch(self, record: dict[str, Any]) -> None: ...


@dataclass
class TrainReport:
    run_dir: Path
    epochs: int
    steps: int
    best: float | None
    last_validation: dict[str, float] | None


def _task_generator(seed: int, key: tuple[int, int]) -> torch.Generator:
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, *key]).generate_state(1)[0]))


def load_init_weights(learner: FewShotLearner, path: Path) -> None:
    """Start from another run's (or an imported) training checkpoint: its weights only, a fresh optimizer."""
    record = load_checkpoint(path, "training")
    try:
        learner.load_state_dict(record["model"])
    except (KeyError, RuntimeError) as e:
        saved = record.get("config", {}).get("model", {})
        settings = " ".join(f"model.{k}={saved[k]}" for k in ("learner", "backbone", "head", "style") if k in saved)
        raise OrbitLiteError(
            f"train.init={path} does not fit the configured model ({str(e).splitlines()[0][:160]}); fix: set the "
            f"model it was built with: {settings or 'its own config'}"
        ) from None
    log.info("starting from the weights of %s", path)


def _check_resumable(saved: Config, cfg: Config, path: Path) -> dict[str, dict[str, Any]]:
    """Refuse another model; return the other settings that changed, ``{"train.epochs": {"was": 1, "now": 2}}``."""
    if saved.model != cfg.model:
        a, b = to_dict(saved.model), to_dict(cfg.model)
        key = next(k for k in a if a[k] != b[k])
        raise OrbitLiteError(
            f"{path} holds a different model (model.{key}={a[key]!r}, the config says {b[key]!r}); "
            "resume with the run's own config or start a new --out"
        )
    changed = {
        f"{s}.{k}": {"was": to_dict(getattr(saved, s))[k], "now": v}
        for s in ("data", "train_sampling", "test_sampling", "lite", "train")
        for k, v in to_dict(getattr(cfg, s)).items()
        if to_dict(getattr(saved, s))[k] != v
    }
    if changed:
        log.warning("resuming with changed settings: %s", ", ".join(changed))
    return changed


class _Run:
    """The run directory: resolved config, metrics.jsonl, checkpoints/last.pt and best.pt."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir
        self.last = run_dir / "checkpoints" / "last.pt"
        self.best = run_dir / "checkpoints" / "best.pt"
        self.metrics = run_dir / "metrics.jsonl"
        self.id = ""  # the run's id, also in its marker and its checkpoints: the proof that they belong together
        self.replaces: str | None = None  # with --overwrite: the id of the earlier run in the folder, replaced
        self.curves = run_dir / "curves.png"
        self.tensorboard: tensorboard.TensorBoardLog | None = None
        self._lines = b""  # metrics.jsonl's content as last written

    def log(self, record: dict[str, Any]) -> None:
        # Rewritten whole and renamed into place, never appended: a copy of the run made with hard links (cp -al,
        # rsync --link-dest, snapshots) shares the file's inode, and an append would change the copy too.
        self._lines += (json.dumps(record) + "\n").encode()
        atomic_write_bytes(self.metrics, self._lines)
        if self.tensorboard is not None:
            self.tensorboard.write(record)

    def draw_curves(self) -> None:
        """curves.png from the whole metrics.jsonl; a failure to draw is a warning, never the end of a run."""
        try:
            plot_curves(read_records(self.metrics), self.curves)
        except Exception as e:  # matplotlib, fonts, a full disk: the run's real outputs are the checkpoints
            log.warning("could not draw %s: %s", self.curves, e)

    def truncate_metrics(self, size: int) -> None:
        """Keep metrics.jsonl's first ``size`` bytes (the lines up to the checkpoint), as a new file."""
        self._lines = self.metrics.read_bytes()[:size] if self.metrics.exists() else b""
        atomic_write_bytes(self.metrics, self._lines)

    def metrics_size(self) -> int:
        return len(self._lines)


def _prepare(cfg: Config, data_root: Path, run: _Run, resume: bool) -> tuple[DatasetIndex, dict[str, Any] | None]:
    """Check --out before any work: only a run orbit-lite marked as its own is resumed or started again."""
    record = None
    if resume and run.dir.is_dir() and run_id_of(run.dir) is None and run.last.is_file():
        raise OrbitLiteError(
            f"{run.dir} has no {RUN_MARKER} marker (a run of an older orbit-lite, or not "
            "orbit-lite's), so it is not resumed; to go on from its weights, start a new run with "
            f"--out NEW --set train.init={run.last}"
        )
    owned = check_run_out(run.dir)  # the run's id when it is a marked run; refuses any other non-empty folder
    if resume:
        if owned is None or not run.last.exists():
            raise OrbitLiteError(f"{run.dir}: nothing to resume (no checkpoints/last.pt); drop --resume to start")
        record = load_checkpoint(run.last, "training")
        if record.get("run_id") != owned:
            raise OrbitLiteError(
                f"{run.last} was not written by the run marked in {run.dir / RUN_MARKER}; it is not "
                "resumed: start a new run with --out NEW"
            )
        record["changed"] = _check_resumable(from_dict(Config, record["config"]), cfg, run.last)
    elif run.last.exists() and run.replaces is None:
        raise OrbitLiteError(f"{run.dir} already holds a training run; pass --resume to continue it or use a new --out")
    run.id = (None if run.replaces else owned) or new_id()  # a replacing run has its own id: old files never pass
    index = index_benchmark(data_root)
    if not index.splits.get("train"):
        raise OrbitLiteError(f"{index.root}: no training users under train/; meta-training needs them")
    return index, record


class _Loop:
    """The state of one training run: networks, optimizer, counters, where it writes, and its rank in the job."""

    def __init__(
        self, cfg: Config, run: _Run, index: DatasetIndex, record: dict | None, monitor: Monitor, dist: Dist
    ) -> None:
        self.cfg, self.run, self.monitor, self.dist = cfg, run, monitor, dist
        tc = cfg.train
        self.device = distributed.setup(dist, select_device(tc.device))
        torch.manual_seed(tc.seed)
        model = cfg.model
        if tc.init and record is None:  # the init checkpoint brings every weight: nothing to download
            model = dataclasses.replace(model, weights="none")
        self.learner = create_learner(model, cfg.data.frame_size, bf16=tc.bf16, buckets=runtime.buckets_of(cfg.lite))
        self.learner.to(self.device)
        if tc.init and record is None:
            load_init_weights(self.learner, Path(tc.init))
        self.runtime = runtime.prepare(self.learner, cfg, self.device)  # buckets, channels-last, cuDNN, compile, ...
        self.optimizer = build_optimizer(self.learner, tc, fused=self.runtime.fused_adam)
        self.progress = TrainProgress()
        if record is not None:
            self.learner.load_state_dict(record["model"])
            self.optimizer.load_state_dict(record["optimizer"])
            self.progress = TrainProgress.from_json(record["progress"])
        distributed.broadcast_parameters(self.learner, dist)
        self.dataset = UserTaskDataset(
            index.users("train"),
            cfg.train_sampling,
            cfg.data,
            train=True,
            tasks_per_user=tc.tasks_per_user,
            seed=tc.seed,
        )
        self.loader = task_loader(
            self.dataset,
            shuffle=True,
            num_workers=cfg.data.num_workers,
            seed=tc.seed,
            rank=dist.rank,
            world=dist.world,
            group=tc.tasks_per_batch,
            pin_memory=self.runtime.pin_memory,
        )
        self.val_users = index.splits.get("validation", ())
        if not self.val_users and dist.main:
            log.warning("no validation users in %s: best.pt will follow the last epoch", index.root)
        monitor.model_ready(self.learner)  # before the warm-up, which counts in the time to the first task
        if self.runtime.warmup:
            runtime.warm_up(self.learner, cfg.lite)

    def save(self, path: Path) -> None:
        if not self.dist.main:  # one writer: rank 0
            return
        self.progress = dataclasses.replace(self.progress, metrics_bytes=self.run.metrics_size())
        payload = {
            "config": to_dict(self.cfg),
            "model": self.learner.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "progress": self.progress.to_json(),
            "run_id": self.run.id,
        }
        save_checkpoint(path, payload, "training")

    def log(self, record: dict[str, Any]) -> None:
        if self.dist.main:
            self.run.log(record)

    def step(self, epoch: int, group: int, window: list, done: list[TaskStats], started: float) -> None:
        """All-reduce the accumulated gradients, take one optimizer step, log and checkpoint when due."""
        tc = self.cfg.train
        distributed.all_reduce_gradients(self.learner.parameters(), self.dist)
        if tc.grad_clip > 0:
            params = [p for p in self.learner.parameters() if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        # The step's losses are read once, after the step is queued: each read of a device value waits for the GPU.
        memory = runtime.memory_mb(self.device)
        for loss, accuracy in read_stats(done):
            window.append((loss, accuracy))
            self.monitor.task_done(loss, accuracy, memory)
        p = self.progress
        self.progress = dataclasses.replace(p, step=p.step + 1, position=p.position + group)
        last_of_epoch = self.progress.position >= len(self.dataset)
        if self.progress.step % tc.log_every == 0 or last_of_epoch:
            sums = [sum(w[0] for w in window), sum(w[1] for w in window), float(len(window))]
            loss, accuracy, tasks = distributed.all_sum(sums, self.dist, self.device)  # every rank's tasks
            if tasks:
                seconds = max(time.perf_counter() - started, 1e-9)
                lr = self.optimizer.param_groups[0]["lr"]
                self.log(
                    {
                        "type": "train",
                        "epoch": epoch,
                        "step": self.progress.step,
                        "tasks": int(tasks),
                        "loss": loss / tasks,
                        "accuracy": accuracy / tasks,
                        "lr": lr,
                        "tasks_per_s": tasks / seconds,
                        "memory_mb": round(runtime.memory_mb(self.device), 1),
                    }
                )
            window.clear()
        if tc.checkpoint_every and self.progress.step % tc.checkpoint_every == 0 and not last_of_epoch:
            self.save(self.run.last)  # at a step boundary nothing is pending: a resume from here is exact

    def epoch(self, epoch: int) -> None:
        tc, learner = self.cfg.train, self.learner
        set_lr(self.optimizer, learning_rate(epoch, tc))
        sampler = self.loader.sampler
        sampler.set_epoch(epoch, self.progress.position)
        self.monitor.start_epoch(epoch, tc.epochs, len(sampler))
        tasks = iter(self.loader)
        window: list[tuple[float, float]] = []
        started = time.perf_counter()
        for group, mine in sampler.groups():  # one optimizer step per group of tasks, dealt out across ranks
            drawn = [task for task in (next(tasks) for _ in range(mine)) if task is not None]
            gens = [_task_generator(tc.seed, task.key) for task in drawn]
            ahead = [None] * len(drawn)  # or the step's no-grad context rows, forwarded in full batches (same values)
            if self.runtime.batch_context:
                ahead = learner.no_grad_rows_ahead([task.context_clips for task in drawn], self.cfg.lite, gens)
            done = [
                learner.train_task(
                    task.context_clips,
                    task.context_labels,
                    task.target_clips,
                    task.target_labels,
                    task.way,
                    self.cfg.lite,
                    gen,
                    loss_weight=1.0 / tc.tasks_per_batch,
                    ahead=rows,
                )
                for task, gen, rows in zip(drawn, gens, ahead, strict=True)
            ]
            logged_before = len(window) + len(done)
            self.step(epoch, group, window, done, started)
            if logged_before and not window:
                started = time.perf_counter()
        self.progress = dataclasses.replace(self.progress, epoch=epoch + 1, position=0)

    def validate_and_save(self, epoch: int) -> dict[str, Any]:
        tc = self.cfg.train
        spread = distributed.replica_spread(self.learner.parameters(), self.dist, self.device)
        record: dict[str, Any] = {"type": "epoch", "epoch": epoch, "step": self.progress.step}
        if self.dist.active:
            record["replica_spread"] = spread  # 0.0: every rank holds the same weights
        due = self.val_users and ((epoch + 1) % tc.val_every == 0 or epoch + 1 == tc.epochs)
        if due and self.dist.main:  # validation is small: rank 0 runs it while the others wait
            result = validate(
                self.learner,
                self.val_users,
                self.cfg.test_sampling,
                self.cfg.data,
                self.cfg.lite,
                tc.val_tasks_per_user,
                tc.seed + 1,
            )
            record.update(result)
            score = result["frame_accuracy"]
            if math.isfinite(score) and (self.progress.best is None or score > self.progress.best):
                self.progress = dataclasses.replace(self.progress, best=score)
                self.save(self.run.best)
        elif not self.val_users:
            self.save(self.run.best)
        self.log({**record, "type": "validation"} if "frame_accuracy" in record else record)
        if self.dist.main:
            self.run.draw_curves()
        self.save(self.run.last)
        distributed.barrier(self.dist)
        return record


def train(
    cfg: Config,
    data_root: Path | str,
    run_dir: Path | str,
    resume: bool = False,
    monitor: Monitor | None = None,
    dist: Dist | None = None,
    overwrite: bool = False,
) -> TrainReport:
    """Meta-train ``cfg.model`` on the training users of ``data_root``, validating on its validation users.

    With ``dist`` (from torchrun), tasks are dealt out across the ranks and only rank 0 writes. ``overwrite``: see
    ``orbit_lite.replace_run``.
    """
    monitor = monitor or Monitor()
    dist = dist or Dist()
    run = _Run(Path(run_dir))
    run.replaces = old_run(run.dir, resume) if overwrite else None  # anything else refused, even with --overwrite
    index, record = _prepare(cfg, Path(data_root), run, resume)
    events = tensorboard.wanted(cfg.train.tensorboard)  # "on" without the package: an error before any work
    loop = _Loop(cfg, run, index, record, monitor, dist)  # builds the model: a bad setting fails before any write
    # with --overwrite, the old run is moved aside just before the first write; put back if this run fails
    with replacing(run.dir, run.replaces, run.id) if dist.main else contextlib.nullcontext():
        if dist.main:
            if record is None:
                mark_run(run.dir, run.id)  # first: every later file is then in a folder proven to be this run's
            run.truncate_metrics(record["progress"]["metrics_bytes"] if record else 0)  # lines past the checkpoint
            if record is None:
                atomic_write_text(run.dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
            elif record["changed"]:  # config.yaml keeps what the run started with; the change is logged here
                at = {k: record["progress"][k] for k in ("epoch", "step")}
                run.log({"type": "resume", **at, "changed": record["changed"]})
            if events:
                run.tensorboard = tensorboard.TensorBoardLog(run.dir, record["progress"]["step"] if record else None)
        loop.learner.train()
        validation = None
        try:
            for epoch in range(loop.progress.epoch, cfg.train.epochs):
                loop.epoch(epoch)
                record_epoch = loop.validate_and_save(epoch)
                keys = ("frame_accuracy", "ci95", "videos", "chance")
                validation = {k: record_epoch[k] for k in keys if k in record_epoch} or validation
                monitor.end_epoch(record_epoch)
            if cfg.train.epochs == 0 and record is None:  # nothing to meta-train: the learner as built is the result
                loop.save(run.best)
                loop.save(run.last)
        finally:
            if run.tensorboard is not None:
                run.tensorboard.close()
            distributed.teardown(dist)
    return TrainReport(run.dir, cfg.train.epochs, loop.progress.step, loop.progress.best, validation or None)
