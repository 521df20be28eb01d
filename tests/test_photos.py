"""The photo preset: an ORBIT tree from scikit-image's bundled photos, and pretrained personalization on it."""

from __future__ import annotations

import itertools
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from test_synth import _digest

from orbit_lite.data.check import check_tree
from orbit_lite.data.layout import index_tree
from orbit_lite.data.photos import BY_NAME
from orbit_lite.data.presets import PRESETS
from orbit_lite.data.synth import synthesize
from orbit_lite.errors import OrbitLiteError

SIZE = 48  # the preset's 224 px would be slow here; the tree's properties below hold at any size
RECOGNITION_SIZE = 96  # large enough for ImageNet features to tell the photos apart


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize(tmp_path_factory.mktemp("photos") / "tree", "photos", frame_size=SIZE, seed=0).root


@pytest.mark.slow  # writes the preset a second time
def test_same_seed_same_bytes_and_data_check_finds_nothing(photos: Path, tmp_path: Path) -> None:
    assert _digest(synthesize(tmp_path / "again", "photos", frame_size=SIZE, seed=0).root) == _digest(photos)
    assert check_tree(index_tree(photos)) == []


def test_users_own_three_to_five_objects_that_repeat_across_users(photos: Path) -> None:
    index = index_tree(photos)
    owners = Counter(name for user in index.users() for name in user.object_names)
    assert all(3 <= len(user.objects) <= 5 for user in index.users())
    assert set(owners) <= set(BY_NAME) and max(owners.values()) >= 2
    assert set(index.splits) == {"train", "validation", "test"}


def test_clutter_videos_lose_the_object_for_a_few_frames_and_box_it_otherwise(photos: Path) -> None:
    spec = PRESETS["photos"]
    for video in index_tree(photos).videos():
        notes = list(json.loads(video.annotation_path.read_text()).values())
        if video.video_type == "clean":
            assert len(notes) == spec.clean_frames and not any(n["object_not_present_issue"] for n in notes)
            continue
        absent = [n["object_not_present_issue"] for n in notes]
        assert sum(absent) > 0 and len(notes) - sum(absent) >= 50  # the protocol scores videos with >= 50 frames
        for note in notes:
            box = note["object_bounding_box"]
            assert (box is None) == note["object_not_present_issue"]
            if box is not None:  # a clutter object is smaller than the frame (ORBIT's 1080 px coordinates)
                assert 0 <= box["x"] < 1080 and 0 <= box["y"] < 1080 and 50 < max(box["w"], box["h"]) < 1000


def test_the_motorcycle_teaches_with_one_view_and_is_seen_from_another() -> None:
    motorcycle = BY_NAME["motorcycle"]
    assert (motorcycle.teach, motorcycle.clutter) == ("motorcycle_left.png", "motorcycle_right.png")


def test_clean_frames_move_smoothly_and_change_exposure(photos: Path) -> None:
    import cv2

    video = next(v for v in index_tree(photos).videos() if v.video_type == "clean")
    frames = [cv2.imread(str(video.path / video.frame_name(n))).astype(np.float32) for n in video.frame_numbers()]
    steps = [np.abs(a - b).mean() for a, b in itertools.pairwise(frames)]
    assert min(steps) > 0.5  # the camera never stands still
    assert max(f.mean() for f in frames) - min(f.mean() for f in frames) > 5  # exposure changes along the path


def test_without_scikit_image_the_preset_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "skimage", None)
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    with pytest.raises(OrbitLiteError) as err:
        synthesize(tmp_path / "tree", "photos", frame_size=SIZE)
    assert "\n" not in str(err.value) and "pip install 'scikit-image'" in str(err.value)
    assert not (tmp_path / "tree").exists() and not list(tmp_path.iterdir())  # nothing half-written is left


@pytest.mark.slow
@pytest.mark.heavy  # minutes on a 2-core CPU: `make test-all`
def test_pretrained_personalization_beats_random_weights_and_chance(tmp_path: Path) -> None:
    """No meta-training: ProtoNets over efficientnet_lite0's ImageNet features recognizes the test users' objects in
    clutter far above chance, and clearly above the same network with random weights."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from photo_personalize import chance, evaluate

    # 3 context frames per clean video and 12 random frames of each clutter video, not all of them: faster
    fewer = ("test_sampling.subsample_factor=8", "test_sampling.clip_cap=12")
    photos = synthesize(tmp_path / "tree", "photos", frame_size=RECOGNITION_SIZE, seed=0).root
    pretrained = evaluate(photos, "pretrained", RECOGNITION_SIZE, overrides=fewer)["frame_accuracy"]["mean"]
    random = evaluate(photos, "none", RECOGNITION_SIZE, overrides=fewer)["frame_accuracy"]["mean"]
    guess = chance(photos)
    assert pretrained > guess + 0.2, (pretrained, guess)
    assert pretrained > random + 0.15, (pretrained, random)
