"""Training curves drawn from a run's metrics.jsonl: the file is the one record, so a resumed run (whose
metrics.jsonl is cut back to its checkpoint, then appended to) draws one continuous set of curves."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from orbit_lite.visual.png import new_figure, save_png

SMOOTHING = 0.9  # exponential moving average weight of the past: one task batch is a noisy estimate
WIDTH, HEIGHT = 13.5, 3.6  # inches: three panels side by side


def read_records(path: Path) -> list[dict[str, Any]]:
    """The complete JSON lines of a metrics.jsonl (a line cut by a crash is left out)."""
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def smoothed(values: Sequence[float], weight: float = SMOOTHING) -> np.ndarray:
    """Bias-corrected exponential moving average (as TensorBoard's smoothing): the first points are not pulled
    towards zero. Non-finite values are skipped."""
    out, average, seen = [], 0.0, 0
    for v in values:
        if math.isfinite(v):
            seen += 1
            average = weight * average + (1 - weight) * v
        out.append(average / (1 - weight**seen) if seen else float("nan"))
    return np.asarray(out, dtype=np.float64)


def plot_curves(records: Sequence[dict[str, Any]], path: Path) -> Path:
    """Three panels over optimizer steps: training loss; training accuracy with validation frame accuracy (95%
    interval) per epoch; learning rate."""
    train = [r for r in records if r.get("type") == "train"]
    val = [r for r in records if r.get("type") == "validation"]
    fig = new_figure(WIDTH, HEIGHT)
    loss_ax, acc_ax, lr_ax = fig.subplots(1, 3)
    steps = [r["step"] for r in train]
    for ax, key, colour in ((loss_ax, "loss", "#C44E52"), (acc_ax, "accuracy", "#4C72B0")):
        values = [float(r[key]) for r in train]
        scale = 100.0 if key == "accuracy" else 1.0
        ax.plot(steps, scale * np.asarray(values), color=colour, alpha=0.25, linewidth=1)
        ax.plot(steps, scale * smoothed(values), color=colour, linewidth=2, label=f"training (smoothed {SMOOTHING})")
    if val:
        acc_ax.errorbar(
            [r["step"] for r in val],
            [100 * r["frame_accuracy"] for r in val],
            yerr=[100 * r["ci95"] for r in val],
            color="#55A868",
            marker="o",
            capsize=3,
            linewidth=1.5,
            label="validation frame accuracy (95% CI)",
        )
        chance = val[-1].get("chance")
        if chance is not None:
            acc_ax.axhline(100 * chance, color="grey", linestyle=":", linewidth=1, label="chance")
    lr_ax.plot(steps, [r["lr"] for r in train], color="#8172B2", linewidth=1.5)
    epochs = sorted({(r["epoch"], r["step"]) for r in records if r.get("type") in ("validation", "epoch")})
    for ax, title, ylabel in (
        (loss_ax, "training loss", "loss"),
        (acc_ax, "accuracy", "%"),
        (lr_ax, "learning rate", "lr"),
    ):
        for _, step in epochs:  # epoch boundaries: where validation happens and the schedule may change
            ax.axvline(step, color="grey", alpha=0.2, linewidth=0.8)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("optimizer step", fontsize=9)
        ax.set_ylabel(ylabel, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    acc_ax.set_ylim(0, 100)
    acc_ax.legend(fontsize=7, loc="lower right")
    lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    fig.tight_layout()
    return save_png(fig, path)
