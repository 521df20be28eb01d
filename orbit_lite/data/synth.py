"""Deterministic synthetic ORBIT data: the tests' fixture and ``make demo``'s dataset.

Writes the benchmark layout exactly (``<out>/<split>/<user>/<object>/<clean|clutter>/<video>``, frames
``<video>-00001.jpg``, ``<out>/annotations/<split>/<video>.json``), as JPEG frame folders, video files, or both.

The objects are learnable: they differ in shape, colour and texture. Each user owns a pair of *twins* that differ
only in a fine pattern (stripes or checks, period 1/32 of the object), which survives at 224 px and is averaged
away at 84 px, so larger frames help. Clean videos show one object under camera motion (a few frames
blurred or before the object comes into view); clutter videos show it among the same user's other objects while the
camera pans, so it is out of view in some frames (annotated ``object_not_present_issue``).
"""

from __future__ import annotations

import base64
import glob
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from orbit_lite.data.presets import PRESETS, Preset
from orbit_lite.data.synth_render import render_clean, render_clutter, user_looks
from orbit_lite.errors import OrbitLiteError
from orbit_lite.publish import publish_folder

if TYPE_CHECKING:
    from orbit_lite.data.photos import PhotoContent

log = logging.getLogger(__name__)

FORMATS = ("frames", "videos", "mixed")


@dataclass(frozen=True)
class SynthSummary:
    root: Path
    users: dict[str, int]
    videos: int
    frames: int


def _video_id(rng: np.random.Generator) -> str:
    """43 base64url characters, like ORBIT ids: some start with '-' or hold '--' (parsers must cope)."""
    raw = base64.urlsafe_b64encode(rng.bytes(33)).decode()[:43]
    roll = rng.random()
    if roll < 0.15:
        raw = "-" + raw[1:]
    elif roll < 0.3:
        raw = raw[:10] + "--" + raw[12:]
    return raw


class _Writer:
    """Writes one video as a JPEG frame folder or an mp4 file."""

    def __init__(self, directory: Path, name: str, as_file: bool, side: int) -> None:
        self.as_file = as_file
        self.count = 0
        if as_file:
            self.path = directory / f"{name}.mp4"
            self.out = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (side, side))
            if not self.out.isOpened():
                raise OrbitLiteError(f"{self.path}: OpenCV cannot write mp4 here; use --format frames")
        else:
            self.path = directory / name
            self.path.mkdir(parents=True)
        self.name = name

    def write(self, rgb: np.ndarray) -> None:
        self.count += 1
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        if self.as_file:
            self.out.write(bgr)
        else:
            _, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
            (self.path / f"{self.name}-{self.count:05d}.jpg").write_bytes(buf.tobytes())

    def close(self) -> None:
        if self.as_file:
            self.out.release()


