from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from orbit_lite.data.layout import (
    index_benchmark,
    index_tree,
    index_user_folder,
    parse_frame_number,
    parse_video_name,
)
from orbit_lite.errors import OrbitLiteError

ID = "QNRQHoZXKSb--szdC2WBAyWT4b9GvYJ_HUJZFIMuIAA"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (f"P554--finger-nail-clipper--clean--{ID}", ("P554", "finger-nail-clipper", "clean", ID)),
        ("P177--bag--clutter---leading-dash--and--more", ("P177", "bag", "clutter", "-leading-dash--and--more")),
        ("P1--clean-cloth--clean--abc-def", ("P1", "clean-cloth", "clean", "abc-def")),
        ("P9--keys--clutter--x", ("P9", "keys", "clutter", "x")),
    ],
)
def test_video_names_parse_with_dashes(name: str, expected: tuple[str, str, str, str]) -> None:
    parsed = parse_video_name(name)
    assert parsed is not None
    assert (parsed.user, parsed.object, parsed.video_type, parsed.video_id) == expected


def test_non_orbit_names_do_not_parse() -> None:
    assert parse_video_name("holiday_video") is None
    assert parse_video_name("P1--bag--dirty--x") is None


def test_frame_numbers_parse_from_the_right() -> None:
    assert parse_frame_number(f"P1--bag--clean--{ID}-00042.jpg") == 42
    assert parse_frame_number("P1--bag--clean---x-00001.jpg") == 1
    assert parse_frame_number("frame.jpg") is None


def _make_video(folder: Path, name: str, n: int) -> None:
    folder.mkdir(parents=True)
    for i in range(1, n + 1):
        (folder / f"{name}-{i:05d}.jpg").write_bytes(b"")


def test_benchmark_index_reads_spaces_and_odd_ids(tmp_path: Path) -> None:
    v1 = "P1--finger-nail-clipper--clean---abc--def"
    _make_video(tmp_path / "test" / "P1" / "finger nail clipper" / "clean" / v1, v1, 3)
    v2 = "P1--finger-nail-clipper--clutter--zz"
    _make_video(tmp_path / "test" / "P1" / "finger nail clipper" / "clutter" / v2, v2, 60)
    v3 = "P1--keys--clean--k"
    _make_video(tmp_path / "test" / "P1" / "keys" / "clean" / v3, v3, 2)
    (tmp_path / "annotations" / "test").mkdir(parents=True)
    (tmp_path / "annotations" / "test" / f"{v2}.json").write_text("{}")
    index = index_benchmark(tmp_path)
    user = index.user("P1", "test")
    assert user.object_names == ["finger nail clipper", "keys"]
    clean = user.objects[0].clean[0]
    assert clean.video_id == v1 and clean.num_frames == 3 and clean.video_type == "clean"
    assert clean.frames is not None and clean.frames.names is None  # compact pattern form
    assert clean.frames.name(2) == f"{v1}-00003.jpg"
    assert user.objects[0].clutter[0].annotation_path == tmp_path / "annotations" / "test" / f"{v2}.json"
    assert clean.annotation_path is None
    np.testing.assert_array_equal(clean.frame_numbers(), [1, 2, 3])


def test_irregular_frame_names_keep_their_order(tmp_path: Path) -> None:
    folder = tmp_path / "me" / "mug" / "clip1"
    folder.mkdir(parents=True)
    for name in ("img_b.jpg", "img_a.jpg", "img_c.png", "notes.txt"):
        (folder / name).write_bytes(b"x")
    index = index_user_folder(tmp_path / "me")
    video = index.user("me").objects[0].clean[0]
    assert video.frames is not None
    assert [video.frames.name(i) for i in range(video.num_frames)] == ["img_a.jpg", "img_b.jpg", "img_c.png"]
    np.testing.assert_array_equal(video.frame_numbers(), [1, 2, 3])


def test_user_folder_both_forms_and_mixed_media(tmp_path: Path) -> None:
    root = tmp_path / "alice"
    _make_video(root / "white cane" / "clean" / "a", "a", 2)
    _make_video(root / "white cane" / "clutter" / "b", "b", 2)
    _make_video(root / "mug" / "m1", "m1", 4)  # <dir>/<object>/<video>: a clean video
    (root / "mug" / "m2.MP4").write_bytes(b"")
    index = index_tree(root)
    assert index.layout == "user" and list(index.splits) == ["user"]
    user = index.users()[0]
    assert user.user_id == "alice" and user.object_names == ["mug", "white cane"]
    mug, cane = user.objects
    assert [v.video_id for v in mug.clean] == ["m1", "m2"] and mug.clean[1].is_file
    assert [v.video_id for v in cane.clean] == ["a"] and [v.video_id for v in cane.clutter] == ["b"]


