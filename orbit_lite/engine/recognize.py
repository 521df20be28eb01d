"""Recognition with a personal recognizer: per-frame predictions for videos, frame folders and images."""

from __future__ import annotations

import logging
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from orbit_lite.cost import measure
from orbit_lite.data.layout import FRAME_EXTENSIONS, video_from_path
from orbit_lite.data.sampling import causal_windows
from orbit_lite.data.video import FrameReader, as_frames, read_image
from orbit_lite.errors import OrbitLiteError
from orbit_lite.metrics import video_prediction
from orbit_lite.personal import PersonalModel
from orbit_lite.results import Recognition

log = logging.getLogger(__name__)


def _read(path: Path, size: int) -> tuple[torch.Tensor, np.ndarray]:
    """All frames of an input as ``[F, 3, S, S]`` uint8 and their numbers."""
    if path.is_file() and path.suffix.lower() in FRAME_EXTENSIONS:
        return as_frames(read_image(path, size)[None]), np.array([1])
    video = video_from_path(path)
    unordered = video.frames.order_problem() if video.frames is not None else None
    if unordered:  # causal predictions follow the frame order, which is then only the names' natural order
        log.warning("%s: %s; recognizing them in name order", path, unordered)
    frames = FrameReader(size).read(video, np.arange(video.num_frames))
    return frames, video.frame_numbers()


def frame_probabilities(
    model: PersonalModel, frames: torch.Tensor, positions: np.ndarray, chunk_size: int = 256, count_macs: bool = True
) -> tuple[np.ndarray, int, float]:
    """Causal probabilities of the frames at ``positions`` of ``frames`` (``[F, 3, S, S]`` uint8, temporal order):
    ``[len(positions), K]``, with the recognizer's MACs (0 unless ``count_macs``) and seconds. A live stream passes
    its recent frames and only the newest position, uncounted: counting MACs costs several times the recognition."""
    windows = torch.from_numpy(causal_windows(np.asarray(positions), model.clip_length))
    probabilities = []
    macs, seconds = 0, 0.0
    for rows in windows.split(chunk_size):
        clips = frames[rows.flatten()].view(*rows.shape, *frames.shape[1:])
        if count_macs:
            logits, cost = measure(partial(model.recognizer.predict, clips), model.recognizer.logits_device())
            macs, seconds = macs + cost.macs, seconds + cost.seconds
        else:
            start = time.perf_counter()
            logits = model.recognizer.predict(clips)
            seconds += time.perf_counter() - start
        probabilities.append(torch.softmax(logits, dim=1).cpu())
    return torch.cat(probabilities).numpy(), macs, seconds


def recognize(model: PersonalModel, path: Path | str, label: str | None = None, chunk_size: int = 256) -> Recognition:
    """Predict every frame of one input; frame t's prediction uses frames t-L+1..t only (causal)."""
    path = Path(path)
    names = model.object_names
    if label is not None and label not in names:
        raise OrbitLiteError(f"--label {label!r} is not one of this recognizer's objects: {', '.join(names)}")
    frames, numbers = _read(path, model.frame_size)
    if len(frames) == 0:
        raise OrbitLiteError(f"{path}: no decodable frames")
    probs, macs, seconds = frame_probabilities(model, frames, np.arange(len(frames)), chunk_size)
    predictions = probs.argmax(1)
    true = names.index(label) if label is not None else None
    return Recognition(
        str(path), numbers, predictions, probs, video_prediction(predictions, len(names)), true, macs, seconds
    )
