"""evaluate's pictures: which objects the recognizers confuse, per user, and how soon they recognize objects."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from orbit_lite.visual.png import new_figure, save_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from orbit_lite.results import UserResult

CONFUSION_FILE = "confusion_matrices.png"
FTR_FILE = "frames_to_recognition.png"
PANELS_PER_ROW = 3


@dataclass(frozen=True)
class Confusion:
    """One user's confusions in frames: ``counts[i, j]`` frames of object ``objects[i]`` predicted as ``objects[j]``.

    A frame that several tasks score counts once, split among their answers (with orbit2022's deterministic context
    every task gives the same answer, so the counts are whole frames); a row sums to the object's distinct scored
    frames. ``accuracy`` is the per-user frame accuracy of the results table (the mean over scored (task, video)
    pairs), ``scores`` the number of those pairs."""

    user: str
    objects: tuple[str, ...]
    counts: np.ndarray  # [K, K] float64
    accuracy: float = float("nan")
    scores: int = 0

    def row_normalized(self) -> np.ndarray:
        """Each row as fractions of that object's frames (rows without frames stay 0)."""
        totals = self.counts.sum(1, keepdims=True)
        return np.divide(self.counts, totals, out=np.zeros(self.counts.shape), where=totals > 0)

    def frames(self) -> int:
        """Distinct scored frames."""
        return round(float(self.counts.sum()))

    def empty_rows(self) -> list[int]:
        """Objects none of whose videos was scored (e.g. every clutter video shorter than the protocol needs)."""
        return [i for i in range(len(self.objects)) if not self.counts[i].sum()]


def confusion_of(result: UserResult) -> Confusion:
    """The confusion of one user's results (results.json's task entries and the per-video scores).

    Tasks may teach different subsets of the user's objects; rows and columns are the union, by name."""
    truth = {s.video: s.object for s in result.scores}  # a video shows one object, whichever task scores it
    objects = sorted({name for task in result.tasks for name in task.object_names})
    index = {name: i for i, name in enumerate(objects)}
    answers: dict[tuple[str, str], list[int]] = {}  # (video, frame) -> the predicted object of every task scoring it
    for task in result.tasks:
        names = task.object_names
        for video, frames in task.videos.items():
            if video in truth:
                for frame, predicted in frames.items():
                    answers.setdefault((video, frame), []).append(index[names[predicted]])
    counts = np.zeros((len(objects), len(objects)), dtype=np.float64)
    for (video, _), predicted in answers.items():
        np.add.at(counts[index[truth[video]]], predicted, 1.0 / len(predicted))
    accuracy = float(np.mean([s.frame_accuracy for s in result.scores])) if result.scores else float("nan")
    return Confusion(result.user, tuple(objects), counts, accuracy, len(result.scores))


def _label(name: str) -> str:
    return "\n".join(textwrap.wrap(name, 18, break_long_words=True)) or name


def plot_confusions(results: Sequence[UserResult], path: Path, title: str) -> Path:
    """Write :func:`confusion_figure` to ``path``."""
    return save_png(confusion_figure(results, title), path)


def plot_frames_to_recognition(scores: Sequence[float], path: Path, title: str) -> Path:
    """Write :func:`frames_to_recognition_figure` to ``path``."""
    return save_png(frames_to_recognition_figure(scores, title), path)


def _cell(count: float) -> str:
    return f"{count:.0f}" if abs(count - round(count)) < 0.05 else f"{count:.1f}"


