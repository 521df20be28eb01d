"""One way to write a figure: rendered in memory by matplotlib's Agg canvas, marked as orbit-lite's, written at once.

Figures are built on ``matplotlib.figure.Figure`` directly, never through pyplot, so no global state or display
backend is involved (safe in a training loop, in threads, and on machines without a display).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from orbit_lite import __version__
from orbit_lite.outputs import PNG_SOFTWARE
from orbit_lite.publish import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 100  # figure sizes are given in inches: pixels = inches * DPI, so a figure's pixel size is known in advance


def new_figure(width: float, height: float, layout: str | None = None) -> Figure:
    """A figure of ``width`` x ``height`` inches (``width * DPI`` x ``height * DPI`` pixels once saved);
    ``layout="constrained"`` lets matplotlib place panels, labels and colour bars without overlaps."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout=layout)


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes, its Software text chunk naming orbit-lite (how outputs.py knows the file is ours)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": f"{PNG_SOFTWARE} {__version__}"})
    return buffer.getvalue()


def save_png(fig: Figure, path: Path | str) -> Path:
    """Write the figure to ``path`` all at once (never a half-written PNG)."""
    atomic_write_bytes(Path(path), png_bytes(fig))
    return Path(path)
