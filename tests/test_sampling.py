from __future__ import annotations

import numpy as np
import pytest

from orbit_lite.data.sampling import (
    causal_windows,
    clean_clean_split,
    clip_grid,
    sample_clips,
    sample_shots,
    sample_way,
    train_shot_caps,
)

CLIP_METHODS = ("random", "max", "uniform", "random_200")


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_random_way_respects_bounds_and_is_sorted() -> None:
    g = rng()
    sizes = set()
    for _ in range(300):
        way = sample_way(12, "random", 6, g)
        assert 2 <= len(way) <= 6 and len(set(way)) == len(way)
        assert list(way) == sorted(way) and way.max() < 12
        sizes.add(len(way))
    assert sizes == {2, 3, 4, 5, 6}  # every size in [min_way, cap] occurs


def test_max_way_takes_all_objects_up_to_the_cap() -> None:
    np.testing.assert_array_equal(sample_way(7, "max", 15, rng()), np.arange(7))
    way = sample_way(20, "max", 15, rng())
    assert len(way) == 15 and len(set(way)) == 15


def test_one_object_gives_a_one_way_draw() -> None:
    np.testing.assert_array_equal(sample_way(1, "random", 15, rng()), [0])


@pytest.mark.parametrize(
    ("method", "n", "cap", "shot", "sizes"),
    [
        ("max", 20, 15, 5, {15}),
        ("max", 4, 15, 5, {4}),
        ("fixed", 20, 15, 5, {5}),
        ("fixed", 3, 15, 5, {3}),
        ("specific", 9, 15, 2, {2}),
        ("random", 6, 15, 5, {1, 2, 3, 4, 5, 6}),
        ("random", 30, 4, 5, {1, 2, 3, 4}),
    ],
)
def test_shot_counts(method: str, n: int, cap: int, shot: int, sizes: set[int]) -> None:
    g = rng()
    seen = set()
    for _ in range(200):
        shots = sample_shots(n, method, cap, shot, g)
        assert len(set(shots)) == len(shots) and (shots < n).all()
        seen.add(len(shots))
    assert seen == sizes


def test_specific_shots_are_the_first_videos() -> None:
    np.testing.assert_array_equal(sample_shots(9, "specific", 15, 3, rng()), [0, 1, 2])


def test_clip_grid_pads_only_when_needed() -> None:
    np.testing.assert_array_equal(clip_grid(6, 3, 1000), [[0, 1, 2], [3, 4, 5]])  # no extra padded clip
    np.testing.assert_array_equal(clip_grid(7, 3, 1000), [[0, 1, 2], [3, 4, 5], [6, 6, 6]])
    np.testing.assert_array_equal(clip_grid(10, 4, 6), [[0, 1, 2, 3], [4, 5, 5, 5]])  # frame_cap first
    assert clip_grid(0, 2, 1000).shape == (0, 2)


@pytest.mark.parametrize("method", CLIP_METHODS)
@pytest.mark.parametrize("length", [1, 4])
def test_clips_are_contiguous_distinct_and_in_range(method: str, length: int) -> None:
    g = rng()
    for n in (1, 5, 37, 400, 2500):
        clips = sample_clips(n, method, length, g)
        assert clips.ndim == 2 and clips.shape[1] == length and len(clips) >= 1
        assert (clips >= 0).all() and (clips < min(n, 1000)).all()  # frame_cap 1000 applies to every method
        steps = np.diff(clips, axis=1)
        assert ((steps == 1) | ((steps == 0) & (clips[:, 1:] == min(n, 1000) - 1))).all()  # consecutive or end-padded
        starts = clips[:, 0]
        assert len(set(starts.tolist())) == len(starts)
        assert (starts % length == 0).all()  # non-overlapping grid clips


def test_uniform_positions_are_every_subsample_factor_frames() -> None:
    clips = sample_clips(700, "uniform", 1, rng(), subsample_factor=30)
    np.testing.assert_array_equal(clips[:, 0], np.arange(0, 700, 30))
    capped = sample_clips(5000, "uniform", 1, rng(), subsample_factor=30)
    assert capped[-1, 0] == 990 and len(capped) == 34  # the 1000-frame cap: at most 34 frames
    assert len(sample_clips(20, "uniform", 1, rng())) == 1  # shorter than the factor: one frame
    clips4 = sample_clips(700, "uniform", 4, rng(), subsample_factor=32)
    np.testing.assert_array_equal(clips4[:, 0], np.arange(0, 700, 32))


def test_uniform_and_max_do_not_use_the_generator() -> None:
    for method in ("uniform", "max"):
        a, b = sample_clips(300, method, 2, rng(1)), sample_clips(300, method, 2, rng(2))
        np.testing.assert_array_equal(a, b)


def test_random_200_and_random_counts() -> None:
    assert len(sample_clips(500, "random_200", 1, rng())) == 200
    assert len(sample_clips(120, "random_200", 1, rng())) == 120
    assert len(sample_clips(500, "random_200", 2, rng(), clip_cap=50)) == 50
    counts = {len(sample_clips(10, "random", 1, rng(s))) for s in range(200)}
    assert counts == set(range(1, 11))


@pytest.mark.parametrize("method", CLIP_METHODS)
def test_sampling_is_deterministic_under_a_seed(method: str) -> None:
    np.testing.assert_array_equal(sample_clips(900, method, 2, rng(5)), sample_clips(900, method, 2, rng(5)))
    np.testing.assert_array_equal(sample_way(9, "random", 15, rng(5)), sample_way(9, "random", 15, rng(5)))
    # ... and the seed is what decides: another one draws other clips and objects (uniform and max use none, above)
    if method.startswith("random"):
        assert not np.array_equal(sample_clips(900, method, 2, rng(5)), sample_clips(900, method, 2, rng(6)))
    assert not np.array_equal(sample_way(9, "random", 15, rng(5)), sample_way(9, "random", 15, rng(6)))


def test_causal_windows_repeat_the_first_frame() -> None:
    np.testing.assert_array_equal(causal_windows(np.array([0, 1, 5]), 3), [[0, 0, 0], [0, 0, 1], [3, 4, 5]])
    np.testing.assert_array_equal(causal_windows(np.array([4]), 1), [[4]])


def test_clean_clean_split() -> None:
    ctx, tgt = clean_clean_split(8)
    np.testing.assert_array_equal(ctx, range(5))
    np.testing.assert_array_equal(tgt, range(5, 8))
    ctx, tgt = clean_clean_split(3)
    assert len(ctx) == 2 and len(tgt) == 1
    assert len(clean_clean_split(1)[0]) == 0


def test_train_shot_caps() -> None:
    assert train_shot_caps(6, 15, 15) == (5, 4)
    assert train_shot_caps(3, 15, 15) == (10, 8)
    assert train_shot_caps(3, 7, 2) == (7, 2)
