from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from orbit_lite.data.annotations import frame_tags, keep_mask, parse_annotations, valid_frame_positions
from orbit_lite.data.layout import index_tree
from orbit_lite.errors import OrbitLiteError
from orbit_lite.tags import ISSUES, expand_filter


def clean_frame(**issues: bool | None) -> dict:
    note: dict = dict.fromkeys(ISSUES, False)
    note.update(issues)
    return note


def test_tags_true_false_and_null() -> None:
    tags = frame_tags({"blur_issue": True, "framing_issue": False, "viewpoint_issue": None, "object_bounding_box": {}})
    assert tags == {"blur_issue", "no_framing_issue"}


def test_filters_keep_a_frame_if_any_tag_matches() -> None:
    notes = {
        1: clean_frame(),  # perfect
        2: clean_frame(blur_issue=True),  # one issue
        3: {k: (True if k == "object_not_present_issue" else None) for k in ISSUES},  # object absent
    }
    numbers = np.array([1, 2, 3, 4])  # frame 4 has no annotation: no tags
    present = expand_filter(["no_object_not_present_issue"])
    np.testing.assert_array_equal(keep_mask(numbers, notes, present), [True, True, False, False])
    # OR semantics: "no_issues" keeps frames with ANY false issue, so the blurred frame stays (reference behaviour).
    np.testing.assert_array_equal(keep_mask(numbers, notes, expand_filter(["no_issues"])), [True, True, False, False])
    np.testing.assert_array_equal(keep_mask(numbers, notes, expand_filter(["blur_issue"])), [False, True, False, False])
    mixed = expand_filter(["mixed_issues"])
    np.testing.assert_array_equal(keep_mask(numbers, notes, mixed), [False, True, True, False])
    np.testing.assert_array_equal(keep_mask(numbers, notes, frozenset()), [True] * 4)
    np.testing.assert_array_equal(keep_mask(numbers, None, present), [True] * 4)


def test_expansions() -> None:
    assert expand_filter(["no_issues"]) == {f"no_{k}" for k in ISSUES}
    assert expand_filter(["mixed_issues"]) == set(ISSUES)


def test_unknown_filter_lists_the_valid_ones() -> None:
    with pytest.raises(OrbitLiteError, match=r"unknown annotation filter 'no_blur'.*no_blur_issue"):
        expand_filter(["no_blur"])


def test_annotation_keys_are_frame_numbers() -> None:
    notes = parse_annotations({"P1--a--clean---x--y-00007.jpg": {"blur_issue": False}})
    assert list(notes) == [7]
    with pytest.raises(OrbitLiteError, match=r"not '<video>-NNNNN\.jpg'"):
        parse_annotations({"frame.jpg": {}}, "bad.json")


def test_synthetic_clutter_has_absent_frames_that_the_filter_drops(tiny_frames: Path) -> None:
    index = index_tree(tiny_frames)
    clutter = [v for v in index.videos() if v.video_type == "clutter"]
    present = expand_filter(["no_object_not_present_issue"])
    kept = [len(valid_frame_positions(v, present)) for v in clutter]
    totals = [v.num_frames for v in clutter]
    assert all(k <= t for k, t in zip(kept, totals, strict=True))
    assert sum(kept) < sum(totals)  # some frames have the object out of view
    raw = json.loads(clutter[0].annotation_path.read_text())
    absent = [k for k, v in raw.items() if v["object_not_present_issue"]]
    assert all(raw[k]["object_bounding_box"] is None for k in absent)


def test_missing_annotations_error_only_when_required(tmp_path: Path) -> None:
    folder = tmp_path / "me" / "mug" / "v"
    folder.mkdir(parents=True)
    (folder / "v-00001.jpg").write_bytes(b"x")
    video = index_tree(tmp_path / "me").users()[0].objects[0].clean[0]
    present = expand_filter(["no_object_not_present_issue"])
    np.testing.assert_array_equal(valid_frame_positions(video, present), [0])
    with pytest.raises(OrbitLiteError, match="no annotation file"):
        valid_frame_positions(video, present, require_annotations=True)
