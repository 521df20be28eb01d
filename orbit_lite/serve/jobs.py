"""Teach jobs: one worker per device runs ``personalize`` on a collection's clean videos, one job at a time.

A job writes its recognizer under a new name and the store switches to it in one transaction, so the previous
recognizer serves until the new one is ready and stays when teaching fails.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from orbit_lite.config import Config
from orbit_lite.data.layout import ObjectVideos, User, video_from_path
from orbit_lite.errors import OrbitLiteError
from orbit_lite.learners import Learner
from orbit_lite.serve.errors import ServiceError
from orbit_lite.serve.progress import START, STARTING, JobProgress
from orbit_lite.serve.store import Store, StoredVideo

log = logging.getLogger(__name__)

INTERNAL = "teaching failed on an internal error (the service's log has the details); the previous recognizer serves"


def collection_user(cid: str, videos: list[StoredVideo]) -> User:
    """The collection as the engine's ``User``: each object's uploads are its clean videos (objects sorted by name,
    so label i is the i-th name)."""
    by_object: dict[str, list] = {}
    for v in videos:
        video = dataclasses.replace(video_from_path(v.path), video_id=v.video_id, user=cid, object_name=v.object_name)
        by_object.setdefault(v.object_name, []).append(video)
    objects = tuple(ObjectVideos(name, clean=tuple(vs)) for name, vs in sorted(by_object.items()))
    return User(cid, None, objects)


def check_teachable(videos: list[StoredVideo], names: list[str]) -> None:
    """Two objects with at least one video each, said before a job is queued."""
    taught = sorted({v.object_name for v in videos})
    if len(taught) < 2:
        have = ", ".join(repr(n) for n in taught) or "none"
        raise ServiceError(
            409,
            f"teaching needs at least two objects with videos; this collection has {len(taught)} "
            f"({have}): add videos of another object",
        )
    empty = [n for n in names if n not in taught]
    if empty:
        raise ServiceError(409, f"object {empty[0]!r} has no video: add one, or delete the object")


class Teacher:
    """Queues teach jobs and runs them on one worker thread (the device is shared: one personalization at a time)."""

    def __init__(self, store: Store, learner: Learner, cfg: Config) -> None:
        self.store, self.learner, self.cfg = store, learner, cfg
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orbit-lite-teach")

    def submit(self, cid: str) -> str:
        videos = self.store.clean_videos(cid)
        check_teachable(videos, self.store.object_names(cid))
        job = self.store.create_job(cid, [v.video_id for v in videos])
        self._worker.submit(self._run, job, cid, videos)
        return job

    def _run(self, job: str, cid: str, videos: list[StoredVideo]) -> None:
        from orbit_lite.engine.personalize import personalize_user, progress_kinds
        from orbit_lite.personal import save_personal

        store = self.store
        started = time.time()
        store.update_job(job, status="running", started=started, progress=START, stage=STARTING)
        progress = JobProgress(
            lambda value, stage: store.update_job(job, progress=value, stage=stage), progress_kinds(self.learner)
        )
        log.info("teach job %s: %d videos of collection %s", job, len(videos), cid)
        try:
            user = collection_user(cid, videos)
            model, _ = personalize_user(self.learner, user, self.cfg, progress=progress)
            progress.saving()
            folder = store.recognizer_folder(cid)
            save_personal(folder / f"{job}.pt", model)
            if store.publish_recognizer(cid, job):
                log.info("teach job %s: ready in %.1f s", job, time.time() - started)
            else:
                (folder / f"{job}.pt").unlink(missing_ok=True)
                with contextlib.suppress(OSError):  # the folders this job made again, when empty
                    folder.rmdir()
                    folder.parent.rmdir()
                store.update_job(job, status="failed", error="the collection was deleted while teaching")
        except OrbitLiteError as e:
            log.warning("teach job %s failed: %s", job, e)
            store.update_job(job, status="failed", error=str(e), finished=time.time())
        except Exception:
            log.exception("teach job %s of collection %s failed", job, cid)
            store.update_job(job, status="failed", error=INTERNAL, finished=time.time())

    def wait(self, timeout: float = 600.0) -> None:
        """Block until every queued job has run (tests and shutdown)."""
        self._worker.submit(lambda: None).result(timeout)

    def shutdown(self) -> None:
        self._worker.shutdown(wait=True, cancel_futures=True)
