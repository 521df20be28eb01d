"""Validate an ORBIT tree or a user's folder and list every problem; never modifies anything.

Looks for: folders that break the layout, stray files, empty videos, frame names that do not follow
``<video>-NNNNN.jpg`` or skip numbers, unreadable or corrupt frames and video files, and (where an ``annotations``
folder exists) missing, unreadable, orphaned or mismatched annotation files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from orbit_lite.data.annotations import annotated_videos
from orbit_lite.data.layout import (
    ANNOTATIONS_DIR,
    SPLITS,
    VIDEO_EXTENSIONS,
    VIDEO_TYPES,
    DatasetIndex,
    Video,
    index_tree,
    parse_video_name,
)
from orbit_lite.data.video import FrameReader, decode_image_bytes
from orbit_lite.errors import CorruptMediaError

_PROBE_SIZE = 16  # decode checks only need to know that a frame decodes: decode at the smallest DCT scale
_VIDEO_CHUNK = 64
_TAIL_BYTES = 4096  # enough to see past the zero padding some cameras append after a JPEG's end marker


@dataclass(frozen=True)
class Problem:
    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def _entries(path: Path) -> list[os.DirEntry]:
    with os.scandir(path) as it:
        return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)


def _check_structure(index: DatasetIndex) -> list[Problem]:
    """Things the index silently ignores: stray files and folders at each level of the layout."""
    problems: list[Problem] = []
    benchmark = index.layout == "benchmark"
    user_dirs = [index.root]
    if benchmark:
        user_dirs = []
        for split in index.splits:
            for e in _entries(index.root / split):
                if e.is_dir():
                    user_dirs.append(Path(e.path))
                else:
                    problems.append(Problem(Path(e.path), "stray file where a user folder is expected"))
    for user in user_dirs:
        for obj in _entries(user):
            if obj.name == ANNOTATIONS_DIR and not benchmark:
                continue
            if not obj.is_dir():
                problems.append(Problem(Path(obj.path), "stray file where an object folder is expected"))
                continue
            problems += _check_object(Path(obj.path), flat_allowed=not benchmark)
    return problems


def _check_object(path: Path, flat_allowed: bool) -> list[Problem]:
    problems = []
    children = _entries(path)
    types = [e for e in children if e.is_dir() and e.name in VIDEO_TYPES]
    if not flat_allowed:
        for e in children:
            if e.name not in VIDEO_TYPES:
                problems.append(
                    Problem(Path(e.path), "unexpected entry in an object folder; expected clean/ and clutter/")
                )
        if not any(e.name == "clean" for e in types):
            problems.append(Problem(path, "object has no clean/ folder, so it cannot be taught"))
    for t in types:
        for e in _entries(Path(t.path)):
            if not e.is_dir() and not e.name.lower().endswith(VIDEO_EXTENSIONS):
                problems.append(Problem(Path(e.path), f"not a frame folder or a {'/'.join(VIDEO_EXTENSIONS)} file"))
    return problems


def _check_names(video: Video, benchmark: bool) -> list[Problem]:
    problems = []
    if benchmark:
        parsed = parse_video_name(video.video_id)
        if parsed is None:
            problems.append(Problem(video.path, "name is not <user>--<object>--<clean|clutter>--<id>"))
        elif parsed.user != video.user or parsed.video_type != video.video_type:
            problems.append(
                Problem(
                    video.path,
                    f"name says {parsed.user}/{parsed.video_type}, folders say {video.user}/{video.video_type}",
                )
            )
    frames = video.frames
    unordered = frames.order_problem() if frames is not None else None
    if unordered:
        problems.append(Problem(video.path, unordered))
    elif frames is not None and frames.count and frames.names is not None:
        numbers = frames.frame_numbers()
        if frames.numbers is not None and list(numbers) != list(range(numbers[0], numbers[0] + len(numbers))):
            problems.append(Problem(video.path, "frame numbers are not consecutive (a frame is missing?)"))
        elif benchmark:
            problems.append(Problem(video.path, f"frame names are not {video.video_id}-NNNNN.jpg"))
    return problems


def _check_media(video: Video, reader: FrameReader) -> list[Problem]:
    if video.frames is None:
        try:
            n = video.num_frames
            if n == 0:
                return [Problem(video.path, "empty video: no decodable frames")]
            for start in range(0, n, _VIDEO_CHUNK):  # every frame, a chunk at a time: full-size frames are large
                reader.read(video, np.arange(start, min(start + _VIDEO_CHUNK, n)))
        except CorruptMediaError as e:
            return [Problem(video.path, e.reason)]
        return []
    if video.frames.count == 0:
        return [Problem(video.path, "empty video: no frame files")]
    problems = []
    for i in range(video.frames.count):
        path = video.frames.path(i)
        try:
            decode_image_bytes(path.read_bytes(), _PROBE_SIZE, path, source_side=1 << 16)
        except OSError as e:
            problems.append(Problem(path, f"unreadable ({e.strerror or e})"))
        except CorruptMediaError as e:
            problems.append(Problem(path, e.reason))
    return problems


def _check_annotations(video: Video, annotation_dir: Path) -> list[Problem]:
    if video.annotation_path is None:
        return [Problem(video.path, f"no annotation file {annotation_dir / (video.video_id + '.json')}")]
    try:
        raw = json.loads(video.annotation_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        return [Problem(video.annotation_path, f"unreadable annotation file ({e})")]
    if not isinstance(raw, dict):
        return [Problem(video.annotation_path, "not a JSON object of frame name -> annotation")]
    owners = annotated_videos(raw)
    if owners and video.video_id not in owners:
        other = sorted(owners)[0]
        message = f"belongs to another video: its frame names are {other}-NNNNN.jpg, not {video.video_id}-NNNNN.jpg"
        return [Problem(video.annotation_path, message)]
    try:
        expected = {video.frame_name(int(n)) for n in video.frame_numbers()}
    except CorruptMediaError:
        return []  # the media check reports the video
    if not expected:
        return []  # an empty video is reported once, as empty
    missing, extra = len(expected - raw.keys()), len(raw.keys() - expected)
    if missing or extra:
        return [
            Problem(
                video.annotation_path,
                f"does not match the frames: {missing} frames without an "
                f"annotation, {extra} annotations without a frame",
            )
        ]
    return []


def _orphan_annotations(index: DatasetIndex) -> list[Problem]:
    known = {v.annotation_path for v in index.videos() if v.annotation_path is not None}
    dirs = (
        [index.root / ANNOTATIONS_DIR / s for s in SPLITS]
        if index.layout == "benchmark"
        else [index.root / ANNOTATIONS_DIR]
    )
    return [
        Problem(p, "annotation file for a video that is not in the tree")
        for d in dirs
        if d.is_dir()
        for p in sorted(d.glob("*.json"))
        if p not in known
    ]


def check_tree(
    root: Path | str | DatasetIndex, decode: bool = True, progress: Callable[[int], None] | None = None
) -> list[Problem]:
    """Every problem found under ``root``, in a stable order.

    Args:
        root: an ORBIT tree or one user's folder, or its index.
        decode: decode every frame (slow on the full benchmark) rather than only reading the files.
        progress: called once per video checked.
    """
    index = root if isinstance(root, DatasetIndex) else index_tree(root)
    benchmark = index.layout == "benchmark"
    problems = _check_structure(index)
    reader = FrameReader(_PROBE_SIZE)
    for split, users in index.splits.items():
        annotation_dir = index.root / ANNOTATIONS_DIR / split if benchmark else index.root / ANNOTATIONS_DIR
        for user in users:
            if not user.objects:
                problems.append(Problem(index.root / split / user.user_id, "user folder holds no objects"))
            for obj in user.objects:
                folder = index.root / split / user.user_id / obj.name if benchmark else index.root / obj.name
                # a benchmark object without clean/ is reported by the structure check; here: no clean video at all
                if not obj.clean and (not benchmark or (folder / "clean").is_dir()):
                    problems.append(Problem(folder, "object has no clean videos, so it cannot be taught"))
            for video in user.videos():
                problems += _check_names(video, benchmark)
                problems += _check_media(video, reader) if decode else _check_readable(video)
                if annotation_dir.is_dir():
                    problems += _check_annotations(video, annotation_dir)
                if progress is not None:
                    progress(1)
    problems += _orphan_annotations(index)
    return problems


def _check_readable(video: Video) -> list[Problem]:
    """Without decoding: files that cannot be opened, are empty, or (JPEGs) lack their end-of-image marker."""
    if video.frames is None:
        problem = _file_problem(video.path, jpeg=False)
        return [Problem(video.path, f"{problem} video file")] if problem else []
    if video.frames.count == 0:
        return [Problem(video.path, "empty video: no frame files")]
    problems = []
    for i in range(video.frames.count):
        path = video.frames.path(i)
        problem = _file_problem(path, jpeg=path.suffix.lower() in (".jpg", ".jpeg"))
        if problem:
            problems.append(Problem(path, f"{problem} frame"))
    return problems


def _file_problem(path: Path, jpeg: bool) -> str | None:
    """ "unreadable", "empty" or "truncated" (a JPEG's head and tail only are read), or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            if not head:
                return "empty (0-byte)"
            if not jpeg:
                return None
            f.seek(max(f.seek(0, os.SEEK_END) - _TAIL_BYTES, 0))
            tail = f.read()
    except OSError:
        return "unreadable"
    # libjpeg decodes a cut-off file "successfully" (grey fill), so the missing end marker is the only sign
    return (
        "truncated (no JPEG end-of-image marker)"
        if head == b"\xff\xd8" and tail.rstrip(b"\x00")[-2:] != b"\xff\xd9"
        else None
    )
