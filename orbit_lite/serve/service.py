"""The service's parts put together: settings, the store, the teacher and the recognizers, and the operations the
routes call (each one parses nothing: routes hand it typed values)."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch

from orbit_lite.serve.errors import NO_ACCESS, ServiceError
from orbit_lite.serve.jobs import Teacher
from orbit_lite.serve.model import ModelSource, open_model
from orbit_lite.serve.names import check_object_name
from orbit_lite.serve.recognizers import Recognizers, recognition_json
from orbit_lite.serve.store import Store, job_view
from orbit_lite.serve.uploads import Limits, Media, judge, receive, thumbnail

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    """What ``orbit-lite serve`` was started with."""

    store: Path
    source: ModelSource
    device: str = "auto"
    max_upload_mb: int = 200
    max_frames: int = 3000

    @property
    def limits(self) -> Limits:
        return Limits(self.max_upload_mb * 2**20, self.max_frames)


class Service:
    """One running service: its model, its store, its teach worker."""

    def __init__(self, settings: Settings, device: torch.device | None = None) -> None:
        from orbit_lite.runtime import select_device

        self.settings = settings
        self.device = device or select_device(settings.device, "--device ")
        self.store = Store(settings.store)  # a wrong --store answers before the model loads
        try:
            self.learner, self.cfg = open_model(settings.source, self.device)
        except BaseException:
            self.store.close()
            raise
        self.teacher = Teacher(self.store, self.learner, self.cfg)
        self.recognizers = Recognizers(self.device)
        self.limits = settings.limits

    def close(self) -> None:
        self.teacher.shutdown()
        self.store.close()

    @property
    def frame_size(self) -> int:
        return self.cfg.data.frame_size

    def check_access(self, cid: str, token: str | None) -> None:
        if token is None:
            raise ServiceError(401, "this call needs the collection's token: Authorization: Bearer <token>")
        if not self.store.opens(cid, token):
            raise ServiceError(404, NO_ACCESS)

    def job(self, job: str, token: str | None) -> dict[str, Any]:
        """A job, for the token of its collection only (any other token learns nothing, not even that it exists)."""
        if token is None:
            raise ServiceError(401, "this call needs the collection's token: Authorization: Bearer <token>")
        row = self.store.job(job)
        if row is None or not self.store.opens(row["collection"], token):
            raise ServiceError(404, "no such job, or the token does not open its collection")
        return job_view(row)

    def _checked_upload(self, source: BinaryIO, filename: str | None, allow_image: bool) -> tuple[Path, Media]:
        staged = self.store.staging()
        try:
            upload = staged / "upload"
            receive(source, upload, self.limits)
            return staged, judge(upload, filename, self.frame_size, self.limits, allow_image)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise

    def add_video(self, cid: str, name: str, source: BinaryIO, filename: str | None) -> dict[str, Any]:
        name = check_object_name(name)
        staged, media = self._checked_upload(source, filename, allow_image=False)
        try:
            (staged / "thumb.jpg").write_bytes(thumbnail(media))
            vid = self.store.add_video(cid, name, staged, media, filename)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
        return {"video_id": vid, "object": name, "frames": media.frames}

    def recognizer_file(self, cid: str) -> Path:
        path = self.store.recognizer(cid)
        if path is None or not path.is_file():
            raise ServiceError(409, "this collection has no recognizer yet: teach it first (POST .../teach)")
        return path

    def recognize(
        self, cid: str, source: BinaryIO, filename: str | None, annotate: bool, label: str | None = None
    ) -> dict[str, Any] | Path:
        """Per-frame answers for an upload (scored when the true ``label`` is given); with ``annotate``, the
        annotated MP4's path (its folder is the caller's to remove)."""
        from orbit_lite.engine.recognize import recognize

        model = self.recognizers.get(self.recognizer_file(cid))
        names = model.object_names
        if label is not None and label not in names:
            raise ServiceError(400, f"label {label!r} is not one of this recognizer's objects: {', '.join(names)}")
        staged, media = self._checked_upload(source, filename, allow_image=True)
        try:
            result = recognize(model, media.path, label)
            if not annotate:
                answer = recognition_json(result, names, filename or "upload")
                return {"objects": names, "label": label, "inputs": [answer]}
            if media.kind == "image":
                raise ServiceError(400, "annotate=1 writes a video: send a video or a zip of frames")
            from orbit_lite.visual.annotate import write_annotated

            out = staged / "annotated.mp4"
            write_annotated(result, model.object_names, out)
            return out
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
        finally:
            if not annotate:
                shutil.rmtree(staged, ignore_errors=True)

    def add_object(self, cid: str, name: str) -> dict[str, Any]:
        name = check_object_name(name)
        created = self.store.add_object(cid, name)
        return {"object": name, "created": created}
