"""The ORBIT evaluation protocols: many tasks per user, scored per (task, video), without repeating work.

``orbit2022`` (the default, the README protocol since Dec 2022): 50 tasks per user over all the user's objects; the
context is every clean video sampled uniformly; the query is every clutter video with object-absent frames removed,
a video with fewer than 50 valid frames left out, and up to 200 random frames per video per task; frame accuracy
per (task, video). ``orbit2021`` (the dataset paper's): 5 tasks per user, a random context per task, every frame of
every clutter video (up to ``frame_cap``), and frames-to-recognition and video accuracy besides frame accuracy.

The work is shared where the draws allow: when the context sampling is deterministic (uniform
frames of every video of every object, as in orbit2022) the user is personalized once, not once per task; and each
query video's frames that *any* task samples are decoded and encoded once, then every task is scored from those
features.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import typing
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch

from orbit_lite.choices import MODES, PROTOCOLS
from orbit_lite.config import Config, SamplingConfig, to_dict
from orbit_lite.cost import ChunkMacs, DeviceClock, Measured, count_parameters, measure, task_parameters
from orbit_lite.data.layout import User, index_benchmark
from orbit_lite.data.plan import TaskPlan, VideoPlan
from orbit_lite.data.read_ahead import read_ahead
from orbit_lite.data.tasks import TaskBuilder
from orbit_lite.engine import distributed
from orbit_lite.engine.distributed import Dist
from orbit_lite.engine.model import ModelSource, open_model, source_record
from orbit_lite.engine.report import check_scored, write_results
from orbit_lite.errors import OrbitLiteError
from orbit_lite.learners import Learner, Personalized
from orbit_lite.metrics import frame_accuracy, frames_to_recognition, video_accuracy
from orbit_lite.out_lock import claim_out
from orbit_lite.results import (
    FramesEncoded,
    Inference,
    Protocol,
    RunMetrics,
    TaskCost,
    TaskResult,
    UserResult,
    VideoScore,
)
from orbit_lite.runtime import select_device

log = logging.getLogger(__name__)


def make_protocol(cfg: Config, name: str = "orbit2022", mode: str = "clutter", tasks: int | None = None) -> Protocol:
    """The sampling of a protocol, built on the config's test sampling (whose defaults are orbit2022's)."""
    if name not in PROTOCOLS:
        raise OrbitLiteError(f"unknown protocol {name!r}; available: {', '.join(PROTOCOLS)}")
    if mode not in MODES:
        raise OrbitLiteError(f"unknown mode {mode!r}; available: {', '.join(MODES)}")
    sampling = cfg.test_sampling
    if name == "orbit2021":  # random context per task; every frame of every query video; no annotation filter
        sampling = dataclasses.replace(
            sampling, context_clip_method="random", target_clip_method="max", target_filter=()
        )
    if mode == "clean":  # the clean/clean split: the first clean videos teach, the others test
        sampling = dataclasses.replace(sampling, target_video_type="clean", target_filter=())
    count = tasks if tasks is not None else (50 if name == "orbit2022" else 5)
    if count < 1:
        raise OrbitLiteError(f"--tasks must be >= 1, got {count}")
    return Protocol(name, mode, count, sampling)


@dataclass
class _Tally:
    """A user's result while it is being evaluated; :func:`evaluate_user` returns it as a :class:`UserResult`."""

    user: str
    scores: list[VideoScore] = field(default_factory=list)
    tasks: list[TaskResult] = field(default_factory=list)
    context: int = 0  # frames encoded
    target: int = 0
    personalizations: int = 0
    dropped_objects: list[str] = field(default_factory=list)
    dropped: str | None = None
    params_base: int = 0
    inference: Inference = field(default_factory=Inference)


def task_seed(seed: int, user_id: str, task: int) -> list[int]:
    """The generator seed of a user's task: independent of which other users are evaluated, or where."""
    return [seed, zlib.crc32(user_id.encode()), task]


def context_is_deterministic(sampling: SamplingConfig, builder: TaskBuilder, user: User) -> bool:
    """True when every task of ``user`` gets the same context clips (so one personalization serves them all)."""
    candidates = builder.candidates(user)
    return (
        sampling.way_method == "max"
        and len(candidates) <= sampling.object_cap
        and sampling.context_shot_method in ("max", "specific")
        and all(len(c.context) <= sampling.context_shot_cap for c in candidates)
        and sampling.context_clip_method in ("uniform", "max")
    )


