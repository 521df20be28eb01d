"""Corrupt frames and videos: each is left out once, named once and listed; the rest of the task goes on."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from orbit_lite.cli.main import app
from orbit_lite.data.layout import Video, index_tree
from orbit_lite.engine.evaluate import evaluate_user, make_protocol
from orbit_lite.engine.model import Checkpoint, open_model
from orbit_lite.engine.personalize import personal_context
from orbit_lite.engine.report import check_scored
from orbit_lite.errors import OrbitLiteError

CPU = torch.device("cpu")


def spoil(video: Video) -> list[str]:
    """Overwrite every frame of a frame folder with bytes that are not an image; returns the frame names."""
    assert video.frames is not None
    for i in range(video.frames.count):
        video.frames.path(i).write_bytes(b"not a jpeg")
    return [video.frames.name(i) for i in range(video.frames.count)]


def test_an_unreadable_clean_video_leaves_the_user_in_the_evaluation(
    tiny_copy: Path, tiny_checkpoint: Path, caplog: pytest.LogCaptureFixture
) -> None:
    learner, cfg = open_model(Checkpoint(tiny_checkpoint), CPU)
    user = index_tree(tiny_copy).users("test")[0]
    victim = user.objects[0].clean[0]
    names = spoil(victim)  # 12 corrupt frames: more than the 8 redraws that used to drop the whole user
    with caplog.at_level(logging.WARNING):
        result = evaluate_user(learner, user, make_protocol(cfg, tasks=2), cfg)
    assert result.dropped is None and result.dropped_objects == ()
    assert {s.object for s in result.scores} == set(user.object_names)  # every object still scored
    assert [s.to_json() for s in result.skipped] == [{
        "video": victim.video_id, "path": str(victim.path),
        "reason": "12 of 12 frames corrupt; too few usable frames left", "frames": names, "whole_video": True,
    }]  # fmt: skip
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"skipping 12 corrupt frame(s) of {victim.path}: {names[0]} (not a decodable image), {names[1]} "
        f"(not a decodable image), {names[2]} (not a decodable image) and 9 more",
        f"skipping video {victim.path}: 12 of 12 frames corrupt; too few usable frames left",
    ]


def test_a_corrupt_query_frame_is_left_out_of_its_video_only(tiny_copy: Path, tiny_checkpoint: Path) -> None:
    learner, cfg = open_model(Checkpoint(tiny_checkpoint), CPU)
    user = index_tree(tiny_copy).users("test")[0]
    protocol = make_protocol(cfg, "orbit2021", tasks=1)  # every frame of every clutter video
    before = {s.video: s.n_frames for s in evaluate_user(learner, user, protocol, cfg).scores}
    query = next(v for v in user.videos() if v.video_type == "clutter" and v.video_id in before)
    query.frames.path(7).write_bytes(b"")
    result = evaluate_user(learner, user, protocol, cfg)
    after = {s.video: s.n_frames for s in result.scores}
    assert after == {**before, query.video_id: before[query.video_id] - 1}
    reason = "1 corrupt frame(s) left out"
    expected = {"video": query.video_id, "path": str(query.path), "reason": reason, "frames": [query.frames.name(7)],
                "whole_video": False}  # fmt: skip
    assert [s.to_json() for s in result.skipped] == [expected]
    frames = {int(n) for n in result.tasks[0].videos[query.video_id]}
    assert 8 not in frames and len(frames) == before[query.video_id] - 1


def test_a_user_left_with_one_teachable_object_is_reported_as_dropped(tiny_copy: Path, tiny_checkpoint: Path) -> None:
    learner, cfg = open_model(Checkpoint(tiny_checkpoint), CPU)
    user = index_tree(tiny_copy).users("test")[0]
    for obj in user.objects[:2]:
        for video in obj.clean:
            spoil(video)
    protocol = make_protocol(cfg, tasks=1)
    result = evaluate_user(learner, user, protocol, cfg)
    assert result.scores == () and list(result.dropped_objects) == user.object_names[:2]
    assert (
        result.dropped == "1 of its 3 objects has a usable clean video (4 videos left out as corrupt); a task needs two"
    )
    assert len(result.skipped) == 4
    with pytest.raises(
        OrbitLiteError,
        match=r"no video could be scored \(orbit2022, clutter mode\): 4 videos had "
        rf"corrupt files; users {user.user_id} had fewer than two teachable objects; nothing written",
    ):
        check_scored([result], protocol)


def test_personalize_goes_on_without_an_unreadable_clean_video(tiny_copy: Path, tiny_checkpoint: Path) -> None:
    _, cfg = open_model(Checkpoint(tiny_checkpoint), CPU)
    user = index_tree(tiny_copy).users("train")[0]
    victim = user.objects[1].clean[0]
    spoil(victim)
    task = personal_context(user, cfg)
    assert task.object_names == user.object_names
    assert victim.video_id not in task.context_video_ids
    assert user.objects[1].clean[1].video_id in task.context_video_ids


def test_evaluate_cli_lists_corrupt_frames(tiny_copy: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    user = index_tree(tiny_copy).users("test")[0]
    names = spoil(user.objects[0].clean[0])
    out = tmp_path / "r"
    args = ["evaluate", "--data", str(tiny_copy), "--checkpoint", str(tiny_checkpoint), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--device", "cpu", "--tasks", "1"])
    assert result.exit_code == 0, result.output
    # the video has no usable frame left, so it is left out whole: counted as such, never as "0 unreadable videos"
    assert "left out 12 corrupt frames and 1 whole video (" in result.stderr
    assert "1 video affected" in result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert [s["frames"] for s in metrics["skipped_videos"]] == [names]
    assert metrics["dropped_users"] == [] and metrics["dropped_objects"] == []
    assert set(pd.read_csv(out / "per_object.csv")["object"]) == set(user.object_names)


def test_clean_mode_with_no_scorable_video_fails_and_writes_nothing(
    tiny_frames: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "r"
    args = ["evaluate", "--data", str(tiny_frames), "--checkpoint", str(tiny_checkpoint), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--device", "cpu", "--tasks", "1", "--mode", "clean"])
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert (
        "no video could be scored (orbit2022, clean mode): 3 held-out clean videos have fewer than the 50 usable "
        "frames a query video needs (test_sampling.min_target_frames); nothing written"
    ) in result.stderr
    assert not out.exists()


def test_results_json_never_holds_a_bare_nan(tiny_copy: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    from orbit_lite.engine.report import write_results

    learner, cfg = open_model(Checkpoint(tiny_checkpoint), CPU)
    index = index_tree(tiny_copy)
    scored = index.users("test")[0]
    dropped = index.users("validation")[0]
    for obj in dropped.objects[:2]:
        for video in obj.clean:
            spoil(video)
    protocol = make_protocol(cfg, tasks=1)
    results = [evaluate_user(learner, u, protocol, cfg) for u in (scored, dropped)]
    metrics = write_results(tmp_path / "r", results, protocol, "test", 1.0, {})
    text = (tmp_path / "r" / "metrics.json").read_text()
    strict = json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in metrics.json"))
    assert strict["per_user"][dropped.user_id]["frame_accuracy"] == {"mean": None, "ci95": None, "n": 0}
    assert strict["dropped_users"] == [{"user": dropped.user_id, "reason": results[1].dropped}]
    assert metrics.per_user[scored.user_id]["frame_accuracy"].n > 0


def test_the_demo_preset_has_clean_videos_long_enough_for_clean_mode() -> None:
    from orbit_lite.config import evaluation_sampling
    from orbit_lite.data.synth import PRESETS

    assert PRESETS["demo"].clean_frames >= evaluation_sampling().min_target_frames


def test_an_annotation_file_of_another_video_is_named_and_its_video_left_out(
    tiny_copy: Path, tiny_checkpoint: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from orbit_lite.data.check import check_tree

    learner, cfg = open_model(Checkpoint(tiny_checkpoint), CPU)
    user = index_tree(tiny_copy).users("test")[0]
    clutter = [v for v in user.videos() if v.video_type == "clutter"]
    victim, other = clutter[0], clutter[1]
    victim.annotation_path.write_text(other.annotation_path.read_text())  # a copy that kept the wrong content
    with caplog.at_level(logging.WARNING):
        result = evaluate_user(learner, user, make_protocol(cfg, tasks=1), cfg)
    reason = (f"annotation file {victim.annotation_path} names the frames of video {other.video_id}, not of "
              f"{victim.video_id}")  # fmt: skip
    assert [s.to_json() for s in result.skipped] == [
        {"video": victim.video_id, "path": str(victim.path), "reason": reason, "whole_video": True}
    ]
    assert victim.video_id not in {s.video for s in result.scores}
    assert [r.getMessage() for r in caplog.records] == [f"skipping video {victim.path}: {reason}"]
    problems = [p for p in check_tree(tiny_copy) if p.path == victim.annotation_path]
    assert [p.message for p in problems] == [
        f"belongs to another video: its frame names are {other.video_id}-NNNNN.jpg, not {victim.video_id}-NNNNN.jpg"
    ]


def test_personalize_videos_cli_names_what_it_left_out(tiny_frames: Path, tiny_checkpoint: Path, tmp_path: Path):
    import shutil

    from orbit_lite.personal import load_personal

    user = index_tree(tiny_frames).users("train")[0]
    mine = tmp_path / "alice"
    for obj in user.objects:
        for video in obj.clean:
            shutil.copytree(video.path, mine / obj.name / video.video_id)
    victim = index_tree(mine).users()[0].objects[0].clean[0]
    spoil(victim)
    args = ["personalize", "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--videos", str(mine)]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a.pt")])
    assert result.exit_code == 0, result.output
    assert f"left out 12 corrupt frames and 1 whole video (unreadable or too few usable frames): {victim.video_id}" in (
        result.stderr.replace("\n", " ")
    )
    model = load_personal(tmp_path / "a.pt")
    assert model.object_names == user.object_names and [s["video"] for s in model.config["skipped"]] == [
        victim.video_id
    ]
    for video in index_tree(mine).users()[0].objects[0].clean[1:]:
        spoil(video)
    lost = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "b.pt")])
    assert lost.exit_code == 1 and len(lost.stderr.strip().splitlines()) >= 1
    assert f"error: user alice: no readable clean video left for '{user.object_names[0]}'" in lost.stderr
    assert not (tmp_path / "b.pt").exists()
