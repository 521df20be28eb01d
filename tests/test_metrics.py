from __future__ import annotations

import math

import numpy as np
import pytest

from orbit_lite.metrics import (
    frame_accuracy,
    frames_to_recognition,
    mean_ci95,
    summarize_scores,
    video_accuracy,
    video_prediction,
)


def test_frame_accuracy() -> None:
    assert frame_accuracy([1, 1, 0, 2], 1) == 0.5
    with pytest.raises(ValueError):
        frame_accuracy([], 0)


def test_frames_to_recognition() -> None:
    assert frames_to_recognition([3, 0, 0], 3) == 0.0  # first frame right
    assert frames_to_recognition([0, 0, 0, 0], 3) == 1.0  # never right
    assert frames_to_recognition([0, 1, 3, 3], 3) == 0.5  # first right at index 2 of 4
    assert frames_to_recognition([0, 3], 3) == 0.5


def test_video_accuracy_ties_go_to_the_lowest_label() -> None:
    assert video_prediction([2, 2, 1, 1, 0], way=3) == 1  # 2 and 1 tie: label 1 wins
    assert video_accuracy([2, 2, 1, 1], 1, way=3) == 1.0
    assert video_accuracy([2, 2, 1, 1], 2, way=3) == 0.0
    assert video_prediction([4], way=5) == 4


def test_ci_uses_the_population_std() -> None:
    mean, ci = mean_ci95([0.0, 1.0])
    assert mean == 0.5 and ci == pytest.approx(1.96 * 0.5 / math.sqrt(2))  # std with ddof=0 is 0.5
    scores = np.array([0.2, 0.4, 0.9])
    assert mean_ci95(scores)[1] == pytest.approx(1.96 * scores.std(ddof=0) / math.sqrt(3))
    assert summarize_scores([1.0, 1.0]) == {"mean": 1.0, "ci95": 0.0, "n": 2}
    assert math.isnan(mean_ci95([])[0])
