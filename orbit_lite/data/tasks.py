"""Tasks as typed values, built from plans by decoding only the frames they need (the Dataset/DataLoader over users
is in :mod:`orbit_lite.data.loader`).

A corrupt frame or video met while building a task is skipped with a warning that names it, and the task is drawn
again without it, so a long run never dies on one bad file. When one frame of a frame folder fails, every frame of
that folder is checked at once: a video whose frames are all broken costs one redraw, not one per frame.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from orbit_lite.config import DataConfig, SamplingConfig
from orbit_lite.data.annotations import valid_frame_positions
from orbit_lite.data.layout import User, Video
from orbit_lite.data.plan import CandidateObject, TaskPlan, UsableVideo, VideoPlan, plan_task
from orbit_lite.data.sampling import clean_clean_split
from orbit_lite.data.skips import SkipLog
from orbit_lite.data.video import FrameReader, as_frames
from orbit_lite.errors import CorruptMediaError
from orbit_lite.progress import Progress, Step
from orbit_lite.results import Skipped
from orbit_lite.tags import expand_filter

log = logging.getLogger(__name__)

_SHOWN_FRAMES = 3  # corrupt frame names quoted in one warning


@dataclass
class TargetVideo:
    """One test video's sampled frames.

    Attributes:
        video_id: the video's id (folder name or file stem), as in results files.
        label: the object's label in the task.
        clips: ``[F, L, 3, S, S]`` uint8; clip f ends at frame ``frame_numbers[f]`` and holds its causal history.
        frame_numbers: ``[F]`` int64, 1-based, increasing.
    """

    video_id: str
    label: int
    clips: torch.Tensor
    frame_numbers: torch.Tensor


@dataclass
class TaskContext:
    """A user's context set: what a learner personalizes on. The common part of both kinds of task; on its own, what
    personalization (``orbit-lite personalize``, evaluation's first step) decodes.

    Attributes:
        user_id: the user the task comes from.
        object_names: object names in label order (label i is ``object_names[i]``).
        context_clips: ``[Nc, L, 3, S, S]`` uint8 RGB, shuffled. Frame tensors are channels-last views of the
            decoded HWC pixels (no copy); ``.contiguous()`` gives the plain layout where one is needed.
        context_labels: ``[Nc]`` int64, in ``[0, way)``.
        context_video_ids: ``Nc`` video ids, one per context clip.
        key: ``(epoch, item)`` of the loader that drew it: seeds anything random downstream.
    """

    user_id: str
    object_names: list[str]
    context_clips: torch.Tensor
    context_labels: torch.Tensor
    context_video_ids: list[str]
    key: tuple[int, int] | None = None

    @property
    def way(self) -> int:
        return len(self.object_names)

    @property
    def clip_length(self) -> int:
        return int(self.context_clips.shape[1])

    def pin_memory(self) -> TaskContext:
        """The task with its clip tensors in page-locked memory (``DataLoader(pin_memory=True)`` calls this)."""
        return dataclasses.replace(self, context_clips=self.context_clips.pin_memory())


@dataclass(kw_only=True)
class TrainTask(TaskContext):
    """A meta-training task: a context set and target clips drawn from other videos, all stacked for one step.

    Attributes:
        target_clips: ``[Nt, L, 3, S, S]`` uint8 RGB, shuffled (channels-last views, as the context).
        target_labels: ``[Nt]`` int64, in ``[0, way)``.
        target_video_ids: ``Nt`` video ids, one per target clip; no video is both context and target.
    """

    target_clips: torch.Tensor
    target_labels: torch.Tensor
    target_video_ids: list[str]

    def pin_memory(self) -> TrainTask:
        pinned = super().pin_memory()
        return dataclasses.replace(pinned, target_clips=self.target_clips.pin_memory())


@dataclass(kw_only=True)
class TestTask(TaskContext):
    """A test task (validation during training): a context set and every target video's frames, kept per video because
    each video is scored on its own.

    Attributes:
        target_videos: one :class:`TargetVideo` per target video, ``clips`` ``[F, L, 3, S, S]`` uint8 each.
    """

    __test__ = False  # not a pytest test class, whatever its name
    target_videos: list[TargetVideo]


class TaskBuilder:
    """Turns a user into tasks: candidate objects (filtered, cached per user), plans, decoded frames.

    Args:
        sampling: task sampling options.
        data: frame size and video backend.
        progress: hears of each context video decoded (``read``: k of the task's n videos).
    """

    def __init__(self, sampling: SamplingConfig, data: DataConfig, progress: Progress | None = None) -> None:
        self.sampling = sampling
        self.progress = progress
        self.reader = FrameReader(data.frame_size, data.video_backend, data.decode_threads)
        self._context_tags = expand_filter(sampling.context_filter)
        self._target_tags = expand_filter(sampling.target_filter)
        self._candidates: dict[str, list[CandidateObject]] = {}
        self.skips = SkipLog()  # what was left out as corrupt, for reports
        self.short_videos: set[str] = set()  # paths of readable videos with too few frames that pass the filter

    def candidates(self, user: User) -> list[CandidateObject]:
        """The user's objects in label order with their usable videos (cached)."""
        if user.user_id not in self._candidates:
            self._candidates[user.user_id] = [self._candidate(user, i) for i in range(len(user.objects))]
        return self._candidates[user.user_id]

    def _candidate(self, user: User, index: int) -> CandidateObject:
        cfg, obj = self.sampling, user.objects[index]
        if cfg.target_video_type == "clean":  # clean/clean split of the sorted clean videos
            ctx_idx, tgt_idx = clean_clean_split(len(obj.clean), cfg.clean_context_videos)
            context_videos = [obj.clean[i] for i in ctx_idx]
            target_videos = [obj.clean[i] for i in tgt_idx]
        else:
            context_videos, target_videos = list(obj.clean), list(obj.clutter)
        context = self._usable(context_videos, self._context_tags, cfg.min_context_frames)
        target = self._usable(target_videos, self._target_tags, cfg.min_target_frames)
        return CandidateObject(obj.name, context, target)

    def _usable(self, videos: Sequence[Video], tags: frozenset[str], min_frames: int) -> tuple[UsableVideo, ...]:
        out = []
        for video in videos:
            if str(video.path) in self.skips.videos:
                continue
            try:
                valid = valid_frame_positions(video, tags, self.sampling.require_annotations)
            except CorruptMediaError as e:
                self._mark_bad(video, e)
                continue
            corrupt = np.array(sorted(self.skips.frames.get(str(video.path), ())), dtype=np.int64)
            readable = valid[~np.isin(valid, corrupt)]
            if len(readable) >= min_frames:
                out.append(UsableVideo(video, readable, corrupt))
            elif len(valid) < min_frames:
                self.short_videos.add(str(video.path))
            else:  # usable but for its corrupt frames: say so, once
                reason = f"{len(corrupt)} of {video.num_frames} frames corrupt; too few usable frames left"
                log.warning("skipping video %s: %s", video.path, reason)
                self.skips.leave_out_video(video, reason)
        return tuple(out)

    def _mark_bad(self, video: Video, error: CorruptMediaError) -> None:
        """Leave out the corrupt frames of a frame folder (all of them, found at once) or a whole video from now on."""
        failed = Path(str(error.path))
        in_folder = video.frames is not None and failed.parent == video.path
        position = video.frames.position_of(failed.name) if in_folder else None
        if position is not None:
            found = self._probe_frames(video)
            found.setdefault(position, error.reason)
            self.skips.leave_out_frames(video, found)
            names = [f"{video.frames.name(p)} ({found[p]})" for p in sorted(found)[:_SHOWN_FRAMES]]
            more = f" and {len(found) - _SHOWN_FRAMES} more" if len(found) > _SHOWN_FRAMES else ""
            log.warning("skipping %d corrupt frame(s) of %s: %s%s", len(found), video.path, ", ".join(names), more)
        else:
            log.warning("skipping video %s: %s", video.path, error.reason)
            self.skips.leave_out_video(video, error.reason)
        self._candidates.pop(video.user, None)

    def _probe_frames(self, video: Video) -> dict[int, str]:
        """Every corrupt frame of a frame folder: position -> reason (each frame decoded on its own)."""
        assert video.frames is not None
        found = {}
        for position in range(video.frames.count):
            try:
                self.reader.read(video, [position])
            except CorruptMediaError as e:
                found[position] = e.reason
        return found

    def read_available(self, video: Video, positions: np.ndarray) -> tuple[np.ndarray, torch.Tensor] | None:
        """Frames at ``positions`` without the corrupt ones: (positions read, ``[U, 3, S, S]``); None when the whole
        video is unreadable. What is left out is recorded as in task building."""
        known = np.array(sorted(self.skips.frames.get(str(video.path), ())), dtype=np.int64)
        positions = positions[~np.isin(positions, known)]
        for _ in range(2):  # a failed frame makes one probe of the whole folder; a second failure is the video's
            if not len(positions):
                return None
            try:
                return positions, self.reader.read(video, positions)
            except CorruptMediaError as e:
                self._mark_bad(video, e)
            if str(video.path) in self.skips.videos:
                return None
            positions = positions[~np.isin(positions, np.array(sorted(self.skips.frames[str(video.path)])))]
        return None

    def probe_context(self, user: User, chunk: int = 64) -> None:
        """Decode every context frame of ``user`` not yet known to be corrupt, so that a report of what was left
        out is complete and the count of teachable objects true. Tasks only meet a corrupt file when they draw it;
        this is for when a user is dropped (rare, and worth the one-off cost of a full read)."""
        for candidate in self.candidates(user):
            for usable in candidate.context:
                for start in range(0, len(usable.valid), chunk):  # in chunks: a long video never sits in memory
                    if (
                        self.read_available(usable.video, usable.valid[start : start + chunk]) is None
                        and str(usable.video.path) in self.skips.videos
                    ):
                        break
        self._candidates.pop(user.user_id, None)  # recomputed from what was found

    def skipped(self) -> list[Skipped]:
        """What was left out so far, one entry per video."""
        return self.skips.entries()

    def plan(self, user: User, rng: np.random.Generator, train: bool) -> TaskPlan | None:
        """A task plan for ``user``, or None (with a warning) when it has fewer than two usable objects."""
        plan = plan_task(user.user_id, self.candidates(user), self.sampling, rng, train)
        if plan is None:
            log.warning("user %s has fewer than two objects with usable videos; no task", user.user_id)
        return plan

    def load(self, plan: TaskPlan, context_only: bool = False) -> TaskContext:
        """Decode the frames of ``plan``: a :class:`TaskContext` with ``context_only``, else a :class:`TrainTask`
        for a training plan and a :class:`TestTask` for a test plan. Raises CorruptMediaError naming the file at
        fault."""
        context = self._stack(plan.context, plan.context_order, self.progress)
        if context_only:
            return TaskContext(plan.user_id, list(plan.object_names), *context)
        if plan.train:
            assert plan.target_order is not None
            clips, labels, ids = self._stack(plan.target, plan.target_order)
            names = list(plan.object_names)
            return TrainTask(
                plan.user_id, names, *context, target_clips=clips, target_labels=labels, target_video_ids=ids
            )
        videos = [
            TargetVideo(p.video.video_id, p.label, self._clips(p), torch.from_numpy(p.frame_numbers))
            for p in plan.target
        ]
        return TestTask(plan.user_id, list(plan.object_names), *context, target_videos=videos)

    def _clips(self, plan: VideoPlan) -> torch.Tensor:
        k, length = plan.clips.shape
        out = np.empty((k, length, self.reader.size, self.reader.size, 3), dtype=np.uint8)
        self.reader.read_into(plan.video, plan.clips, out.reshape(k * length, *out.shape[2:]))
        return as_frames(out)

    def _stack(
        self, plans: Sequence[VideoPlan], order: np.ndarray, progress: Progress | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """Decode every plan's clips straight into its shuffled slots of one ``[N, L, S, S, 3]`` buffer, telling
        ``progress`` of each video done."""
        n, size, length = len(order), self.reader.size, self.sampling.clip_length
        buffer = np.empty((n, length, size, size, 3), dtype=np.uint8)
        frames = buffer.reshape(n * length, size, size, 3)
        labels = np.empty(n, dtype=np.int64)
        ids = [""] * n
        destination = np.argsort(order)  # stacked clip j goes to slot destination[j]
        start = 0
        if progress is not None:
            progress(Step("read", 0, len(plans)))
        for k, p in enumerate(plans, 1):
            slots = destination[start : start + len(p.clips)]
            rows = slots[:, None] * length + np.arange(length)[None, :]
            self.reader.read_into(p.video, p.clips, frames, rows)
            labels[slots] = p.label
            for slot in slots:
                ids[slot] = p.video.video_id
            start += len(p.clips)
            if progress is not None:
                progress(Step("read", k, len(plans)))
        return as_frames(buffer), torch.from_numpy(labels), ids

    def build(
        self, user: User, rng: np.random.Generator, train: bool, context_only: bool = False
    ) -> TaskContext | None:
        """Plan and load one task (of :meth:`load`'s kind), redrawing without any frame or video that fails to
        decode; None if no task is possible. A redraw restarts ``rng`` from where it was, so it differs from the first
        draw only by the files left out."""
        built = self.build_with_plan(user, rng, train, context_only)
        return None if built is None else built[1]

    def build_with_plan(
        self, user: User, rng: np.random.Generator, train: bool, context_only: bool = False
    ) -> tuple[TaskPlan, TaskContext] | None:
        """:meth:`build`, also returning the plan the task was loaded from."""
        start = rng.bit_generator.state
        # Each failure leaves out a whole video or all the corrupt frames of one (found at once), so a redraw per
        # video (and one more) always suffices.
        for _ in range(sum(1 for _ in user.videos()) + 1):
            rng.bit_generator.state = start
            plan = self.plan(user, rng, train)
            if plan is None:
                return None
            try:
                return plan, self.load(plan, context_only)
            except CorruptMediaError as e:
                self.mark_bad(plan, e)
        log.warning("user %s: no task without corrupt files could be drawn", user.user_id)
        return None

    def mark_bad(self, plan: TaskPlan, error: CorruptMediaError) -> None:
        """Leave the frame or video named by ``error`` (met while loading ``plan``) out of later plans."""
        failed = Path(str(error.path))
        video = next(p.video for p in plan.context + plan.target if p.video.path in (failed, failed.parent))
        self._mark_bad(video, error)
