from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from orbit_lite.cli.main import app
from orbit_lite.data.annotations import valid_frame_positions
from orbit_lite.data.layout import index_tree
from orbit_lite.engine.evaluate import evaluate_user, make_protocol
from orbit_lite.engine.model import Checkpoint, open_model
from orbit_lite.engine.personalize import personalize_user
from orbit_lite.engine.recognize import recognize
from orbit_lite.personal import load_personal, save_personal
from orbit_lite.tags import expand_filter

runner = CliRunner()
CPU = torch.device("cpu")


def evaluate_cli(data: Path, checkpoint: Path, out: Path, *extra: str):
    args = ["evaluate", "--data", str(data), "--checkpoint", str(checkpoint), "--out", str(out), "--device", "cpu"]
    return runner.invoke(app, [*args, *extra])


def test_evaluate_writes_every_output_in_the_challenge_format(
    tiny_frames: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "results"
    result = evaluate_cli(tiny_frames, tiny_checkpoint, out, "--tasks", "3")
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {
        "results.json", "metrics.json", "per_video.csv", "per_user.csv", "per_object.csv", "config.yaml",
        "per_user_accuracy.png", "confusion_matrices.png", "frames_to_recognition.png", ".orbit-lite-results",
    }  # fmt: skip
    index = index_tree(tiny_frames)
    user = index.users("test")[0]
    results = json.loads((out / "results.json").read_text())
    assert list(results) == [user.user_id] and len(results[user.user_id]) == 3
    present = expand_filter(["no_object_not_present_issue"])
    videos = {v.video_id: v for v in user.videos()}
    for task in results[user.user_id]:
        assert task["task_object_list"] == user.object_names
        for video_id, frames in task["task_videos"].items():
            video = videos[video_id]
            valid = set(video.frame_numbers()[valid_frame_positions(video, present)].tolist())
            assert frames and {int(n) for n in frames} <= valid  # only frames where the object is present
            assert all(isinstance(p, int) and 0 <= p < len(user.objects) for p in frames.values())
    metrics = json.loads((out / "metrics.json").read_text())
    per_video = pd.read_csv(out / "per_video.csv")
    assert metrics["frame_accuracy"]["n"] == len(per_video) == sum(len(t["task_videos"]) for t in results[user.user_id])
    assert metrics["frame_accuracy"]["mean"] == pytest.approx(per_video["frame_accuracy"].mean())
    assert metrics["personalizations"] == 1  # deterministic context: one personalization for all 3 tasks
    assert (
        metrics["frames_encoded"]["total"] == metrics["frames_encoded"]["context"] + metrics["frames_encoded"]["target"]
    )
    assert metrics["wall_seconds"] > 0 and metrics["skipped_videos"] == []
    assert list(pd.read_csv(out / "per_user.csv")["user"]) == [user.user_id]
    # the table printed is metrics.json's: the "all" row holds each metric's mean and CI in percent
    row = next(line.split() for line in result.stdout.splitlines() if line.split()[:1] == ["all"])
    expected = [f"{100 * metrics[k][s]:.2f}" for k in ("frame_accuracy", "frames_to_recognition", "video_accuracy")
                for s in ("mean", "ci95")]  # fmt: skip
    assert row == [
        "all",
        str(metrics["frame_accuracy"]["n"]),
        *[f"({x})" if i % 2 else x for i, x in enumerate(expected)],
    ]


def test_short_query_videos_leave_the_scores_but_not_the_task(tiny_frames: Path, tiny_checkpoint: Path) -> None:
    learner, cfg = open_model(Checkpoint(tiny_checkpoint), CPU)
    user = index_tree(tiny_frames).users("test")[0]
    present = expand_filter(["no_object_not_present_issue"])
    counts = {v.video_id: len(valid_frame_positions(v, present)) for v in user.videos() if v.video_type == "clutter"}
    minimum = sorted(counts.values())[-1]  # only the longest video(s) stay
    protocol = make_protocol(cfg, tasks=2)
    strict = type(protocol)(protocol.name, protocol.mode, 2, protocol.sampling.__class__(
        **{**protocol.sampling.__dict__, "min_target_frames": minimum}))  # fmt: skip
    result = evaluate_user(learner, user, strict, cfg)
    scored = {s.video for s in result.scores}
    assert scored == {v for v, n in counts.items() if n >= minimum}
    assert all(list(task.object_names) == user.object_names for task in result.tasks)


def test_shared_work_gives_the_same_scores_as_per_task_work(tiny_frames: Path, tiny_checkpoint: Path) -> None:
    learner, cfg = open_model(Checkpoint(tiny_checkpoint), CPU)
    user = index_tree(tiny_frames).users("test")[0]
    protocol = make_protocol(cfg, tasks=4)
    fast = evaluate_user(learner, user, protocol, cfg, seed=3)
    slow = evaluate_user(learner, user, protocol, cfg, seed=3, share_work=False)
    assert [(s.task, s.video) for s in fast.scores] == [(s.task, s.video) for s in slow.scores]
    np.testing.assert_allclose([s.frame_accuracy for s in fast.scores], [s.frame_accuracy for s in slow.scores])

    def timeless(tasks) -> list[dict]:  # seconds are measured, so differ; everything else must not
        return [{k: v for k, v in t.to_json().items() if "seconds" not in k} for t in tasks]

    assert timeless(fast.tasks) == timeless(slow.tasks)
    assert fast.personalizations == 1 and slow.personalizations == 4
    assert fast.frames_encoded.total < slow.frames_encoded.total


@pytest.mark.parametrize(("protocol", "mode"), [("orbit2021", "clutter"), ("orbit2022", "clean")])
def test_other_protocols_and_modes(
    tiny_frames: Path, tiny_checkpoint: Path, tmp_path: Path, protocol: str, mode: str
) -> None:
    out = tmp_path / "r"
    short = ["--set", "test_sampling.min_target_frames=5"]  # the tiny tree's clean videos are 12 frames long
    result = evaluate_cli(
        tiny_frames, tiny_checkpoint, out, "--protocol", protocol, "--mode", mode, "--tasks", "2", *short
    )
    assert result.exit_code == 0, result.output
    per_video = pd.read_csv(out / "per_video.csv")
    assert len(per_video) > 0
    assert all(("--clean--" in v) == (mode == "clean") for v in per_video["video"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["protocol"] == protocol and metrics["mode"] == mode
    if protocol == "orbit2021":  # every frame of every clutter video, absent frames included
        index = index_tree(tiny_frames)
        lengths = {v.video_id: v.num_frames for v in index.videos()}
        assert all(n == lengths[v] for v, n in zip(per_video["video"], per_video["n_frames"], strict=True))
        assert metrics["personalizations"] == 2  # random context: one per task


def test_evaluate_refuses_existing_results_and_bad_inputs(
    tiny_frames: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "r"
    assert evaluate_cli(tiny_frames, tiny_checkpoint, out, "--tasks", "1").exit_code == 0
    before = (out / "metrics.json").read_text()
    again = evaluate_cli(tiny_frames, tiny_checkpoint, out, "--tasks", "1")
    assert again.exit_code == 1 and "already holds results" in again.stderr
    assert (out / "metrics.json").read_text() == before
    assert evaluate_cli(tiny_frames, tiny_checkpoint, out, "--tasks", "1", "--overwrite").exit_code == 0
    not_ckpt = tmp_path / "notes.pt"
    not_ckpt.write_text("hello")
    bad = evaluate_cli(tiny_frames, not_ckpt, tmp_path / "x")
    assert bad.exit_code == 1 and "cannot be read as an orbit-lite training file" in bad.stderr
    assert not (tmp_path / "x").exists()
    unknown = evaluate_cli(tiny_frames, tiny_checkpoint, tmp_path / "y", "--users", "P000")
    assert unknown.exit_code == 1 and "unknown user 'P000'" in unknown.stderr and "available: P" in unknown.stderr
    assert not (tmp_path / "y").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--seed", "-1"), "--seed must be >= 0, got -1"),
        (("--device", "tpu"), "unknown device 'tpu'; expected one of auto, cpu, cuda, mps"),
        (("--users", ""), "holds an empty user id"),
        (("--users", "P1,,P2"), "holds an empty user id"),
        (("--set", "model.head=proto_cosine"), "--set model.head=proto_cosine: evaluate takes model.* from the"),
        (("--split", "validation", "--users", "{u},{u}"), "names {u} more than once"),
    ],
)
def test_evaluate_option_mistakes_are_one_line_errors(
    tiny_frames: Path, tiny_checkpoint: Path, tmp_path: Path, extra: tuple[str, ...], message: str
) -> None:
    user = index_tree(tiny_frames).users("validation")[0].user_id
    extra = tuple(e.format(u=user) for e in extra)
    out = tmp_path / "r"
    args = ["evaluate", "--data", str(tiny_frames), "--checkpoint", str(tiny_checkpoint), "--out", str(out)]
    result = runner.invoke(app, [*args, *(extra if "--device" in extra else ("--device", "cpu", *extra))])
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert message.format(u=user) in result.stderr
    assert not out.exists()


def test_evaluate_refuses_an_empty_split(tiny_frames: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(tiny_frames / "train", data / "train")
    (data / "test").mkdir()
    result = evaluate_cli(data, tiny_checkpoint, tmp_path / "r")
    assert result.exit_code == 1 and f"{data / 'test'}: the test split holds no users" in result.stderr
    assert not (tmp_path / "r").exists()


def test_an_undecodable_query_video_is_skipped_and_listed(
    tiny_videos: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    data = Path(shutil.copytree(tiny_videos, tmp_path / "data"))
    victim = next((data / "test").rglob("*--clutter--*.mp4"))
    victim.write_bytes(b"\x00" * 4096)
    result = evaluate_cli(data, tiny_checkpoint, tmp_path / "r", "--tasks", "1")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert [s["path"] for s in metrics["skipped_videos"]] == [str(victim)]
    assert victim.stem not in pd.read_csv(tmp_path / "r" / "per_video.csv")["video"].tolist()


def test_personalize_save_load_recognize_agree(tiny_frames: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    learner, cfg = open_model(Checkpoint(tiny_checkpoint), CPU)
    user = index_tree(tiny_frames).users("test")[0]
    model, task = personalize_user(learner, user, cfg)
    assert model.object_names == user.object_names and task.way == len(user.objects)
    assert all("--clean--" in v for v in task.context_video_ids)  # clean videos only
    save_personal(tmp_path / "me.pt", model)
    loaded = load_personal(tmp_path / "me.pt")
    # the file keeps one context clip per object, in label order, for `export --check`
    first = [int((task.context_labels == k).nonzero()[0]) for k in range(task.way)]
    assert loaded.check_clips is not None and torch.equal(loaded.check_clips, task.context_clips[first])
    clutter = next(v for v in user.videos() if v.video_type == "clutter")
    from orbit_lite.data.video import FrameReader

    frames = FrameReader(32).read(clutter, np.arange(clutter.num_frames))
    expected = model.recognizer.predict(frames)
    torch.testing.assert_close(loaded.recognizer.predict(frames), expected, rtol=0, atol=0)
    seen = recognize(loaded, clutter.path, label=clutter.object_name)
    np.testing.assert_array_equal(seen.predictions, expected.argmax(1).numpy())
    np.testing.assert_array_equal(seen.frame_numbers, clutter.frame_numbers())
    assert seen.label == user.object_names.index(clutter.object_name)
    assert set(seen.scores(len(user.objects))) == {"frame_accuracy", "frames_to_recognition", "video_accuracy"}


def test_personalize_and_recognize_cli(tiny_frames: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    model_file = tmp_path / "me.pt"
    args = ["personalize", "--checkpoint", str(tiny_checkpoint), "--out", str(model_file), "--device", "cpu"]
    user = index_tree(tiny_frames).users("test")[0]
    result = runner.invoke(app, [*args, "--user", user.user_id, "--data", str(tiny_frames)])
    assert result.exit_code == 0, result.output
    assert all(name in result.stdout for name in user.object_names)
    again = runner.invoke(app, [*args, "--user", user.user_id, "--data", str(tiny_frames)])
    assert again.exit_code == 1 and "already exists" in again.stderr
    clip = next(v for v in user.videos() if v.video_type == "clutter")
    image = clip.frames.path(0)
    csv_path = tmp_path / "frames.csv"
    seen = runner.invoke(app, ["recognize", "--model", str(model_file), str(clip.path), str(image), "--json",
                               "--label", clip.object_name, "--csv", str(csv_path), "--device", "cpu"])  # fmt: skip
    assert seen.exit_code == 0, seen.output
    report = json.loads(seen.stdout)
    assert report["objects"] == user.object_names
    assert [i["frames"] for i in report["inputs"]] == [clip.num_frames, 1]
    assert report["inputs"][0]["per_frame"][0]["prediction"] == report["inputs"][1]["per_frame"][0]["prediction"]
    assert 0 <= report["inputs"][0]["frames_to_recognition"] <= 1
    rows = pd.read_csv(csv_path)
    assert len(rows) == clip.num_frames + 1 and set(rows["prediction"]) <= set(user.object_names)
    wrong = runner.invoke(app, ["recognize", "--model", str(model_file), str(image), "--label", "spoon"])
    assert wrong.exit_code == 1 and "not one of this recognizer's objects" in wrong.stderr


def test_personalize_a_users_own_folder_and_its_mistakes(
    tiny_frames: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    user = index_tree(tiny_frames).users("test")[0]
    mine = tmp_path / "alice"
    for obj in user.objects[:2]:  # <dir>/<object>/<videos>: clean videos straight under the object
        for video in obj.clean:
            shutil.copytree(video.path, mine / obj.name / video.video_id)
    args = ["personalize", "--checkpoint", str(tiny_checkpoint), "--device", "cpu"]
    ok = runner.invoke(app, [*args, "--videos", str(mine), "--out", str(tmp_path / "a.pt")])
    assert ok.exit_code == 0, ok.output
    assert load_personal(tmp_path / "a.pt").object_names == [o.name for o in user.objects[:2]]
    shutil.rmtree(mine / user.objects[1].name)
    single = runner.invoke(app, [*args, "--videos", str(mine), "--out", str(tmp_path / "b.pt")])
    assert single.exit_code == 1 and "needs at least two" in single.stderr and not (tmp_path / "b.pt").exists()
    (mine / "empty thing" / "clutter" / "v").mkdir(parents=True)
    (mine / "empty thing" / "clutter" / "v" / "v-00001.jpg").write_bytes(
        user.objects[0].clean[0].frames.path(0).read_bytes()
    )
    no_clean = runner.invoke(app, [*args, "--videos", str(mine), "--out", str(tmp_path / "c.pt")])
    assert no_clean.exit_code == 1 and "no usable clean video for 'empty thing'" in no_clean.stderr
    neither = runner.invoke(app, [*args, "--out", str(tmp_path / "d.pt")])
    assert neither.exit_code == 1 and "either --user" in neither.stderr


def test_recognize_is_causal_over_clips(tmp_path: Path) -> None:
    # Clips of 3 frames: changing frame 4 of a video may change the predictions of frames 4, 5 and 6 (whose clips
    # hold it) and of no other frame; changing it really changes them.
    from PIL import Image

    from orbit_lite.config import ModelConfig
    from orbit_lite.data.synth_render import object_frames
    from orbit_lite.learners import create_learner
    from orbit_lite.personal import PersonalModel

    torch.manual_seed(0)
    learner = create_learner(ModelConfig(learner="protonets", backbone="tiny_cnn", weights="none"), 32).eval()
    context = object_frames(12, 32, seed=1).view(4, 3, 3, 32, 32)
    model = PersonalModel(learner.personalize(context, torch.tensor([0, 1, 0, 1]), 2), ["a", "b"], "me", 32, 3, {})
    frames = object_frames(10, 32, seed=2)

    def run(folder: str, video: torch.Tensor) -> np.ndarray:
        (tmp_path / folder).mkdir()
        for i, frame in enumerate(video):
            Image.fromarray(frame.permute(1, 2, 0).numpy()).save(tmp_path / folder / f"walk-{i + 1:05d}.png")
        seen = recognize(model, tmp_path / folder)
        assert seen.frame_numbers.tolist() == list(range(1, 11))
        return seen.probabilities

    changed = frames.clone()
    changed[4] = object_frames(1, 32, seed=3)[0]
    before, after = run("before", frames), run("after", changed)
    moved = np.abs(before - after).max(1)
    assert (moved[[0, 1, 2, 3, 7, 8, 9]] == 0).all()
    assert (moved[[4, 5, 6]] > 1e-6).all()
