"""Per-frame ORBIT annotations and the frame filters built on them.

Each video's JSON maps a frame file name (``<video>-00001.jpg``) to a dict. Clutter frames carry
``object_bounding_box`` (in 1080x1080 pixel coordinates, or null) and ``object_not_present_issue``; clean frames carry
seven issue booleans. Filters follow the reference semantics: a value True tags the frame
``<key>``, False tags it ``no_<key>``, null gives no tag, and a frame is kept iff *any* of its tags is in the filter
(OR). ``no_issues`` and ``mixed_issues`` expand to the seven negative / positive tags.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path

import numpy as np

from orbit_lite.data.layout import Video, parse_frame_number
from orbit_lite.errors import CorruptMediaError, OrbitLiteError

FrameAnnotations = dict[int, dict]  # frame number -> annotation dict


def frame_tags(annotation: Mapping[str, object]) -> set[str]:
    """The filter tags of one frame: ``key`` for True, ``no_key`` for False; null and dict values give none."""
    tags = set()
    for key, value in annotation.items():
        if value is True:
            tags.add(key)
        elif value is False:
            tags.add(f"no_{key}")
    return tags


def parse_annotations(raw: Mapping[str, dict], source: object = "annotations") -> FrameAnnotations:
    """Key a raw annotation JSON by frame number."""
    out: FrameAnnotations = {}
    for name, value in raw.items():
        number = parse_frame_number(name)
        if number is None or not isinstance(value, dict):
            raise OrbitLiteError(
                f"{source}: entry {name!r} is not '<video>-NNNNN.jpg': {{...}}; is this an ORBIT file?"
            )
        out[number] = value
    return out


def annotated_videos(names: Iterable[str]) -> set[str]:
    """The video ids that frame names ``<video>-NNNNN.jpg`` belong to."""
    return {name.rsplit(".", 1)[0].rpartition("-")[0] for name in names}


@lru_cache(maxsize=4096)
def _load_cached(path: str) -> tuple[FrameAnnotations, frozenset[str]]:
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise OrbitLiteError(f"{path}: unreadable annotation file ({e}); re-extract the annotations") from None
    if not isinstance(raw, dict):
        raise OrbitLiteError(f"{path}: expected a JSON object of frame name -> annotation")
    return parse_annotations(raw, path), frozenset(annotated_videos(raw))


def load_annotations(video: Video) -> FrameAnnotations | None:
    """The video's annotations keyed by frame number, or None when it has no annotation file.

    Raises CorruptMediaError (so the video is left out and named, like an undecodable one) when the file's frame
    names belong to another video: keyed by frame number alone, another video's annotations would silently decide
    which of this video's frames are scored.
    """
    if video.annotation_path is None:
        return None
    annotations, owners = _load_cached(str(video.annotation_path))
    if owners and video.video_id not in owners:
        other = ", ".join(sorted(owners)[:2])
        reason = f"annotation file {video.annotation_path} names the frames of video {other}, not of {video.video_id}"
        raise CorruptMediaError(video.annotation_path, reason)
    return annotations


def keep_mask(numbers: np.ndarray, annotations: FrameAnnotations | None, tags: frozenset[str]) -> np.ndarray:
    """Boolean mask over frame ``numbers``: which frames the filter keeps.

    An empty filter keeps everything. A frame missing from the annotations has no tags, so a non-empty filter drops
    it. ``annotations`` None (no file) keeps everything: callers decide whether that is allowed.
    """
    if not tags or annotations is None:
        return np.ones(len(numbers), dtype=bool)
    return np.fromiter(
        (bool(frame_tags(annotations.get(int(n), {})) & tags) for n in numbers), dtype=bool, count=len(numbers)
    )


def valid_frame_positions(video: Video, tags: frozenset[str], require_annotations: bool = False) -> np.ndarray:
    """0-based positions of the frames of ``video`` that pass the filter ``tags``, in temporal order.

    Args:
        video: the video.
        tags: expanded filter tags (see :func:`expand_filter`); empty keeps every frame.
        require_annotations: with a non-empty filter, raise when the video has no annotation file instead of
            keeping all its frames (the reference code's behaviour).
    """
    numbers = video.frame_numbers()
    annotations = load_annotations(video) if tags else None
    if tags and annotations is None and require_annotations:
        raise OrbitLiteError(
            f"{video.video_id}: no annotation file, but frame filter {sorted(tags)} needs one; "
            "unzip the ORBIT annotations into <root>/annotations/<split>/ or drop the filter"
        )
    return np.flatnonzero(keep_mask(numbers, annotations, tags))
