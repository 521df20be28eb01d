"""A teach job's progress as a person sees it: the engine's steps (videos read, frames encoded, gradient steps)
become one number from 0 to 1 that never goes back and a stage text, written to the store a few times a second at
most so that a fast loop of steps does not turn into a stream of SQLite transactions."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from orbit_lite.progress import Step

# "<phase>: <detail>": the page announces a change of phase and shows the detail as it moves.
TEXTS = {
    "read": "reading the videos: {done} of {total}",
    "adapt": "looking at your objects: {done} of {total} frames",
    "encode": "learning your objects: {done} of {total} frames",
    "tune": "fine-tuning: step {done} of {total}",
}
STARTING = "reading the videos"  # the job's stage before the first step
SAVING = "saving the recognizer"
# Each kind's share of the bar between START and SAVE (decoding and encoding cost about the same per frame; the
# FineTuners' steps run over the whole context set each).
WEIGHTS = {"read": 3.0, "adapt": 2.0, "encode": 3.0, "tune": 4.0}
START, SAVE = 0.02, 0.95
WRITE_INTERVAL = 0.25  # seconds between two store writes within one kind of work


class JobProgress:
    """Turns :class:`Step` reports into ``write(progress, stage)`` calls.

    Args:
        write: stores a job's progress (0..1) and stage text.
        kinds: the kinds of step the job will report, in order (``engine.personalize.progress_kinds``); each gets a
            band of the bar in proportion to its weight. A kind not listed changes the text only.
        interval: least seconds between two writes of the same kind (default :data:`WRITE_INTERVAL`); the first
            report of each kind is written at once, so the text says what is running now. A job writes at most
            ``1 / interval`` times a second, and once more for each kind it starts and for saving.
        clock: seconds, monotonic (tests pass their own).
    """

    def __init__(
        self,
        write: Callable[[float, str], None],
        kinds: Sequence[str],
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write, self._clock = write, clock
        self._interval = WRITE_INTERVAL if interval is None else interval
        total = sum(WEIGHTS[k] for k in kinds) or 1.0
        self._bands: dict[str, tuple[float, float]] = {}
        at = START
        for kind in kinds:
            end = min(at + (SAVE - START) * WEIGHTS[kind] / total, SAVE)  # rounding never passes the saving stage
            self._bands[kind] = (at, end)
            at = end
        self.value = 0.0
        self._kind: str | None = None
        self._last = float("-inf")

    def __call__(self, step: Step) -> None:
        now = self._clock()
        if step.kind == self._kind and now - self._last < self._interval:
            return
        self._kind, self._last = step.kind, now
        value = self.value
        if step.kind in self._bands and step.total > 0:
            lo, hi = self._bands[step.kind]
            value = lo + (hi - lo) * min(step.done, step.total) / step.total
        self._put(value, TEXTS.get(step.kind, step.kind).format(done=step.done, total=step.total))

    def saving(self) -> None:
        self._put(SAVE, SAVING)

    def _put(self, value: float, stage: str) -> None:
        # never backwards: a video found corrupt makes the engine read the others again from the first
        self.value = max(self.value, value)
        self._write(self.value, stage)
