"""Pure metric functions and their aggregation (spec orbit.md 6)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def frame_accuracy(predictions: Sequence[int] | np.ndarray, label: int) -> float:
    """Fraction of a video's frames predicted as ``label``."""
    predictions = np.asarray(predictions)
    if predictions.size == 0:
        raise ValueError("frame accuracy of a video with no frames")
    return float((predictions == label).mean())


def mean_ci95(scores: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and 95% confidence half-width ``1.96 * std / sqrt(n)`` with the population std (ddof=0), as ORBIT."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return float("nan"), float("nan")
    return float(scores.mean()), float(1.96 * scores.std() / np.sqrt(scores.size))
