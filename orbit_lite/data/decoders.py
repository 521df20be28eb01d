"""The decoders underneath the frame readers: decord (when importable) and OpenCV, and counting a file's frames.

Apart from video.py so that layout.py can count a video file's frames without importing the readers, which build
on layout's ``Video`` (the two used to import each other).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2

from orbit_lite.errors import CorruptMediaError

# FFmpeg (inside OpenCV and inside decord) prints its own complaints about a broken file to stderr, ahead of the
# one-line error or warning that names the file; quiet it, the failure is reported through CorruptMediaError.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET; read when a capture opens

try:  # decord is optional at import time: the OpenCV fallback reads every format it does
    import decord

    decord.bridge.set_bridge("native")
    decord.logging.set_level(decord.logging.QUIET)
except Exception:  # pragma: no cover - depends on the platform's wheels
    decord = None


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null: decord logs a failed open from C++ whatever its log level."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2 (embedded interpreters): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def decord_reader(path: Path) -> decord.VideoReader:
    with native_stderr_silenced():
        return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)


def probe_frame_count(path: Path | str, backend: str = "auto") -> int:
    """Number of decodable frames of a video file; raises CorruptMediaError when it cannot be opened."""
    path = Path(path)
    if backend in ("auto", "decord") and decord is not None:
        try:
            return len(decord_reader(path))
        except Exception as e:
            if backend == "decord":
                raise CorruptMediaError(path, f"decord: {e}") from None
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise CorruptMediaError(path, "not a readable video file")
    try:
        count = 0
        while cap.grab():  # the container's frame count is a guess for some formats; count what decodes
            count += 1
    finally:
        cap.release()
    if count == 0:
        raise CorruptMediaError(path, "no decodable frames")
    return count
