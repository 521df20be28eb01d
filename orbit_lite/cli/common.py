"""What every command shares: consoles, logging, one-line errors and progress bars."""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from orbit_lite.errors import OrbitLiteError

# Results go to stdout (so `--json` output can be piped); messages, warnings and progress go to stderr.
out = Console()
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def plural(n: int, word: str, words: str | None = None) -> str:
    """``1 video``, ``2 videos``: counts in messages read as a person writes them."""
    return f"{n} {word if n == 1 else (words or word + 's')}"


def check_recipes(recipes: list[Path], overrides: list[str]) -> None:
    """Read ``--config`` recipes with their ``--set`` overrides before torch loads: a missing file, an unknown key,
    a value out of range or a misspelt learner or backbone answers in a second, not after the import."""
    if recipes:
        from orbit_lite.config import load_config

        load_config([str(p) for p in recipes], overrides)


def setup_logging(verbose: bool = False) -> None:
    handler = RichHandler(console=err, show_time=False, show_path=False, markup=False)
    # Other libraries speak only to warn (the ONNX exporter's optimizer logs a dozen INFO lines per export, matplotlib
    # its font cache); orbit-lite's own INFO messages are shown.
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(message)s", handlers=[handler])
    logging.getLogger("orbit_lite").setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)


def one_line_errors(fn: F) -> F:
    """A user mistake becomes ``error: <message>`` on stderr and exit status 1, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except OrbitLiteError as e:
            err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def duration(seconds: float) -> str:
    """``45 s``, ``3 min 05 s``: elapsed and remaining times in progress lines."""
    seconds = max(0, round(seconds))
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"


def progress_every() -> float:
    """Seconds between progress lines off a terminal: ``ORBIT_LITE_PROGRESS_SECONDS`` (default 20; 0 turns them off,
    as the test suite does, whose checks count a command's lines)."""
    try:
        return float(os.environ.get("ORBIT_LITE_PROGRESS_SECONDS", "20"))
    except ValueError:
        return 20.0


class Heartbeat:
    """Progress for a log file or a pipe: a line on stderr at least every ``every`` seconds while work runs (done of
    total, elapsed, an estimate of the time left), from a background thread, so that a step slower than ``every``
    still shows that the command is alive. Off a terminal a progress bar would print nothing until the end."""

    def __init__(self, description: str, total: int | None, every: float | None = None, console: Console = err) -> None:
        self.description, self.total, self.console = description, total, console
        self.every = progress_every() if every is None else every
        self.done = 0
        self.started = time.perf_counter()
        self._lock = threading.Lock()  # a line never mixes one stage's name with another's counts
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="orbit-lite-heartbeat", daemon=True)

    def advance(self, n: int = 1) -> None:
        self.done += n

    def stage(self, description: str, total: int | None, done: int = 0) -> None:
        """Count a new stage of the work: its own elapsed time and time left."""
        with self._lock:
            self.description, self.total, self.done = description, total, done
            self.started = time.perf_counter()

    def count(self, done: int, total: int | None) -> None:
        """``done`` of ``total`` now (a total may change as work is found unusable)."""
        with self._lock:
            self.done, self.total = done, total

    def line(self) -> str:
        with self._lock:
            return self._line()

    def _line(self) -> str:
        elapsed = time.perf_counter() - self.started
        text = f"{self.description}: {self.done:,}" + (f"/{self.total:,}" if self.total else "")
        text += f", {duration(elapsed)} elapsed"
        if self.total and 0 < self.done < self.total:
            text += f", about {duration(elapsed / self.done * (self.total - self.done))} left"
        elif self.total and not self.done:
            text += ", time left not known yet"
        return text

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            self.console.print(self.line(), markup=False, highlight=False)

    def __enter__(self) -> Heartbeat:
        self.started = time.perf_counter()
        if self.every > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def bar_columns() -> list[ProgressColumn]:
    """What a progress bar shows: what it counts, the bar, done/total, time elapsed and time left."""
    return [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn()]  # fmt: skip


@contextmanager
def progress_bar(description: str, total: int | None, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr; yields ``advance(n)`` (a no-op when not ``enabled``). Off a terminal, a
    :class:`Heartbeat` line at least every 20 seconds instead."""
    if not enabled:
        yield lambda n=1: None
        return
    if not err.is_terminal:  # a bar would print nothing there: lines with progress and time left instead
        with Heartbeat(description, total) as beat:
            yield beat.advance
        return
    with Progress(*bar_columns(), console=err, transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)
