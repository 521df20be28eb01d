"""Pure metric functions and their aggregation."""

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


def frames_to_recognition(predictions: Sequence[int] | np.ndarray, label: int) -> float:
    """Index of the first frame predicted correctly, as a fraction of the video's frames (0 = the first frame was
    right); 1.0 when no frame is right. Frames in temporal order. Lower is better."""
    predictions = np.asarray(predictions)
    if predictions.size == 0:
        raise ValueError("frames-to-recognition of a video with no frames")
    hits = np.flatnonzero(predictions == label)
    return float(hits[0] / predictions.size) if hits.size else 1.0


def video_prediction(predictions: Sequence[int] | np.ndarray, way: int) -> int:
    """The most frequent frame prediction; a tie goes to the lowest label (``np.bincount(...).argmax()``)."""
    predictions = np.asarray(predictions, dtype=np.int64)
    if predictions.size == 0:
        raise ValueError("video prediction of a video with no frames")
    return int(np.bincount(predictions, minlength=way).argmax())


def video_accuracy(predictions: Sequence[int] | np.ndarray, label: int, way: int) -> float:
    """1.0 when the video's most frequent prediction is its label, else 0.0."""
    return float(video_prediction(predictions, way) == label)


def summarize_scores(scores: Sequence[float] | np.ndarray) -> dict[str, float]:
    """``{"mean", "ci95", "n"}`` over a flat list of scores."""
    mean, ci = mean_ci95(scores)
    return {"mean": mean, "ci95": ci, "n": int(np.asarray(scores).size)}
