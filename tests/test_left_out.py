"""What a command leaves out it says, truly and completely: a dropped user's reason and every corrupt video, an object
with nothing to teach, frames whose order is a guess."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from orbit_lite.cli.main import app
from orbit_lite.data.check import check_tree
from orbit_lite.data.layout import index_tree
from orbit_lite.engine.model import Checkpoint, open_model
from orbit_lite.engine.personalize import personalize_user
from orbit_lite.engine.recognize import recognize

runner = CliRunner()
CPU = torch.device("cpu")


def test_a_user_whose_clean_videos_are_all_corrupt_is_dropped_truly_and_listed_whole(
    tiny_copy: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    victim, other = index_tree(tiny_copy).users("train")
    clean = [v for obj in victim.objects for v in obj.clean]
    for video in clean:  # every frame of every clean video: garbage
        for i in range(video.frames.count):
            video.frames.path(i).write_bytes(b"not a jpeg")
    out = tmp_path / "r"
    args = ["evaluate", "--data", str(tiny_copy), "--checkpoint", str(tiny_checkpoint), "--out", str(out)]
    result = runner.invoke(app, [*args, "--split", "train", "--tasks", "1", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    # tasks stop at the second object found unteachable; the third object's clean videos must be read too
    assert sorted(s["path"] for s in metrics["skipped_videos"]) == sorted(str(v.path) for v in clean)
    assert all(s["whole_video"] for s in metrics["skipped_videos"])
    reason = f"0 of its 3 objects have a usable clean video ({len(clean)} videos left out as corrupt); a task needs two"
    assert metrics["dropped_users"] == [{"user": victim.user_id, "reason": reason}]
    assert sorted(d["object"] for d in metrics["dropped_objects"]) == sorted(victim.object_names)
    assert "nan" not in result.stdout  # no row of nan for the dropped user
    rows = [line.split() for line in result.stdout.splitlines()]
    assert not any(row and row[0] == victim.user_id for row in rows)
    assert any(row and row[0] == other.user_id for row in rows)


def _own_folder(tiny_frames: Path, root: Path) -> Path:
    """A user's own folder (<dir>/<object>/clean/<video>) with the test user's three objects."""
    user = index_tree(tiny_frames).users("test")[0]
    for obj in user.objects:
        for video in obj.clean:
            shutil.copytree(video.path, root / obj.name / "clean" / video.video_id)
    return root


def test_an_object_with_an_empty_clean_folder_is_refused_by_name_and_reported_by_check(
    tiny_frames: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    mine = _own_folder(tiny_frames, tmp_path / "alice")
    (mine / "mug" / "clean").mkdir(parents=True)
    args = ["personalize", "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--videos", str(mine)]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "a.pt")])
    assert result.exit_code == 1 and not (tmp_path / "a.pt").exists()
    assert "no usable clean video for 'mug'" in result.stderr
    problems = [str(p) for p in check_tree(mine)]
    assert problems == [f"{mine / 'mug'}: object has no clean videos, so it cannot be taught"]
    checked = runner.invoke(app, ["data", "check", str(mine)])
    assert checked.exit_code == 1 and "mug: object has no clean videos" in checked.stdout


def test_recognize_warns_about_frames_that_data_check_cannot_order(
    tiny_frames: Path, tiny_checkpoint: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    learner, cfg = open_model(Checkpoint(tiny_checkpoint), CPU)
    user = index_tree(tiny_frames).users("test")[0]
    model, _ = personalize_user(learner, user, cfg)
    source = user.objects[0].clutter[0].frames
    numbered, guessed = tmp_path / "me" / "obj" / "numbered", tmp_path / "me" / "obj" / "guessed"
    for folder, names in ((numbered, ["f1.jpg", "f2.jpg", "f10.jpg"]), (guessed, ["w.jpg", "x.jpg", "y.jpg"])):
        folder.mkdir(parents=True)
        for i, name in enumerate(names):
            shutil.copy(source.path(i), folder / name)
    judged = {p.path: p.message for p in check_tree(tmp_path / "me") if "order" in p.message}
    assert list(judged) == [guessed]  # data check: only the folder without numbers is unorderable
    with caplog.at_level(logging.WARNING):
        recognize(model, numbered)
    assert not caplog.records
    with caplog.at_level(logging.WARNING):
        recognize(model, guessed)
    assert [r.getMessage() for r in caplog.records] == [f"{guessed}: {judged[guessed]}; recognizing them in name order"]


def test_personalize_names_every_object_left_without_a_readable_clean_video(
    tiny_copy: Path, tiny_checkpoint: Path
) -> None:
    from orbit_lite.engine.personalize import personal_context
    from orbit_lite.errors import OrbitLiteError

    _, cfg = open_model(Checkpoint(tiny_checkpoint), CPU)
    user = index_tree(tiny_copy).users("test")[0]
    for video in (v for obj in user.objects for v in obj.clean):
        for i in range(video.frames.count):
            video.frames.path(i).write_bytes(b"not a jpeg")
    with pytest.raises(OrbitLiteError) as caught:
        personal_context(user, cfg)
    names = ", ".join(repr(n) for n in user.object_names)
    assert str(caught.value).startswith(f"user {user.user_id}: no readable clean video left for {names};")