def _personalize(learner: Learner, builder: TaskBuilder, user: User, rng, chunk: int, result: _Tally):
    built = builder.build_with_plan(user, rng, train=False, context_only=True)
    if built is None:
        return None
    plan, task = built
    result.context += int(task.context_clips.shape[0] * task.context_clips.shape[1])
    result.personalizations += 1
    result.params_base = count_parameters(learner)
    personal, cost = measure(
        lambda: learner.personalize(task.context_clips, task.context_labels, task.way, chunk), learner.device
    )
    return plan, personal, cost


def _task_cost(personal: Personalized, cost: Measured) -> TaskCost:
    """results.json's cost keys of a task (the reference's name where it has one). A personalization shared by
    several tasks counts in each: a task's cost is what personalizing it alone costs."""
    tuned = sum(2 * g.numel() for g, _ in (personal.film or {}).values()) + personal.tuned_values
    return TaskCost(cost.macs, round(cost.seconds, 6), task_parameters(personal.state, tuned))


def _encode_union(
    personal: Personalized, builder: TaskBuilder, plans: Sequence[TaskPlan], chunk: int, result: _Tally, macs: ChunkMacs
) -> dict[str, tuple[np.ndarray, torch.Tensor]]:
    """Per query video: the sorted positions any of ``plans`` samples and their frame features ``[U, D]``.

    On a GPU the next video is decoded on a background thread while this one is encoded; nothing waits for the
    device per video: MACs come from ``macs`` (counted once per chunk shape), seconds from a :class:`DeviceClock`."""
    wanted: dict[str, list[np.ndarray]] = {}
    videos: dict[str, VideoPlan] = {}
    for plan in plans:
        for vp in plan.target:
            wanted.setdefault(vp.video.video_id, []).append(vp.clips.reshape(-1))
            videos[vp.video.video_id] = vp

    def read(video_id: str) -> tuple[np.ndarray, torch.Tensor] | None:
        return builder.read_available(videos[video_id].video, np.unique(np.concatenate(wanted[video_id])))

    clock = DeviceClock(personal.logits_device())
    encode = partial(personal.frame_features, chunk_size=chunk)
    key = (personal.film is not None,)  # FiLM adds its own ops to the backbone's
    rows = partial(personal.backbone.buckets.seen, device=personal.logits_device())
    out, counts = {}, []
    # ahead on a GPU only: on a CPU decoding and the model share the cores (measured no faster there)
    for video_id, frames_read in read_ahead(read, list(wanted), ahead=personal.logits_device().type == "cuda"):
        if frames_read is None:  # unreadable: left out, and listed by the builder
            continue
        positions, frames = frames_read
        features, video_macs = clock.time(lambda f=frames: macs.encode(encode, f, chunk, key, rows))
        del frames_read, frames  # the next video is decoding: hold one video's frames, not two
        out[video_id] = (positions, features)
        result.target += len(positions)
        counts.append((video_macs, len(positions)))
    for (video_macs, frames), seconds in zip(counts, clock.seconds(), strict=True):
        result.inference += Inference(video_macs, seconds, frames)
    return out


def _score_plan(
    personal: Personalized, plan: TaskPlan, index: int, features: dict, result: _Tally, cost: TaskCost | None = None
) -> None:
    videos: dict[str, dict[str, int]] = {}
    for vp in plan.target:
        if vp.video.video_id not in features:
            continue  # undecodable: skipped and reported
        positions, feats = features[vp.video.video_id]
        readable = np.isin(vp.clips, positions).all(1)  # frames found corrupt while encoding are left out
        if not readable.any():
            continue
        rows = torch.from_numpy(np.searchsorted(positions, vp.clips[readable]))  # [F, L] rows into encoded frames
        clip_features = feats[rows.to(feats.device)].mean(1)
        predictions = personal.logits(clip_features).argmax(1).cpu().numpy()
        numbers = vp.frame_numbers[readable]
        videos[vp.video.video_id] = {str(int(n)): int(p) for n, p in zip(numbers, predictions, strict=True)}
        result.scores.append(
            VideoScore(
                plan.user_id,
                index,
                vp.video.video_id,
                plan.object_names[vp.label],
                vp.label,
                len(predictions),
                frame_accuracy(predictions, vp.label),
                frames_to_recognition(predictions, vp.label),
                video_accuracy(predictions, vp.label, len(plan.object_names)),
            )
        )
    result.tasks.append(TaskResult(tuple(plan.object_names), videos, cost))