def synthesize(
    out: Path | str,
    preset: str = "demo",
    frame_size: int | None = None,
    fmt: str = "frames",
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> SynthSummary:
    """Write a synthetic ORBIT tree to ``out`` (which must not exist or be empty). Deterministic in all arguments.

    Args:
        out: destination folder.
        preset: one of :data:`PRESETS`.
        frame_size: frame side in pixels (default: the preset's).
        fmt: "frames" (JPEG folders), "videos" (mp4 files) or "mixed" (alternating, per video).
        seed: random seed.
        progress: called with the number of videos written so far.
    """
    if preset not in PRESETS:
        raise OrbitLiteError(f"unknown preset {preset!r}; available: {', '.join(PRESETS)}")
    if fmt not in FORMATS:
        raise OrbitLiteError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    spec = PRESETS[preset]
    side = frame_size or spec.frame_size
    if seed < 0:
        raise OrbitLiteError(f"--seed must be >= 0, got {seed}")
    if side < 16:
        raise OrbitLiteError(f"--frame-size must be at least 16, got {side}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OrbitLiteError(f"{out} already exists and is not an empty folder; choose a new folder")
    # Written beside ``out`` and renamed into place: an interrupted run leaves no tree that looks complete (``make
    # demo`` trusts any tree it finds), only a hidden ``.<out>.partial.*`` folder, removed unless the process is killed.
    for left in sorted(out.parent.glob(f".{glob.escape(out.name)}.partial.*")) if out.parent.is_dir() else ():
        log.warning(
            "%s was left by an interrupted `data synth` (synthetic frames only); remove it when no synth is running",
            left,
        )
    with publish_folder(out, name=(".partial.", "")) as tmp:  # the tree gets the mode mkdir would give
        videos, frames = _write_tree(tmp, spec, side, fmt, seed, progress)
    return SynthSummary(out, dict(spec.users), videos, frames)


def _write_tree(
    out: Path, spec: Preset, side: int, fmt: str, seed: int, progress: Callable[[int], None] | None
) -> tuple[int, int]:
    """Every video, frame and annotation file of ``spec`` under ``out``; returns (videos, frames) written."""
    photos = None
    if spec.content != "shapes":
        from orbit_lite.data.photos import PhotoContent  # scikit-image only when its photos are used

        photos = PhotoContent(side, spec.content)
    root_rng = np.random.default_rng(seed)
    user_numbers = root_rng.choice(np.arange(100, 1000), size=sum(spec.users.values()), replace=False)
    videos = frames = 0
    numbers = iter(user_numbers)
    for split, n_users in spec.users.items():
        annotation_dir = out / "annotations" / split
        annotation_dir.mkdir(parents=True)
        for _ in range(n_users):
            user = f"P{next(numbers)}"
            rng = np.random.default_rng([seed, int(user[1:])])
            objects_range, clean_range, clutter_range = spec.ranges(split)
            k = int(rng.integers(objects_range[0], objects_range[1] + 1))
            objects = _user_objects(rng, k, side, photos, split)
            for name, clean, clutter in objects:
                for vtype, (lo, hi), n in (
                    ("clean", clean_range, spec.clean_frames),
                    ("clutter", clutter_range, spec.clutter_frames),
                ):
                    directory = out / split / user / name / vtype
                    directory.mkdir(parents=True, exist_ok=True)
                    for _ in range(int(rng.integers(lo, hi + 1))):
                        video = f"{user}--{name.replace(' ', '-')}--{vtype}--{_video_id(rng)}"
                        as_file = fmt == "videos" or (fmt == "mixed" and videos % 2 == 1)
                        writer = _Writer(directory, video, as_file, side)
                        frames_of = clean(rng, n) if vtype == "clean" else clutter(rng, n)
                        notes = {}
                        for rgb, note in frames_of:
                            writer.write(rgb)
                            notes[f"{video}-{writer.count:05d}.jpg"] = note
                        writer.close()
                        (annotation_dir / f"{video}.json").write_text(json.dumps(notes))
                        videos += 1
                        frames += writer.count
                        if progress is not None:
                            progress(videos)
    return videos, frames


Renderer = Callable[[np.random.Generator, int], Iterator[tuple[np.ndarray, dict]]]


def _user_objects(
    rng: np.random.Generator, k: int, side: int, photos: PhotoContent | None, split: str
) -> list[tuple[str, Renderer, Renderer]]:
    """A user's k objects: (name, clean video renderer, clutter video renderer)."""
    if photos is not None:
        names = photos.user_objects(rng, k, split)
        return [(name, partial(photos.clean, name), partial(photos.clutter, name, names)) for name in names]
    looks = user_looks(rng, k)
    return [
        (
            look.name,
            partial(render_clean, look, side=side),
            partial(render_clutter, look, [other for other in looks if other is not look], side=side),
        )
        for look in looks
    ]


def expected_videos(preset: str) -> int:
    """An upper bound on the number of videos a preset writes (for progress bars)."""
    p = PRESETS[preset]
    total = 0
    for split, users in p.users.items():
        objects, clean, clutter = p.ranges(split)
        total += users * objects[1] * (clean[1] + clutter[1])
    return total
