"""``recognize --annotate``: the input written back as a video with the recognizer's answer on every frame.

Frames are read again at their own size (the recognizer saw small square crops; a person wants the footage), one at
a time, so a long video never sits in memory. Each frame carries the answer computed from it and the frames before
it (recognition is causal), so the video shows what the recognizer would have said live.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from orbit_lite.data.decoders import native_stderr_silenced
from orbit_lite.data.layout import FRAME_EXTENSIONS, video_from_path
from orbit_lite.errors import CorruptMediaError, OrbitLiteError
from orbit_lite.outputs import VIDEO_MARK_BOX
from orbit_lite.publish import publish_file

if TYPE_CHECKING:
    from orbit_lite.results import Recognition

MIN_SIDE = 240  # smaller footage (the 32-96 px synthetic sets) is enlarged so that the text stays legible
DEFAULT_FPS = 30.0  # ORBIT's videos are filmed at 30 fps; frame folders carry no rate of their own
CODECS = ("avc1", "mp4v")  # H.264 where this OpenCV build has an encoder for it, else MPEG-4 Part 2
GREEN, RED, WHITE = (60, 200, 60), (60, 60, 230), (255, 255, 255)  # BGR


def ascii_text(text: str) -> str:
    """``text`` in the characters OpenCV's Hershey fonts draw: accents dropped (café -> cafe), others as '?'."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(c if c.isprintable() else "?" for c in plain) or "?"


def input_fps(path: Path) -> float:
    """The frame rate of a video file when its container says; DEFAULT_FPS for frame folders and images."""
    if not path.is_file() or path.suffix.lower() in FRAME_EXTENSIONS:
        return DEFAULT_FPS
    cap = cv2.VideoCapture(str(path))
    try:
        fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0.0
    finally:
        cap.release()
    return fps if math.isfinite(fps) and 0 < fps <= 1000 else DEFAULT_FPS


def original_frames(path: Path, count: int) -> Iterator[np.ndarray]:
    """The first ``count`` frames of an input at their own size (BGR ``[H, W, 3]`` uint8), in recognize's order."""
    if path.is_file() and path.suffix.lower() in FRAME_EXTENSIONS:
        yield _imread(path)
        return
    video = video_from_path(path)
    if video.frames is not None:
        for position in range(count):
            yield _imread(video.frames.path(position))
        return
    cap = cv2.VideoCapture(str(path))
    try:
        for number in range(1, count + 1):
            ok, frame = cap.read()
            if not ok:
                raise CorruptMediaError(path, f"OpenCV reads no frame {number} (the recognizer scored {count})")
            yield frame
    finally:
        cap.release()


def _imread(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise CorruptMediaError(path, "does not decode as an image")
    return image


def draw_answer(frame: np.ndarray, name: str, probability: float, right: bool | None) -> np.ndarray:
    """A copy of ``frame`` with a dark band on top: the object and its probability, and 'right'/'wrong'."""
    out = frame.copy()
    h, w = out.shape[:2]
    band = max(18, round(0.09 * h))
    out[:band] = (out[:band] * 0.35).astype(np.uint8)  # darkened, not covered: the scene stays visible under it
    scale = band / 40
    thickness = max(1, round(band / 18))
    baseline = round(band * 0.72)
    margin = max(3, round(0.02 * w))
    cv2.putText(
        out,
        f"{ascii_text(name)} {probability:.0%}",
        (margin, baseline),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        WHITE,
        thickness,
        cv2.LINE_AA,
    )
    if right is not None:
        verdict, colour = ("right", GREEN) if right else ("wrong", RED)
        (tw, _), _ = cv2.getTextSize(verdict, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        cv2.putText(
            out, verdict, (w - tw - margin, baseline), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv2.LINE_AA
        )
        cv2.rectangle(out, (0, 0), (w - 1, h - 1), colour, max(2, round(0.01 * w)))  # a frame seen from afar
    return out


def _open_writer(path: Path, fps: float, size: tuple[int, int]) -> tuple[cv2.VideoWriter, str]:
    for codec in CODECS:
        with native_stderr_silenced():  # a missing encoder is reported by FFmpeg on stderr; we try the next one
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, size)
        if writer.isOpened():
            return writer, codec
        writer.release()
    raise OrbitLiteError(
        f"this OpenCV build can write {path.suffix} video with none of {', '.join(CODECS)}; "
        "install opencv-python-headless from PyPI"
    )


def output_size(width: int, height: int) -> tuple[int, int]:
    """The written frame size for ``width`` x ``height`` footage: enlarged by a whole factor to a shorter side of at
    least MIN_SIDE, and even on both sides (H.264 encoders refuse odd ones)."""
    factor = max(1, math.ceil(MIN_SIDE / max(1, min(width, height))))
    return max(2, width * factor // 2 * 2), max(2, height * factor // 2 * 2)


def write_annotated(recognition: Recognition, names: list[str], out: Path) -> tuple[int, str]:
    """Write ``out`` (an .mp4) with one annotated frame per scored frame; returns (frames, codec).

    Every frame is resized to the first frame's output size (a writer takes one size). The file appears complete or
    not at all.
    """
    source = Path(recognition.source)
    count = len(recognition.predictions)
    writer = None
    written = 0
    with publish_file(out, suffix=out.suffix) as tmp:  # the writer picks its container by the suffix
        try:
            for i, frame in enumerate(original_frames(source, count)):
                if writer is None:
                    size = output_size(frame.shape[1], frame.shape[0])
                    writer, codec = _open_writer(tmp, input_fps(source), size)
                if (frame.shape[1], frame.shape[0]) != size:
                    shrink = frame.shape[1] > size[0]
                    frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_NEAREST)
                pred = int(recognition.predictions[i])
                right = None if recognition.label is None else pred == recognition.label
                writer.write(draw_answer(frame, names[pred], float(recognition.probabilities[i, pred]), right))
                written += 1
        finally:
            if writer is not None:
                writer.release()
        if writer is None:
            raise OrbitLiteError(f"{source}: no frames to annotate")
        with open(tmp, "ab") as f:  # the mark outputs.py knows our videos by: a later run may replace this file
            f.write(VIDEO_MARK_BOX)
    return written, codec
