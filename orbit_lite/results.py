"""What evaluation produces, as typed values: the protocol a run used, each (task, video) score and each user's
result. A low module: the engine fills them in, the report and the pictures read them."""

from __future__ import annotations

from dataclasses import dataclass, field

from orbit_lite.config import SamplingConfig


@dataclass(frozen=True)
class Protocol:
    name: str
    mode: str
    tasks_per_user: int
    sampling: SamplingConfig


@dataclass
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


@dataclass
class UserResult:
    user: str
    scores: list[VideoScore] = field(default_factory=list)
    tasks: list[dict] = field(default_factory=list)  # results.json entries
    frames_encoded: dict[str, int] = field(default_factory=lambda: {"context": 0, "target": 0})
    skipped: list[dict] = field(default_factory=list)  # videos or frames left out (TaskBuilder.skipped)
    personalizations: int = 0
    dropped_objects: list[str] = field(default_factory=list)  # objects left out of every task: nothing to teach
    dropped: str | None = None  # why the whole user was left out, if it was
    short_videos: int = 0  # videos left out for having too few frames that pass the filter
    params_base: int = 0  # parameters of the learner (backbone, head, set encoder, FiLM generator)
    inference: dict[str, float] = field(default_factory=lambda: {"macs": 0, "seconds": 0.0, "frames": 0})
