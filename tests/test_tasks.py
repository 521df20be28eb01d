from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from orbit_lite.config import DataConfig, evaluation_sampling, training_sampling
from orbit_lite.data.annotations import valid_frame_positions
from orbit_lite.data.layout import index_tree
from orbit_lite.data.loader import UserTaskDataset, task_loader
from orbit_lite.data.plan import plan_task
from orbit_lite.data.tasks import TaskBuilder, TaskContext, TestTask, TrainTask
from orbit_lite.tags import expand_filter

DATA = DataConfig(frame_size=32, num_workers=0)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_train_task_shapes_labels_and_names(tiny_frames: Path) -> None:
    user = index_tree(tiny_frames).users("train")[0]
    builder = TaskBuilder(training_sampling(clip_length=2), DATA)
    task = builder.build(user, rng(), train=True)
    assert isinstance(task, TrainTask) and task.user_id == user.user_id
    assert task.object_names == sorted(task.object_names) and set(task.object_names) <= set(user.object_names)
    nc, nt = len(task.context_labels), len(task.target_labels)
    assert task.context_clips.shape == (nc, 2, 3, 32, 32) and task.context_clips.dtype == torch.uint8
    assert task.target_clips.shape == (nt, 2, 3, 32, 32)
    assert set(task.context_labels.tolist()) == set(range(task.way))  # every object has context
    assert len(task.context_video_ids) == nc and len(task.target_video_ids) == nt
    # clean context, clutter target: no video is in both sets
    assert not set(task.context_video_ids) & set(task.target_video_ids)
    assert all("--clean--" in v for v in task.context_video_ids)
    assert all("--clutter--" in v for v in task.target_video_ids)
    for label, vid in zip(task.context_labels.tolist(), task.context_video_ids, strict=True):
        assert f"--{task.object_names[label].replace(' ', '-')}--" in vid  # labels match the object folders


def test_train_tasks_are_shuffled_and_deterministic(tiny_frames: Path) -> None:
    user = index_tree(tiny_frames).users("train")[0]
    builder = TaskBuilder(training_sampling(), DATA)
    a, b = builder.build(user, rng(3), True), builder.build(user, rng(3), True)
    torch.testing.assert_close(a.context_clips, b.context_clips)
    torch.testing.assert_close(a.target_labels, b.target_labels)
    assert a.target_labels.tolist() != sorted(a.target_labels.tolist())  # stacked per video, then shuffled


def test_test_task_uses_all_objects_and_orders_frames(tiny_frames: Path) -> None:
    user = index_tree(tiny_frames).users("test")[0]
    builder = TaskBuilder(evaluation_sampling(clip_length=3), DATA)
    task = builder.build(user, rng(), train=False)
    assert task.object_names == user.object_names  # max way: every object
    assert isinstance(task, TestTask) and task.target_videos and not hasattr(task, "target_clips")
    context = builder.build(user, rng(), train=False, context_only=True)  # personalization decodes no target
    assert type(context) is TaskContext and context.context_video_ids == task.context_video_ids
    assert torch.equal(context.context_clips, task.context_clips) and torch.equal(
        context.context_labels, task.context_labels
    )
    for video in task.target_videos:
        numbers = video.frame_numbers
        assert (numbers[1:] > numbers[:-1]).all()
        assert video.clips.shape == (len(numbers), 3, 3, 32, 32)
        assert 50 <= len(numbers) <= 200


def test_test_targets_drop_absent_frames_and_short_videos(tiny_frames: Path) -> None:
    user = index_tree(tiny_frames).users("test")[0]
    builder = TaskBuilder(evaluation_sampling(), DATA)
    plan = builder.plan(user, rng(), train=False)
    for vp in plan.target:
        notes = __import__("json").loads(vp.video.annotation_path.read_text())
        for number in vp.frame_numbers:
            assert notes[vp.video.frame_name(int(number))]["object_not_present_issue"] is False
    # a video with fewer valid frames than the minimum leaves the query set, but its object stays in the task
    present = expand_filter(["no_object_not_present_issue"])
    counts = {v.video_id: len(valid_frame_positions(v, present)) for v in user.videos() if v.video_type == "clutter"}
    assert {p.video.video_id for p in plan.target} == {v for v, n in counts.items() if n >= 50}
    for minimum in sorted(set(counts.values()) | {max(counts.values()) + 1}):
        strict = TaskBuilder(evaluation_sampling(min_target_frames=minimum), DATA).plan(user, rng(), train=False)
        assert strict.object_names == tuple(user.object_names)
        assert {p.video.video_id for p in strict.target} == {v for v, n in counts.items() if n >= minimum}
    assert not strict.target  # the last minimum excludes every video


