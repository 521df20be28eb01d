"""What evaluation produces, as typed values: the protocol a run used, each (task, video) score, each task's
predictions, each user's result and the whole run's metrics. A low module: the engine makes them, the report, the
pictures and the command line read them. Each value that is written to a file has one ``to_json``: the file's
layout is decided here and nowhere else."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from orbit_lite.config import SamplingConfig

if TYPE_CHECKING:  # numpy loads only with the values: the command line imports this module to answer at once
    import numpy as np

METRICS = ("frame_accuracy", "frames_to_recognition", "video_accuracy")


@dataclass(frozen=True)
class Protocol:
    name: str
    mode: str
    tasks_per_user: int
    sampling: SamplingConfig


@dataclass(frozen=True)
class VideoScore:
    """One (task, video) score: a row of per_video.csv."""

    user: str
    task: int
    video: str
    object: str
    label: int
    n_frames: int
    frame_accuracy: float
    frames_to_recognition: float
    video_accuracy: float


@dataclass(frozen=True)
class Skipped:
    """One video with something left out: the whole video (``whole_video``) or the corrupt ``frames`` named."""

    video: str
    path: str
    reason: str
    whole_video: bool
    frames: tuple[str, ...] | None = None  # names of the corrupt frames of a frame folder

    def to_json(self) -> dict[str, Any]:
        """An entry of metrics.json's ``skipped_videos`` (and of a personal recognizer's config)."""
        entry: dict[str, Any] = {
            "video": self.video,
            "path": self.path,
            "reason": self.reason,
            "whole_video": self.whole_video,
        }
        return entry if self.frames is None else {**entry, "frames": list(self.frames)}

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> Skipped:
        """An entry as written by :meth:`to_json` (older files may lack ``whole_video``: frames mean it was not)."""
        frames = entry.get("frames")
        whole = entry.get("whole_video", frames is None)
        return cls(entry["video"], entry["path"], entry["reason"], whole, None if frames is None else tuple(frames))


def skipped_counts(skipped: Sequence[Skipped]) -> tuple[int, int]:
    """(corrupt frames, whole videos) left out."""
    return sum(len(s.frames or ()) for s in skipped), sum(1 for s in skipped if s.whole_video)


@dataclass(frozen=True)
class TaskCost:
    """What personalizing one task cost (a personalization shared by several tasks counts in each)."""

    macs: float
    seconds: float
    params_added: int

    def to_json(self) -> dict[str, Any]:
        """results.json's cost keys (the ORBIT reference's names)."""
        return {
            "task_macs_to_personalise": self.macs,
            "task_seconds_to_personalise": self.seconds,
            "task_params_added": self.params_added,
        }


@dataclass(frozen=True)
class TaskResult:
    """One task of a user: the objects it taught (in label order) and, per query video, each scored frame's
    predicted label by frame number."""

    object_names: tuple[str, ...]
    videos: Mapping[str, Mapping[str, int]]
    cost: TaskCost | None = None

    def to_json(self) -> dict[str, Any]:
        """An entry of results.json, in the ORBIT evaluation server's format."""
        videos = {video: dict(frames) for video, frames in self.videos.items()}
        cost = self.cost.to_json() if self.cost is not None else {}
        return {"task_object_list": list(self.object_names), "task_videos": videos, **cost}


@dataclass(frozen=True)
class FramesEncoded:
    context: int = 0
    target: int = 0

    def __add__(self, other: FramesEncoded) -> FramesEncoded:
        return FramesEncoded(self.context + other.context, self.target + other.target)

    @property
    def total(self) -> int:
        return self.context + self.target

    def to_json(self) -> dict[str, int]:
        return {"context": self.context, "target": self.target, "total": self.total}


@dataclass(frozen=True)
class Inference:
    """What recognizing query frames cost, summed over them."""

    macs: float = 0
    seconds: float = 0.0
    frames: int = 0

    def __add__(self, other: Inference) -> Inference:
        return Inference(self.macs + other.macs, self.seconds + other.seconds, self.frames + other.frames)


@dataclass(frozen=True)
class UserResult:
    """Everything one user's evaluation produced."""

    user: str
    scores: tuple[VideoScore, ...] = ()
    tasks: tuple[TaskResult, ...] = ()
    frames_encoded: FramesEncoded = FramesEncoded()
    skipped: tuple[Skipped, ...] = ()  # videos or frames left out as corrupt
    personalizations: int = 0
    dropped_objects: tuple[str, ...] = ()  # objects left out of every task: nothing to teach
    dropped: str | None = None  # why the whole user was left out, if it was
    short_videos: int = 0  # videos left out for having too few frames that pass the filter
    params_base: int = 0  # parameters of the learner (backbone, head, set encoder, FiLM generator)
    inference: Inference = Inference()

    def to_json(self) -> list[dict[str, Any]]:
        """The user's entry of results.json: its tasks."""
        return [t.to_json() for t in self.tasks]