def test_synthetic_index_counts(tiny_frames: Path) -> None:
    index = index_tree(tiny_frames)
    assert index.layout == "benchmark"
    assert {s: len(u) for s, u in index.splits.items()} == {"train": 2, "validation": 1, "test": 1}
    for user in index.users():
        assert len(user.objects) == 3
        for obj in user.objects:
            assert len(obj.clean) == 2 and len(obj.clutter) == 1
            assert all(v.annotation_path is not None for v in obj.clean + obj.clutter)


def test_frames_and_video_files_index_alike(tiny_frames: Path, tiny_videos: Path) -> None:
    a, b = index_tree(tiny_frames), index_tree(tiny_videos)

    def shape(index):  # (split, user, object, type, id, frames) for every video
        return [(u.split, v.user, v.object_name, v.video_type, v.video_id, v.num_frames) for u in index.users()
                for v in u.videos()]  # fmt: skip

    assert shape(a) == shape(b)
    assert all(v.is_file for v in b.videos()) and not any(v.is_file for v in a.videos())


@pytest.mark.parametrize("make", ["missing", "file", "empty"])
def test_bad_roots_give_one_line_errors(tmp_path: Path, make: str) -> None:
    path = tmp_path / "x"
    if make == "file":
        path.write_text("")
    elif make == "empty":
        path.mkdir()
    with pytest.raises(OrbitLiteError) as info:
        index_tree(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def test_benchmark_without_splits_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(OrbitLiteError, match="no train/, validation/ or test/"):
        index_benchmark(tmp_path)


def test_unknown_user_lists_the_available_ones(tiny_frames: Path) -> None:
    index = index_tree(tiny_frames)
    with pytest.raises(OrbitLiteError, match="available: P"):
        index.user("P000")


def test_frame_positions_from_names(tmp_path: Path) -> None:
    v = "P1--keys--clean---x--y"
    _make_video(tmp_path / "test" / "P1" / "keys" / "clean" / v, v, 4)
    frames = index_benchmark(tmp_path).user("P1").objects[0].clean[0].frames
    assert [frames.position_of(frames.name(i)) for i in range(4)] == [0, 1, 2, 3]
    assert frames.position_of(f"{v}-00009.jpg") is None and frames.position_of("other-00001.jpg") is None
    renumbered = tmp_path / "me" / "mug" / "clip"
    renumbered.mkdir(parents=True)
    for name in ("a.jpg", "b.jpg"):
        (renumbered / name).write_bytes(b"")
    irregular = index_user_folder(tmp_path / "me").users()[0].objects[0].clean[0].frames
    assert irregular.position_of("b.jpg") == 1 and irregular.position_of("c.jpg") is None


def test_unpadded_frame_numbers_are_read_in_number_order(tmp_path: Path) -> None:
    folder = tmp_path / "me" / "mug" / "clip"
    folder.mkdir(parents=True)
    for i in range(1, 13):
        (folder / f"frame{i}.jpg").write_bytes(b"x")
    frames = index_user_folder(tmp_path / "me").users()[0].objects[0].clean[0].frames
    assert frames is not None and frames.ordered
    assert [frames.name(i) for i in range(4)] == ["frame1.jpg", "frame2.jpg", "frame3.jpg", "frame4.jpg"]
    assert frames.name(9) == "frame10.jpg" and frames.position_of("frame12.jpg") == 11
    np.testing.assert_array_equal(frames.frame_numbers(), np.arange(1, 13))
    assert parse_frame_number("frame12.jpg") == 12


def test_data_check_reports_frames_it_cannot_order(tmp_path: Path) -> None:
    from orbit_lite.data.check import check_tree

    for obj, names in (("mug", ("frame1.jpg", "frame01.jpg")), ("keys", ("a.jpg", "b.jpg")), ("hat", ("f9.jpg",))):
        folder = tmp_path / "me" / obj / "clip"
        folder.mkdir(parents=True)
        for name in names:
            cv2.imwrite(str(folder / name), np.zeros((8, 8, 3), np.uint8))
    messages = {p.path.parent.name: p.message for p in check_tree(tmp_path / "me")}
    assert messages["mug"].startswith("cannot order the frames by number (frame01.jpg, frame1.jpg)")
    assert messages["keys"].startswith("cannot order the frames by number (a.jpg, b.jpg)")
    assert "hat" not in messages