def test_clean_clean_split_has_no_overlap(tiny_frames: Path) -> None:
    user = index_tree(tiny_frames).users("train")[0]
    cfg = evaluation_sampling(target_video_type="clean", target_filter=(), min_target_frames=1)
    plan = TaskBuilder(cfg, DATA).plan(user, rng(), train=False)
    context = {p.video.video_id for p in plan.context}
    target = {p.video.video_id for p in plan.target}
    assert context and target and not context & target
    assert all(p.video.video_type == "clean" for p in plan.context + plan.target)


def test_plan_returns_none_for_a_single_object(tiny_frames: Path) -> None:
    user = index_tree(tiny_frames).users("train")[0]
    candidates = TaskBuilder(training_sampling(), DATA).candidates(user)[:1]
    assert plan_task(user.user_id, candidates, training_sampling(), rng(), True) is None


def test_uniform_context_is_the_same_for_every_test_task(tiny_frames: Path) -> None:
    user = index_tree(tiny_frames).users("test")[0]
    builder = TaskBuilder(evaluation_sampling(clip_cap=30), DATA)  # 30 of each video's valid frames per task
    a, b = builder.plan(user, rng(1), False), builder.plan(user, rng(2), False)
    key = lambda plan: sorted((p.video.video_id, tuple(p.clips[:, 0])) for p in plan.context)  # noqa: E731
    assert key(a) == key(b)
    assert any(not np.array_equal(x.clips, y.clips) for x, y in zip(a.target, b.target, strict=True))


def test_corrupt_frame_is_skipped_with_a_warning(tiny_copy: Path, caplog: pytest.LogCaptureFixture) -> None:
    user = index_tree(tiny_copy).users("train")[0]
    builder = TaskBuilder(
        training_sampling(context_clip_method="max", context_shot_method="max", way_method="max"), DATA
    )
    video = user.objects[0].clean[0]
    bad = video.frames.path(4)
    bad.write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING):
        task = builder.build(user, rng(), train=True)
    assert task is not None
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [f"skipping 1 corrupt frame(s) of {video.path}: {bad.name} (not a decodable image)"]
    n_frames_used = task.context_video_ids.count(video.video_id)
    assert n_frames_used == video.num_frames - 1  # every frame but the corrupt one


def test_corrupt_video_file_is_skipped(tiny_videos: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import shutil

    root = Path(shutil.copytree(tiny_videos, tmp_path / "tree"))
    user = index_tree(root).users("train")[0]
    broken = user.objects[1].clean[0]
    broken.path.write_bytes(b"\x00" * 512)
    builder = TaskBuilder(training_sampling(context_shot_method="max", way_method="max"), DATA)
    with caplog.at_level(logging.WARNING):
        task = builder.build(user, rng(), train=True)
    assert task is not None and broken.video_id not in task.context_video_ids
    assert str(broken.path) in builder.skips.videos


def test_loader_gives_the_same_tasks_with_and_without_workers(tiny_frames: Path) -> None:
    users = index_tree(tiny_frames).users("train")

    def run(workers: int) -> list[tuple]:
        dataset = UserTaskDataset(users, training_sampling(), DATA, train=True, tasks_per_user=3, seed=7)
        loader = task_loader(dataset, shuffle=True, num_workers=workers, seed=7)
        out = []
        for epoch in range(2):
            loader.sampler.set_epoch(epoch)
            out += [(t.user_id, tuple(t.context_video_ids), int(t.target_clips.float().sum())) for t in loader]
        return out

    serial, parallel = run(0), run(2)
    assert serial == parallel and len(serial) == 12
    assert serial[:6] != serial[6:]  # each epoch draws afresh


def test_history_windows_avoid_corrupt_frames() -> None:
    from orbit_lite.data.plan import _skip_corrupt

    windows = np.array([[3, 4, 5], [0, 0, 1], [6, 7, 8]])
    out = _skip_corrupt(windows, np.array([4, 7]))
    np.testing.assert_array_equal(out, [[3, 5, 5], [0, 0, 1], [6, 8, 8]])
    assert not np.isin(out, [4, 7]).any()
