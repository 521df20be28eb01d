"""``recognize --plot``: how sure the recognizer was of each object, frame by frame."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from orbit_lite.visual.png import new_figure, save_png

if TYPE_CHECKING:
    from orbit_lite.results import Recognition

WIDTH, ROW_HEIGHT = 10.0, 3.2  # inches per figure, per input


def object_colours(count: int) -> list[tuple[float, float, float, float]]:
    """One distinct colour per object (tab10, then tab20 for larger sets)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if count <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(count)]


def figure_size(inputs: int) -> tuple[int, int]:
    """The plot's size in pixels for ``inputs`` inputs (one row each)."""
    from orbit_lite.visual.png import DPI

    return round(WIDTH * DPI), round(ROW_HEIGHT * inputs * DPI)


def plot_recognitions(recognitions: Sequence[Recognition], names: Sequence[str], path: Path) -> Path:
    """One row per input: each object's probability over the frames (one line each), the area under the predicted
    object's line shaded, the true object (when known) drawn bold, and the first correct frame marked."""
    fig = new_figure(WIDTH, ROW_HEIGHT * len(recognitions))
    colours = object_colours(len(names))
    axes = fig.subplots(len(recognitions), 1, squeeze=False)[:, 0]
    for ax, r in zip(axes, recognitions, strict=True):
        _plot_one(ax, r, names, colours)
    fig.subplots_adjust(
        left=0.07,
        right=0.78,
        top=1 - 0.42 / (ROW_HEIGHT * len(recognitions)) - 0.02,
        bottom=0.5 / (ROW_HEIGHT * len(recognitions)),
        hspace=0.6,
    )
    return save_png(fig, path)


def _plot_one(ax, r: Recognition, names: Sequence[str], colours: list) -> None:
    x = r.frame_numbers
    for k, name in enumerate(names):
        true = r.label == k
        ax.plot(
            x,
            r.probabilities[:, k],
            color=colours[k],
            linewidth=2.6 if true else 1.2,
            label=f"{name} (true)" if true else name,
            zorder=3 if true else 2,
        )
        # shaded where this object is the answer: the shading's colour reads as "what it said" at every frame
        ax.fill_between(
            x,
            0,
            r.probabilities[:, k],
            where=r.predictions == k,
            step=None,
            interpolate=False,
            color=colours[k],
            alpha=0.25,
            linewidth=0,
        )
    if r.label is not None:
        hits = np.flatnonzero(r.predictions == r.label)
        if hits.size:
            first = hits[0]
            ax.axvline(x[first], color="black", linestyle="--", linewidth=1)
            text, at = f" recognized at frame {int(x[first])} (frames to recognition {first / len(x):.0%})", x[first]
        else:
            text, at = " never recognized (frames to recognition 100%)", x[0]
        ax.text(
            at,
            0.03,
            text,
            transform=ax.get_xaxis_transform(),
            fontsize=8,
            va="bottom",
            bbox={"facecolor": "white", "alpha": 0.8, "linewidth": 0, "pad": 1.5},
            zorder=4,
        )
    name = Path(r.source).name
    ax.set_title("\n".join(textwrap.wrap(name, 90, break_long_words=True)), fontsize=8, loc="left")
    ax.set_xlim(x[0] - 0.5, x[-1] + 0.5)
    ax.set_ylim(0, 1.0)
    ax.set_xlabel("frame", fontsize=8)
    ax.set_ylabel("probability", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
