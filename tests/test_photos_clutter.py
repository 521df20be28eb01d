"""The photos-clutter preset: the photo objects small in busy clutter frames, split between training and test users;
clean videos as the photos preset makes them. Small trees and short videos: the properties hold at any size."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from test_synth import _digest

from orbit_lite.data import presets
from orbit_lite.data.check import check_tree
from orbit_lite.data.layout import index_tree
from orbit_lite.data.photos import BY_NAME, OBJECTS, STYLES, TEST_OBJECTS, PhotoContent
from orbit_lite.data.synth import synthesize

SIDE = 48


@functools.cache
def _content(style: str) -> PhotoContent:  # the photos are read once per style
    return PhotoContent(SIDE, style)


def _object_sides(style: str, videos: int = 4, frames: int = 30) -> np.ndarray:
    """The boxed object's longest side over the frame side, over the frames where it is in view."""
    content = _content(style)
    names = [o.name for o in OBJECTS]
    sides = []
    for v in range(videos):
        name = names[v % len(names)]
        for _, note in content.clutter(name, [name], np.random.default_rng(v), frames):
            if note["object_bounding_box"] is not None:
                box = note["object_bounding_box"]
                sides.append(max(box["w"], box["h"]) / 1080)
    return np.array(sides)


def test_the_object_is_small_in_the_frame_and_smaller_than_in_the_photos_preset() -> None:
    small, large = _object_sides("photos-clutter"), _object_sides("photos")
    low, high = STYLES["photos-clutter"].object_side
    # the drawn side (plus a 2 px border each side, zoom 0.9-1.15, a few degrees of rotation) stays in the stated range
    assert 0.8 * low < np.median(small) < 1.3 * high and small.max() < 0.6  # the border is 8% at 48 px
    assert np.median(small) < 0.7 * np.median(large)


def test_training_and_test_users_draw_from_disjoint_objects() -> None:
    content = _content("photos-clutter")
    drawn = {split: set() for split in ("train", "validation", "test")}
    for seed in range(30):
        for split in drawn:
            drawn[split] |= set(content.user_objects(np.random.default_rng(seed), 5, split))
    assert drawn["test"] == set(TEST_OBJECTS)
    assert drawn["train"] and not drawn["train"] & drawn["test"] and not drawn["validation"] & drawn["test"]
    everything = {o.name for o in OBJECTS}  # the photos preset draws every object for every split
    assert set().union(*(_content("photos").user_objects(np.random.default_rng(s), 5, "test") for s in range(30))) \
        == everything  # fmt: skip


def test_nothing_lying_around_is_one_of_the_users_objects_or_in_training_a_test_object() -> None:
    content = _content("photos-clutter")
    test_files = {BY_NAME[n].clutter for n in TEST_OBJECTS}
    for split, k in itertools.product(("train", "test"), (3, 5)):
        owned = content.user_objects(np.random.default_rng(k), k, split)
        for name in owned:
            around = set(content.distractors(name, owned))
            assert not around & {BY_NAME[n].clutter for n in owned} and len(around) >= 8
            assert split == "test" or not around & test_files
    # the photos preset keeps its look: every other object may lie around, the user's own included
    assert len(_content("photos").distractors("cat", ["cat", "rocket"])) == len(BY_NAME) - 1


def test_clean_videos_are_those_of_the_photos_preset() -> None:
    name = TEST_OBJECTS[0]
    plain = [f for f, _ in _content("photos").clean(name, np.random.default_rng(3), 6)]
    clutter = [f for f, _ in _content("photos-clutter").clean(name, np.random.default_rng(3), 6)]
    assert all(np.array_equal(a, b) for a, b in zip(plain, clutter, strict=True))


@pytest.fixture
def tiny_preset(monkeypatch: pytest.MonkeyPatch) -> str:
    """photos-clutter with one user per split, two objects each, one short clean and one clutter video."""
    small = dataclasses.replace(presets.PRESETS["photos-clutter"], users={"train": 1, "validation": 1, "test": 1},
                                objects=(2, 2), clean_videos=(1, 1), clutter_videos=(1, 1), clean_frames=6,
                                clutter_frames=40, per_split=None)  # fmt: skip
    monkeypatch.setitem(presets.PRESETS, "photos-clutter-tiny", small)
    return "photos-clutter-tiny"


def test_a_tree_is_deterministic_passes_data_check_and_boxes_the_object(tiny_preset: str, tmp_path: Path) -> None:
    first = synthesize(tmp_path / "a", tiny_preset, frame_size=SIDE, seed=0).root
    assert _digest(synthesize(tmp_path / "b", tiny_preset, frame_size=SIDE, seed=0).root) == _digest(first)
    index = index_tree(first)
    assert check_tree(index) == []
    assert {o for u in index.users("test") for o in u.object_names} <= set(TEST_OBJECTS)
    for video in index.videos():
        if video.video_type == "clutter":
            notes = list(json.loads(video.annotation_path.read_text()).values())
            assert all((n["object_bounding_box"] is None) == n["object_not_present_issue"] for n in notes)
            assert sum(not n["object_not_present_issue"] for n in notes) >= 20
