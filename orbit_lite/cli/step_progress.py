"""How a command shows the engine's :class:`~orbit_lite.progress.Step` reports (personalization's videos read, frames
encoded, gradient steps): a bar per stage on a terminal, plain lines at a bounded rate off one."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from rich.console import Console
from rich.progress import Progress, TaskID

from orbit_lite.cli.common import Heartbeat, bar_columns, err, progress_every
from orbit_lite.progress import Progress as StepReport
from orbit_lite.progress import Step

# What each kind of step counts, as a person reads it ("encoding frames: 120/400").
WORDS = {
    "read": "reading videos",
    "adapt": "adapting to the objects, frames",
    "encode": "encoding frames",
    "tune": "fine-tuning steps",
}


class _Stages:
    """The stages of one run, numbered in the order the engine declares them (a kind it did not declare is added
    after them): ``2/3 encoding frames``."""

    def __init__(self, kinds: Sequence[str]) -> None:
        self.kinds = list(kinds)

    def name(self, kind: str) -> str:
        if kind not in self.kinds:
            self.kinds.append(kind)
        return f"{self.kinds.index(kind) + 1}/{len(self.kinds)} {WORDS.get(kind, kind)}"


class StepBars:
    """On a terminal: a bar per stage (done/total, elapsed, time left), each listed from the start and started when
    its first step arrives; a finished stage's bar stays, so the display reads as the list of what was done."""

    def __init__(self, progress: Progress, kinds: Sequence[str]) -> None:
        self.progress, self.stages = progress, _Stages(kinds)
        self.bars: dict[str, TaskID] = {}
        for kind in kinds:
            self._bar(kind)

    def _bar(self, kind: str) -> TaskID:
        if kind not in self.bars:
            self.bars[kind] = self.progress.add_task(self.stages.name(kind), total=None, start=False)
        return self.bars[kind]

    def __call__(self, step: Step) -> None:
        bar = self._bar(step.kind)
        self.progress.start_task(bar)  # no-op once started
        self.progress.update(bar, completed=step.done, total=step.total)


class StepLines:
    """Off a terminal (a log file, a pipe): a line as each stage starts, a :class:`Heartbeat` line every ``every``
    seconds while it runs, and a last line with the last stage complete. However fast the steps come, a run prints
    at most one line per stage, one per ``every`` seconds and the last."""

    def __init__(self, kinds: Sequence[str], every: float, console: Console = err) -> None:
        self.stages, self.console = _Stages(kinds), console
        self.beat = Heartbeat("starting", None, every, console)
        self.kind: str | None = None
        self.seen: set[str] = set()

    def __call__(self, step: Step) -> None:
        if step.kind == self.kind:
            self.beat.count(step.done, step.total)
            return
        self.kind = step.kind
        self.beat.stage(self.stages.name(step.kind), step.total, step.done)
        if step.kind not in self.seen:  # one line per kind, even if one came back: the count of lines stays bounded
            self.seen.add(step.kind)
            self.console.print(f"{self.beat.description}: {step.done:,}/{step.total:,}", markup=False, highlight=False)

    def finish(self) -> None:
        if self.kind is not None:
            self.console.print(self.beat.line(), markup=False, highlight=False)


@contextmanager
def step_progress(kinds: Sequence[str], console: Console = err) -> Iterator[StepReport | None]:
    """A :data:`~orbit_lite.progress.Progress` callback that shows the work's stages on ``console`` (stderr), or
    None when nothing would be shown (``ORBIT_LITE_PROGRESS_SECONDS=0`` off a terminal): then the engine runs
    without one, exactly as it does unwatched."""
    if not console.is_terminal:
        every = progress_every()
        if every <= 0:
            yield None
            return
        lines = StepLines(kinds, every, console)
        with lines.beat:
            yield lines
        lines.finish()  # only when the work ended well: an error says why instead
        return
    # stdout is left alone: what the command prints there (results, --json) never lands in the progress display
    with Progress(*bar_columns(), console=console, redirect_stdout=False) as progress:
        yield StepBars(progress, kinds)
