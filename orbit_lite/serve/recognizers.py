"""Taught recognizers in use: loaded once and shared, exported to ONNX on demand, and fed frame by frame from a
live camera."""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any

import numpy as np
import torch

from orbit_lite.data.video import as_frames, decode_image_bytes
from orbit_lite.engine.recognize import frame_probabilities
from orbit_lite.errors import CorruptMediaError
from orbit_lite.personal import PersonalModel
from orbit_lite.publish import publish_file
from orbit_lite.results import Recognition
from orbit_lite.serve.errors import ServiceError


class Recognizers:
    """Personal recognizers by file, the most recently used ones kept loaded."""

    def __init__(self, device: torch.device, keep: int = 8) -> None:
        self.device, self.keep = device, keep
        self._loaded: OrderedDict[Path, PersonalModel] = OrderedDict()
        self._lock = threading.Lock()
        self._export_lock = threading.Lock()

    def get(self, path: Path) -> PersonalModel:
        from orbit_lite.engine.model import open_personal

        with self._lock:
            if path in self._loaded:
                self._loaded.move_to_end(path)
                return self._loaded[path]
        model = open_personal(path, self.device)  # outside the lock: loading one never holds up the others
        with self._lock:
            self._loaded[path] = model
            while len(self._loaded) > self.keep:
                self._loaded.popitem(last=False)
        return model

    def onnx(self, path: Path) -> Path:
        """The recognizer's ONNX export beside it, written (and checked against PyTorch) on first request."""
        target = path.with_suffix(".onnx")
        with self._export_lock:
            if target.is_file():
                return target
            try:
                from orbit_lite.export import export_onnx, onnx_parity
            except ImportError:
                raise ServiceError(
                    501, "ONNX export needs the export extra: pip install 'orbit-lite[export]'"
                ) from None
            from orbit_lite.engine.model import open_personal

            model = open_personal(path, "cpu")
            with publish_file(target, suffix=".unchecked") as staged:  # served only once checked
                export_onnx(model, staged)
                parity = onnx_parity(model, staged)
                if not parity.ok:
                    raise ServiceError(500, f"the ONNX export differs from PyTorch {parity.summary()}")
        return target


def recognition_json(r: Recognition, names: list[str], name: str) -> dict[str, Any]:
    """One input (called ``name``) as ``recognize --json`` prints it, with every object's probability per frame."""
    return {
        "input": name,
        "frames": len(r.predictions),
        "prediction": names[r.video_prediction],
        "confidence": float(r.probabilities[:, r.video_prediction].mean()),
        **r.scores(len(names)),
        **r.cost_per_frame(),
        "per_frame": [
            {
                "frame": int(n),
                "prediction": names[p],
                "probability": float(q[p]),
                "probabilities": [round(float(x), 6) for x in q],
            }
            for n, p, q in zip(r.frame_numbers, r.predictions, r.probabilities, strict=True)
        ],
    }


class LiveStream:
    """A camera's frames, one at a time: each answer uses the newest frame and the ones before it (the same causal
    window ``recognize`` uses), so a stream's answers equal ``recognize`` on the same frames."""

    def __init__(self, model: PersonalModel) -> None:
        self.model = model
        self.recent: deque[np.ndarray] = deque(maxlen=model.clip_length)
        self.count = 0

    def push(self, jpeg: bytes) -> dict[str, Any]:
        try:
            rgb = decode_image_bytes(jpeg, self.model.frame_size, f"frame {self.count + 1}")
        except CorruptMediaError as e:
            raise ServiceError(400, str(e)) from None
        self.recent.append(rgb)
        self.count += 1
        frames = as_frames(np.stack(self.recent))
        probs, _, seconds = frame_probabilities(self.model, frames, np.array([len(self.recent) - 1]), count_macs=False)
        row = probs[0]
        top = int(row.argmax())
        names = self.model.object_names
        return {
            "frame": self.count,
            "prediction": names[top],
            "probability": float(row[top]),
            "probabilities": {n: round(float(p), 6) for n, p in zip(names, row, strict=True)},
            "seconds": seconds,
        }