@dataclass(frozen=True)
class Summary:
    """A metric over a set of scores: the mean, its 95% confidence half-width, and how many scores."""

    mean: float
    ci95: float
    n: int

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean, "ci95": self.ci95, "n": self.n}


@dataclass(frozen=True)
class CostSummary:
    """Mean cost per task (MACs and seconds to personalise, parameters a task adds) and per query frame."""

    tasks: int
    task_macs_to_personalise: float | None
    task_seconds_to_personalise: float | None
    params_base: int
    task_params_added: float | None
    frames: int
    inference_macs_per_frame: float | None
    inference_seconds_per_frame: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)  # the fields in order: metrics.json's "cost"


@dataclass(frozen=True)
class RunMetrics:
    """A whole evaluation run: metrics.json."""

    protocol: str
    mode: str
    split: str
    tasks_per_user: int
    users: int
    scores: Mapping[str, Summary]  # per metric of METRICS, over every (task, video) score
    per_user: Mapping[str, Mapping[str, Summary]]  # per user, per metric
    frames_encoded: FramesEncoded
    personalizations: int
    cost: CostSummary
    wall_seconds: float
    skipped_videos: tuple[Skipped, ...] = ()
    dropped_users: tuple[tuple[str, str], ...] = ()  # (user, reason)
    dropped_objects: tuple[tuple[str, str], ...] = ()  # (user, object)
    chance: float | None = None  # frame accuracy of a uniform guess among each task's objects, averaged as scores are

    def to_json(self) -> dict[str, Any]:
        head = {
            "protocol": self.protocol,
            "mode": self.mode,
            "split": self.split,
            "tasks_per_user": self.tasks_per_user,
            "users": self.users,
        }
        return {
            **head,
            **{m: self.scores[m].to_json() for m in METRICS},
            "chance": self.chance,
            "per_user": {u: {m: s.to_json() for m, s in by.items()} for u, by in self.per_user.items()},
            "frames_encoded": self.frames_encoded.to_json(),
            "personalizations": self.personalizations,
            "cost": self.cost.to_json(),
            "wall_seconds": self.wall_seconds,
            "skipped_videos": [s.to_json() for s in self.skipped_videos],
            "dropped_users": [{"user": u, "reason": r} for u, r in self.dropped_users],
            "dropped_objects": [{"user": u, "object": o} for u, o in self.dropped_objects],
        }


@dataclass(frozen=True)
class TrainProgress:
    """Where a training run is: saved in every checkpoint, so that a resumed run goes on from the same task."""

    epoch: int = 0  # the epoch being trained (epochs done)
    position: int = 0  # tasks of that epoch already trained
    step: int = 0  # optimizer steps taken
    best: float | None = None  # best validation frame accuracy so far
    metrics_bytes: int = 0  # metrics.jsonl's length when the checkpoint was saved

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> TrainProgress:
        return cls(**{f: values[f] for f in ("epoch", "position", "step", "best", "metrics_bytes")})


@dataclass(frozen=True)
class Recognition:
    """What the recognizer saw in one input.

    Attributes:
        source: the input's path.
        frame_numbers: ``[F]`` 1-based frame numbers in temporal order.
        predictions: ``[F]`` predicted labels.
        probabilities: ``[F, K]`` softmax over the user's objects.
        video_prediction: the most frequent prediction (ties: lowest label).
        label: the true label when one was given, else None.
    """

    source: str
    frame_numbers: np.ndarray
    predictions: np.ndarray
    probabilities: np.ndarray
    video_prediction: int
    label: int | None = None
    macs: int = 0  # multiply-accumulates of the recognizer over all frames (orbit_lite.cost)
    seconds: float = 0.0  # wall time of the recognizer over all frames, decoding excluded

    def cost_per_frame(self) -> dict[str, float]:
        """Inference MACs and seconds per frame, as ORBIT reports them."""
        n = max(len(self.predictions), 1)
        return {"inference_macs_per_frame": self.macs / n, "inference_seconds_per_frame": self.seconds / n}

    def scores(self, way: int) -> dict[str, float]:
        """Frame accuracy, frames-to-recognition and video accuracy (needs ``label``)."""
        if self.label is None:
            return {}
        from orbit_lite.metrics import frame_accuracy, frames_to_recognition, video_accuracy  # numpy: on use

        return {
            "frame_accuracy": frame_accuracy(self.predictions, self.label),
            "frames_to_recognition": frames_to_recognition(self.predictions, self.label),
            "video_accuracy": video_accuracy(self.predictions, self.label, way),
        }
