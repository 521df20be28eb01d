"""What every command shares: consoles, logging, one-line errors and progress bars."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from orbit_lite.errors import OrbitLiteError

# Results go to stdout (so `--json` output can be piped); messages, warnings and progress go to stderr.
out = Console()
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def plural(n: int, word: str, words: str | None = None) -> str:
    """``1 video``, ``2 videos``: counts in messages read as a person writes them."""
    return f"{n} {word if n == 1 else (words or word + 's')}"


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


@contextmanager
def progress_bar(description: str, total: int | None, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr; yields ``advance(n)`` (a no-op when not ``enabled``)."""
    if not enabled or not err.is_terminal:  # off a terminal a bar only leaves a blank line before the messages
        yield lambda n=1: None
        return
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)
