"""The skip log: what task building left out as corrupt (whole videos, or some frames of a frame folder), kept apart
from decoding so that reports read a typed value, not the builder's internals."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from orbit_lite.data.layout import Video
from orbit_lite.results import Skipped


@dataclass
class SkipLog:
    """What was left out, by video path: whole videos with the reason, and corrupt frames by position."""

    videos: dict[str, str] = field(default_factory=dict)  # path -> why the whole video was left out
    frames: dict[str, dict[int, str]] = field(default_factory=dict)  # frame-folder path -> {position: reason}
    _seen: dict[str, Video] = field(default_factory=dict)  # path -> video, for every video named above

    def leave_out_video(self, video: Video, reason: str) -> None:
        self._seen[str(video.path)] = video
        self.videos[str(video.path)] = reason

    def leave_out_frames(self, video: Video, found: Mapping[int, str]) -> None:
        self._seen[str(video.path)] = video
        self.frames.setdefault(str(video.path), {}).update(found)

    def entries(self) -> list[Skipped]:
        """One entry per video, in path order."""
        out = []
        for path in sorted(set(self.videos) | set(self.frames)):
            video = self._seen.get(path)
            frames = self.frames.get(path, {})
            names = None
            if frames and video is not None and video.frames is not None:
                names = tuple(video.frames.name(p) for p in sorted(frames))
            reason = self.videos.get(path, f"{len(frames)} corrupt frame(s) left out")
            name = video.video_id if video else Path(path).name
            out.append(Skipped(name, path, reason, path in self.videos, names))
        return out