def confusion_figure(results: Sequence[UserResult], title: str) -> Figure:
    """One panel per user: objects (rows) by predicted objects (columns), coloured by the row's fraction, each cell
    showing its frames; the panel's title is the user's frame accuracy as the results table gives it."""
    from matplotlib import colormaps

    confusions = [c for c in (confusion_of(r) for r in results) if len(c.objects)]
    columns = max(1, min(PANELS_PER_ROW, len(confusions)))
    rows = max(1, math.ceil(len(confusions) / columns))
    largest = max((len(c.objects) for c in confusions), default=1)
    side = max(4.0, 0.62 * largest + 2.6)  # inches per panel: room for 9 pt cells and the object names
    # rows are taller than wide: under each matrix the rotated object names, above it a two-line title
    fig = new_figure(side * columns + 1.2, (side + 1.6) * rows + 0.8, layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes[len(confusions) :]:
        ax.set_axis_off()
    cmap = colormaps["Blues"].with_extremes(bad="#E0E0E0")  # grey: an object with no scored video
    image = None
    for ax, c in zip(axes, confusions, strict=False):
        fractions = c.row_normalized()
        empty = c.empty_rows()
        fractions[empty] = np.nan
        image = ax.imshow(fractions, cmap=cmap, vmin=0, vmax=1)
        k = len(c.objects)
        for i in range(k):
            if i in empty:
                ax.text((k - 1) / 2, i, "no scored video", ha="center", va="center", fontsize=9, color="#404040")
                continue
            for j in range(k):
                dark = fractions[i, j] > 0.6
                ax.text(j, i, _cell(c.counts[i, j]), ha="center", va="center", fontsize=9,
                        color="white" if dark else "black")  # fmt: skip
        labels = [_label(n) for n in c.objects]
        ax.set_xticks(range(k), labels, rotation=90, fontsize=9)
        ax.set_yticks(range(k), labels, fontsize=9)
        ax.set_xlabel("predicted object", fontsize=9)
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel("true object", fontsize=9)
        ax.set_title(f"{c.user}: frame accuracy {100 * c.accuracy:.2f}%\n{c.frames():,} frames, "
                     f"{c.scores} task x video scores", fontsize=10)  # fmt: skip
    if image is None:
        axes[0].text(0.5, 0.5, "no scored frames", ha="center", va="center")
    else:
        fig.colorbar(image, ax=list(axes), shrink=0.6, label="fraction of the object's frames")
    fig.suptitle(f"{title}\nframe accuracy: as in the results table (the mean over scored task x video pairs)\n"
                 "cells: frames (a frame that several tasks score is split among their answers); grey row: no video "
                 "of that object could be scored", fontsize=10)  # fmt: skip
    return fig


def frames_to_recognition_figure(scores: Sequence[float], title: str) -> Figure:
    """The distribution of frames-to-recognition over the scored (task, video) pairs: a histogram of the videos
    recognized at some frame, and apart from it the videos never recognized (scored 1.0)."""
    values = np.asarray(scores, dtype=np.float64)
    never = values >= 1.0
    fig = new_figure(7.0, 3.6)
    ax, ax_never = fig.subplots(1, 2, width_ratios=[5, 1], sharey=True)
    bins = np.linspace(0, 1, 21)
    ax.hist(100 * values[~never], bins=100 * bins, color="#4C72B0", edgecolor="white")
    if values.size:
        mean, median = 100 * values.mean(), 100 * np.median(values)
        # drawn above the bars, and the axis starts left of 0: a median of 0% (most videos recognized at once)
        # would otherwise hide under the axis' own line
        ax.axvline(mean, color="#C44E52", linestyle="--", linewidth=1.6, zorder=3,
                   label=f"mean {mean:.1f}% (all videos)")  # fmt: skip
        ax.axvline(median, color="#2E8B57", linestyle=":", linewidth=2.2, zorder=3, label=f"median {median:.1f}%")
        ax.legend(fontsize=8)
    ax.set_xlim(-3, 100)
    ax.set_xlabel("frames to recognition (% of the video's frames; lower is better)", fontsize=9)
    ax.set_ylabel("scored videos (task x video)", fontsize=9)
    ax_never.bar([0], [int(never.sum())], color="#8C8C8C", width=0.6)
    ax_never.set_xticks([0], ["never\nrecognized"], fontsize=8)
    ax_never.set_xlim(-0.6, 0.6)
    for a in (ax, ax_never):
        a.tick_params(labelsize=8)
        a.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{title} ({values.size:,} scored videos)", fontsize=10)
    fig.tight_layout()
    return fig
