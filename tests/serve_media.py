"""Media and models for the service's tests: tiny videos of three coloured objects, a tiny recipe, the fake camera's
y4m file."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import cv2
import numpy as np
import yaml

COLOURS = {"blue mug": (40, 60, 220), "green keys": (40, 200, 60), "red cane": (220, 40, 40)}  # RGB

TINY_SERVE_RECIPE = {
    "data": {"frame_size": 32, "num_workers": 0},
    "model": {"learner": "protonets", "backbone": "tiny_cnn", "weights": "none", "head": "proto_cosine"},
    "lite": {"h": 2, "chunk_size": 8, "query_chunk": 16},
    "test_sampling": {"subsample_factor": 2, "clip_cap": 20},
}


def write_recipe(folder: Path) -> Path:
    path = folder / "tiny_serve.yaml"
    path.write_text(yaml.safe_dump(TINY_SERVE_RECIPE))
    return path


def object_frame(colour: tuple[int, int, int], side: int, rng: np.random.Generator) -> np.ndarray:
    """One RGB frame of an object: its colour filling a square on grey, with a little noise."""
    frame = np.full((side, side, 3), 128, np.uint8)
    margin = side // 6
    frame[margin:-margin, margin:-margin] = colour
    noise = rng.integers(-12, 13, frame.shape)
    return np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def video_bytes(folder: Path, colour: tuple[int, int, int], frames: int = 8, side: int = 48, seed: int = 0) -> bytes:
    """An MP4 of ``frames`` frames of one object."""
    rng = np.random.default_rng(seed)
    path = folder / f"v{seed}-{colour[0]}-{colour[1]}.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (side, side))
    for _ in range(frames):
        writer.write(cv2.cvtColor(object_frame(colour, side, rng), cv2.COLOR_RGB2BGR))
    writer.release()
    return path.read_bytes()


def frames_zip(colour: tuple[int, int, int], frames: int = 6, side: int = 40, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for i in range(frames):
            _, data = cv2.imencode(".jpg", cv2.cvtColor(object_frame(colour, side, rng), cv2.COLOR_RGB2BGR))
            z.writestr(f"clip/frame-{i + 1:05d}.jpg", data.tobytes())
    return buffer.getvalue()


def jpeg_bytes(colour: tuple[int, int, int], side: int = 40, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    _, data = cv2.imencode(".jpg", cv2.cvtColor(object_frame(colour, side, rng), cv2.COLOR_RGB2BGR))
    return data.tobytes()


def write_y4m(path: Path, colour: tuple[int, int, int], frames: int = 10, side: int = 64) -> Path:
    """A y4m file (what Chromium's fake camera plays in a loop) showing one object."""
    rng = np.random.default_rng(1)
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{side} H{side} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            yuv = cv2.cvtColor(object_frame(colour, side, rng), cv2.COLOR_RGB2YUV_I420)  # planar Y, U, V
            f.write(b"FRAME\n" + yuv.tobytes())
    return path
