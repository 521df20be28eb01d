"""Uploaded files judged by decoding them, never by their names: a video file, a zip of frames, or an image.

An upload lands in a fresh folder under the store's ``tmp/`` and is decoded there in full; only media that decodes
moves into a collection. A zip's members are written under names checked here, so no path leaves that folder.
"""

from __future__ import annotations

import shutil
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import cv2
import numpy as np

from orbit_lite.data.layout import FRAME_EXTENSIONS, video_from_path
from orbit_lite.errors import CorruptMediaError
from orbit_lite.serve.errors import ServiceError

_CHUNK = 128  # frames decoded at once while checking a video


@dataclass(frozen=True)
class Limits:
    """What one upload may hold."""

    max_bytes: int
    max_frames: int


@dataclass(frozen=True)
class Media:
    """A decoded upload: ``kind`` is ``video`` (a file), ``frames`` (a folder of images) or ``image`` (one file)."""

    kind: str
    path: Path
    frames: int


def shown(name: str | None) -> str:
    """A client's file name as it may appear in a message: printable and short."""
    text = "".join(c for c in (name or "upload") if unicodedata.category(c)[0] != "C")
    return repr(text[:80] or "upload")


def too_large(limits: Limits) -> ServiceError:
    return ServiceError(
        413,
        f"upload over {limits.max_bytes // 2**20} MB; send a shorter video (the service's limit is --max-upload-mb)",
    )


def receive(source: BinaryIO, target: Path, limits: Limits) -> None:
    """Copy an upload to ``target``, refusing it once it passes ``limits.max_bytes``."""
    written = 0
    with open(target, "wb") as out:
        while block := source.read(1 << 20):
            written += len(block)
            if written > limits.max_bytes:
                raise too_large(limits)
            out.write(block)
    if written == 0:
        raise ServiceError(400, "the upload is empty: send a video file, a zip of frames or an image")


def _container(head: bytes) -> str | None:
    """The file extension of a video container recognised by its first bytes (FFmpeg then reads it by content)."""
    if head[4:8] == b"ftyp":
        return ".mp4"  # MP4 and QuickTime
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return ".webm"  # Matroska / WebM (what a browser's MediaRecorder writes)
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return ".avi"
    return None


def _is_image(head: bytes) -> str | None:
    if head[:3] == b"\xff\xd8\xff":
        return ".jpg"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return ".png"
    return None


def judge(upload: Path, name: str | None, frame_size: int, limits: Limits, allow_image: bool) -> Media:
    """Decode ``upload`` (in its own folder) in full at ``frame_size`` and say what it is; a 4xx naming the file
    otherwise. Corrupt media is refused with the command line's message."""
    with open(upload, "rb") as f:
        head = f.read(16)
    try:
        if head[:4] in (b"PK\x03\x04", b"PK\x05\x06") or zipfile.is_zipfile(upload):
            return _frames_zip(upload, name, frame_size, limits)
        image = _is_image(head)
        if image is not None:
            return _image(upload, name, image, frame_size, allow_image)
        container = _container(head)
        if container is not None:
            return _video(upload, name, container, frame_size, limits)
    except CorruptMediaError as e:
        raise ServiceError(400, f"cannot decode {shown(name)}: {e.reason}") from None
    raise ServiceError(
        415,
        f"{shown(name)} is not a video file (MP4, WebM, MKV, AVI), a zip of frames or an image; "
        "its content was judged, not its name",
    )


def _image(upload: Path, name: str | None, ext: str, frame_size: int, allow_image: bool) -> Media:
    if not allow_image:
        raise ServiceError(400, f"{shown(name)} is one image; teaching needs a video or a zip of its frames")
    path = upload.rename(upload.with_name("image" + ext))
    from orbit_lite.data.video import read_image

    read_image(path, frame_size)
    return Media("image", path, 1)


def _video(upload: Path, name: str | None, ext: str, frame_size: int, limits: Limits) -> Media:
    from orbit_lite.data.video import FrameReader

    path = upload.rename(upload.with_name("video" + ext))
    video = video_from_path(path)
    count = video.num_frames
    if count > limits.max_frames:
        raise ServiceError(413, f"{shown(name)} has {count} frames; the most is {limits.max_frames} (--max-frames)")
    reader = FrameReader(frame_size)
    for start in range(0, count, _CHUNK):  # every frame decodes now, so teaching never meets a broken one
        reader.read(video, np.arange(start, min(start + _CHUNK, count)))
    return Media("video", path, count)


def _member_name(info: zipfile.ZipInfo, zip_name: str) -> str | None:
    """A frame member's file name, None for members that are no frame (folders, hidden files, other types)."""
    base = PurePosixPath(info.filename.replace("\\", "/")).name
    if info.is_dir() or not base or base.startswith(".") or not base.lower().endswith(FRAME_EXTENSIONS):
        return None
    if any(unicodedata.category(c)[0] == "C" for c in base):
        raise ServiceError(400, f"{zip_name} holds a frame whose name has control characters; rename it")
    return base


def _frames_zip(upload: Path, name: str | None, frame_size: int, limits: Limits) -> Media:
    from orbit_lite.data.video import read_image

    zip_name = shown(name)
    folder = upload.parent / "frames"
    folder.mkdir()
    try:
        with zipfile.ZipFile(upload) as archive:
            members = [(info, _member_name(info, zip_name)) for info in archive.infolist()]
            frames = [(info, base) for info, base in members if base is not None]
            if not frames:
                raise ServiceError(400, f"{zip_name} is a zip with no frames (.jpg, .jpeg, .png files)")
            if len(frames) > limits.max_frames:
                raise ServiceError(413, f"{zip_name} has {len(frames)} frames; the most is {limits.max_frames}")
            if sum(info.file_size for info, _ in frames) > limits.max_bytes:
                raise too_large(limits)  # what it unpacks to counts, not only what was sent
            if len({base for _, base in frames}) != len(frames):
                raise ServiceError(400, f"{zip_name} holds two frames of the same name in different folders")
            for info, base in frames:
                target = folder / base
                with archive.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                try:
                    read_image(target, frame_size)
                except CorruptMediaError as e:
                    raise ServiceError(400, f"cannot decode {base} in {zip_name}: {e.reason}") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError) as e:
        raise ServiceError(400, f"cannot unpack {zip_name}: {str(e)[:120]}") from None
    upload.unlink()
    return Media("frames", folder, len(frames))


def thumbnail(media: Media, side: int = 96) -> bytes:
    """The first frame as a small square JPEG."""
    from orbit_lite.data.video import FrameReader, read_image

    if media.kind == "image":
        rgb = read_image(media.path, side)
    else:
        rgb = FrameReader(side).read(video_from_path(media.path), [0])[0].permute(1, 2, 0).numpy()
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    return data.tobytes() if ok else b""