def evaluate_user(
    learner: Learner,
    user: User,
    protocol: Protocol,
    cfg: Config,
    seed: int = 0,
    share_work: bool = True,
    macs: ChunkMacs | None = None,
) -> UserResult:
    """All tasks of one user. ``share_work=False`` personalizes and encodes every task on its own (the reference
    code's way; for comparison): the same draws, the same scores, more work. Undecodable videos are skipped with a
    warning and listed in the result. ``macs``: the query encoding's MAC counts, shared by every user of a run
    (they depend on the learner and the chunk shapes only)."""
    builder = TaskBuilder(protocol.sampling, cfg.data)
    tally = _Tally(user.user_id)
    _evaluate(learner, builder, user, protocol, cfg, seed, share_work, tally, macs or ChunkMacs())
    return UserResult(
        tally.user,
        tuple(tally.scores),
        tuple(tally.tasks),
        FramesEncoded(tally.context, tally.target),
        tuple(builder.skipped()),
        tally.personalizations,
        tuple(tally.dropped_objects),
        tally.dropped,
        len(builder.short_videos),
        tally.params_base,
        tally.inference,
    )


def _note_unteachable(builder: TaskBuilder, user: User, result: _Tally) -> None:
    """Objects without a usable clean video cannot be taught, so no task includes them: warn and record, once."""
    for c in builder.candidates(user):
        if not c.context and c.name not in result.dropped_objects:
            log.warning("user %s: no usable clean video for %s; left out of every task", user.user_id, c.name)
            result.dropped_objects.append(c.name)


def _drop_user(builder: TaskBuilder, user: User, result: _Tally) -> None:
    # Tasks stop at the first object too few: the clean videos no task drew are still unread. Read them now, so the
    # reason counts what is really teachable and every corrupt video is listed.
    builder.probe_context(user)
    _note_unteachable(builder, user, result)
    candidates = builder.candidates(user)
    teachable = sum(1 for c in candidates if c.context)
    corrupt = sum(1 for s in builder.skipped() if s.whole_video)
    objects = f"{teachable} of its {len(candidates)} objects {'has' if teachable == 1 else 'have'}"
    videos = f"{corrupt} video{'' if corrupt == 1 else 's'}"
    result.dropped = f"{objects} a usable clean video ({videos} left out as corrupt); a task needs two"
    log.warning("user %s: left out of the evaluation: %s", user.user_id, result.dropped)


def _evaluate(
    learner: Learner,
    builder: TaskBuilder,
    user: User,
    protocol: Protocol,
    cfg: Config,
    seed: int,
    share_work: bool,
    result: _Tally,
    macs: ChunkMacs,
) -> None:
    chunk = cfg.lite.chunk_size
    _note_unteachable(builder, user, result)
    rngs = [np.random.default_rng(task_seed(seed, user.user_id, t)) for t in range(protocol.tasks_per_user)]
    once = share_work and context_is_deterministic(protocol.sampling, builder, user)
    if once:  # draw task 0 first (it may discover corrupt files), then every task's plan from its own seed
        first = _personalize(
            learner, builder, user, np.random.default_rng(task_seed(seed, user.user_id, 0)), chunk, result
        )
        _note_unteachable(builder, user, result)  # task 0 may have found more corrupt files
        if first is None:
            _drop_user(builder, user, result)
            return
        personal, cost = first[1], _task_cost(first[1], first[2])
        plans = [builder.plan(user, rng, train=False) for rng in rngs]
        features = _encode_union(personal, builder, plans, chunk, result, macs)
        for t, plan in enumerate(plans):
            _score_plan(personal, plan, t, features, result, cost)
        return
    for t, rng in enumerate(rngs):
        built = _personalize(learner, builder, user, rng, chunk, result)
        _note_unteachable(builder, user, result)
        if built is None:
            _drop_user(builder, user, result)
            return
        plan, personal, cost = built
        features = _encode_union(personal, builder, [plan], chunk, result, macs)
        _score_plan(personal, plan, t, features, result, _task_cost(personal, cost))


