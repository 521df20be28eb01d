from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from orbit_lite.data.layout import index_tree
from orbit_lite.data.synth import synthesize
from orbit_lite.data.synth_render import ObjectLook, render_clean
from orbit_lite.data.video import FrameReader
from orbit_lite.errors import OrbitLiteError


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_same_seed_same_tree_other_seed_other_tree(tiny_frames: Path, tmp_path: Path) -> None:
    again = synthesize(tmp_path / "again", "tiny", seed=0).root
    assert _digest(again) == _digest(tiny_frames)
    other = synthesize(tmp_path / "other", "tiny", seed=1).root
    assert _digest(other) != _digest(tiny_frames)


def test_layout_names_and_annotations(tiny_frames: Path) -> None:
    index = index_tree(tiny_frames)
    for user in index.users():
        assert all(" " in name for name in user.object_names)  # object folders have spaces, like ORBIT's
        assert {"house keys", "car keys"} <= set(user.object_names)  # the fine-detail twins
        for video in user.videos():
            assert video.video_id.startswith(f"{user.user_id}--")
            notes = json.loads(video.annotation_path.read_text())
            assert set(notes) == {video.frame_name(int(n)) for n in video.frame_numbers()}
            if video.video_type == "clutter":
                assert set(next(iter(notes.values()))) == {"object_bounding_box", "object_not_present_issue"}
                for note in notes.values():
                    box = note["object_bounding_box"]
                    assert (box is None) == note["object_not_present_issue"]
                    if box is not None:
                        assert 0 <= box["x"] < 1080 and 1 <= box["w"] <= 1080
            else:
                assert len(next(iter(notes.values()))) == 7


def test_some_clutter_frames_have_the_object_out_of_view(tiny_frames: Path) -> None:
    absent = total = 0
    for video in index_tree(tiny_frames).videos():
        if video.video_type == "clutter":
            notes = json.loads(video.annotation_path.read_text()).values()
            absent += sum(n["object_not_present_issue"] for n in notes)
            total += len(notes)
    assert 0 < absent < total / 2


def test_objects_are_visually_distinct(tiny_frames: Path) -> None:
    # Every clean video's nearest other video, by the mean colour of the frame centre (where the object is), shows
    # the same object, in every user. The twins count as one object here: only their fine detail differs (below).
    reader = FrameReader(32)
    for user in index_tree(tiny_frames).users():
        videos = [(o.name.replace("house", "car"), v) for o in user.objects for v in o.clean]
        centres = torch.stack([reader.read(v, np.arange(v.num_frames))[:, :, 12:20, 12:20].float().mean((0, 2, 3))
                               for _, v in videos])  # fmt: skip
        gaps = torch.cdist(centres, centres).fill_diagonal_(float("inf"))
        names = [name for name, _ in videos]
        assert len(set(names)) >= 2 and len(videos) > len(set(names))  # something to confuse
        assert [names[int(j)] for j in gaps.argmin(1)] == names, user.user_id


def test_twins_differ_only_in_fine_detail() -> None:
    looks = [ObjectLook(n, "circle", (200, 40, 40), "solid", fine) for n, fine in (("a", "stripes"), ("b", "checks"))]
    frames = [next(render_clean(look, np.random.default_rng(1), 1, 224))[0] for look in looks]
    big = np.abs(frames[0].astype(float) - frames[1].astype(float)).mean()
    small = [cv2.resize(f, (56, 56), interpolation=cv2.INTER_AREA).astype(float) for f in frames]
    assert big > 3 * np.abs(small[0] - small[1]).mean()  # the difference fades when frames shrink


def test_refuses_a_non_empty_folder_and_bad_options(tiny_frames: Path, tmp_path: Path) -> None:
    with pytest.raises(OrbitLiteError, match="already exists and is not an empty folder"):
        synthesize(tiny_frames, "tiny")
    with pytest.raises(OrbitLiteError, match="--seed must be >= 0, got -1"):
        synthesize(tmp_path / "s", "tiny", seed=-1)
    with pytest.raises(OrbitLiteError, match="unknown preset 'huge'; available: tiny"):
        synthesize(tmp_path / "x", "huge")
    with pytest.raises(OrbitLiteError, match="unknown format"):
        synthesize(tmp_path / "y", "tiny", fmt="gif")


def test_an_interrupted_synth_leaves_no_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import orbit_lite.data.synth as synth

    written = []

    def interrupt(videos: int) -> None:
        written.append(videos)
        if videos == 5:  # a user and a half in: Ctrl-C
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        synth.synthesize(tmp_path / "data", "tiny", seed=0, progress=interrupt)
    assert written == [1, 2, 3, 4, 5]
    assert list(tmp_path.iterdir()) == []  # neither the tree nor its hidden partial copy
    (tmp_path / "data").mkdir()  # an empty folder may be given, and is filled whole
    summary = synth.synthesize(tmp_path / "data", "tiny", seed=0)
    assert summary.root == tmp_path / "data" and sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    assert (tmp_path / "data" / "test").is_dir() and (tmp_path / "data").stat().st_mode & 0o777 == 0o777 & ~_umask()


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask
