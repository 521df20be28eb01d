"""What ``orbit-lite train`` draws while it runs (apart from train.py, which the command line loads without torch)."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import Progress

from orbit_lite.cli.common import Heartbeat
from orbit_lite.engine.train import Monitor


class RichMonitor(Monitor):
    """A progress bar per epoch with tasks/s, running loss and memory; a line per finished epoch."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.bar: Any = None
        self.loss = self.accuracy = float("nan")
        self.started = time.perf_counter()
        self.done = 0

    def start_epoch(self, epoch: int, epochs: int, tasks: int) -> None:
        if self.bar is not None:
            self.progress.remove_task(self.bar)
        self.bar = self.progress.add_task(f"epoch {epoch + 1}/{epochs}", total=tasks, info="")
        self.started, self.done, self.loss = time.perf_counter(), 0, float("nan")

    def task_done(self, loss: float, accuracy: float, memory_mb: float) -> None:
        self.done += 1
        smooth = 0.9 if self.done > 1 else 0.0  # exponential moving average for a readable display
        self.loss = loss if self.done == 1 else smooth * self.loss + (1 - smooth) * loss
        self.accuracy = accuracy if self.done == 1 else smooth * self.accuracy + (1 - smooth) * accuracy
        rate = self.done / max(time.perf_counter() - self.started, 1e-9)
        info = f"{rate:.2f} tasks/s  loss {self.loss:.3f}  acc {self.accuracy:.1%}  mem {memory_mb:,.0f} MB"
        self.progress.update(self.bar, advance=1, info=info)

    def end_epoch(self, record: dict[str, Any]) -> None:
        self.progress.console.print(epoch_line(record), highlight=False)


class LineMonitor(Monitor):
    """Off a terminal (a log file, a pipe, ``make``): a progress line at least every ``every`` seconds with the
    tasks done, the time elapsed and an estimate of the time left for the whole run, and a line per epoch."""

    def __init__(self, console: Console, every: float | None = None) -> None:
        self.console, self.every = console, every
        self.beat: Heartbeat | None = None
        self.loss = float("nan")

    def start_epoch(self, epoch: int, epochs: int, tasks: int) -> None:
        if self.beat is None:  # the first epoch of this process (a resumed run starts later): the run's total
            self.beat = Heartbeat("training", (epochs - epoch) * tasks, self.every, self.console).__enter__()
        self.beat.description = f"training, epoch {epoch + 1}/{epochs}"

    def task_done(self, loss: float, accuracy: float, memory_mb: float) -> None:
        if self.beat is not None:
            self.beat.advance()
            if self.beat.total and self.beat.done >= self.beat.total:
                self.beat.description = "training done, validating"

    def end_epoch(self, record: dict[str, Any]) -> None:
        self.console.print(epoch_line(record), highlight=False, markup=False)

    def close(self) -> None:
        if self.beat is not None:
            self.beat.__exit__(None, None, None)
            self.beat = None


def epoch_line(record: dict[str, Any]) -> str:
    line = f"epoch {record['epoch'] + 1}: {record['step']} steps"
    if "frame_accuracy" in record:
        line += (
            f", validation frame accuracy {record['frame_accuracy']:.1%} +/- {record['ci95']:.1%}"
            f" over {record['videos']} videos (chance {record['chance']:.1%})"
        )
    return line