def evaluate_users(
    learner: Learner,
    users: Sequence[User],
    protocol: Protocol,
    cfg: Config,
    seed: int = 0,
    share_work: bool = True,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[UserResult], float]:
    """Evaluate every user; returns the per-user results and the wall time in seconds."""
    start = time.perf_counter()
    results = []
    macs = ChunkMacs()  # one learner: each chunk shape's MACs are counted once for the whole run
    for user in users:
        results.append(evaluate_user(learner, user, protocol, cfg, seed, share_work, macs))
        if progress is not None:
            progress(user.user_id)
    return results, time.perf_counter() - start


@dataclass(frozen=True)
class EvaluationRequest:
    """What to evaluate: a model on a split's users of the ORBIT tree ``data``, written to ``out_dir``."""

    data: Path
    source: ModelSource
    out_dir: Path
    protocol: str = "orbit2022"  # one of choices.PROTOCOLS
    mode: str = "clutter"  # one of choices.MODES
    split: str = "test"  # one of choices.SPLITS
    users: tuple[str, ...] | None = None  # None: every user of the split
    tasks: int | None = None  # None: the protocol's number
    seed: int = 0
    device: str = "auto"
    overwrite: bool = False


@dataclass(frozen=True)
class EvaluationReport:
    """What a finished evaluation wrote (``metrics``: metrics.json, as a typed value) and how long it took."""

    out_dir: Path
    protocol: Protocol
    split: str
    seconds: float
    metrics: RunMetrics


class EvaluationMonitor(typing.Protocol):
    """Told how many users this process evaluates, then of each one done (a progress bar, a log)."""

    def started(self, users: int) -> None: ...

    def user_done(self, user: str) -> None: ...


def run(
    request: EvaluationRequest, dist: Dist | None = None, monitor: EvaluationMonitor | None = None
) -> EvaluationReport | None:
    """Evaluate ``request``: open the model, deal the users out across the ranks (under torchrun), gather their
    results on rank 0, which holds the output folder and writes every file at once. Returns the report on rank 0
    and None on the other ranks. ``dist``: the job's layout, which the front end reads from torchrun's environment
    (the engine reads no environment variables); None is one process."""
    dist = dist if dist is not None else distributed.from_env({})
    with claim_out(request.out_dir) if dist.main else contextlib.nullcontext():  # one writer: rank 0
        return _run(request, dist, monitor)


def _run(r: EvaluationRequest, dist: Dist, monitor: EvaluationMonitor | None) -> EvaluationReport | None:
    device = distributed.setup(dist, select_device(r.device, "--device "))
    learner, cfg = open_model(r.source, device)
    protocol = make_protocol(cfg, r.protocol, r.mode, r.tasks)
    index = index_benchmark(r.data)
    chosen = index.users(r.split) if r.users is None else tuple(index.user(u, r.split) for u in r.users)
    if not chosen:
        raise OrbitLiteError(f"{index.root / r.split}: the {r.split} split holds no users")
    mine = chosen[dist.rank :: dist.world]
    try:
        if monitor is not None:
            monitor.started(len(mine))
        progress = monitor.user_done if monitor is not None else None
        results, seconds = evaluate_users(learner, mine, protocol, cfg, r.seed, progress=progress)
        gathered = distributed.gather_to_main((results, seconds), dist)
    finally:
        distributed.teardown(dist)
    if gathered is None:
        return None
    order = {u.user_id: i for i, u in enumerate(chosen)}
    results = sorted((res for part, _ in gathered for res in part), key=lambda res: order[res.user])
    seconds = max(s for _, s in gathered)
    evaluation = {
        "protocol": protocol.name,
        "mode": protocol.mode,
        "split": r.split,
        "tasks_per_user": protocol.tasks_per_user,
        "seed": r.seed,
        **source_record(r.source),
        "sampling": to_dict(protocol.sampling),
    }
    check_scored(results, protocol)
    config = {**to_dict(cfg), "evaluation": evaluation}
    metrics = write_results(r.out_dir, results, protocol, r.split, seconds, config, r.overwrite)
    return EvaluationReport(r.out_dir, protocol, r.split, seconds, metrics)
