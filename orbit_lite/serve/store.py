"""Collections on disk: an SQLite database (collections, objects, videos, jobs, token hashes) and the files.

Layout under ``--store``::

    orbit-lite-serve.sqlite3             the database (marked as orbit-lite's by its application id)
    collections/<id>/videos/<video>/     one upload: its media (video.<ext> or frames/) and thumb.jpg
    collections/<id>/recognizers/<job>.pt   the recognizer a teach job wrote (and its .onnx export)
    tmp/                                  uploads being checked; emptied on start
    orbit-lite-serve.lock                 held while a service runs: one service per store (see store_lock)

Every name in a path is an id the store made, never a name a client gave. Database changes run under one lock and in
transactions; files move into place by renaming, so a collection never holds half a video or half a recognizer.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orbit_lite.errors import OrbitLiteError
from orbit_lite.serve import schema
from orbit_lite.serve.errors import ServiceError, not_found
from orbit_lite.serve.store_lock import LOCK, hold_store
from orbit_lite.serve.tokens import new_id, new_token, token_hash, token_matches
from orbit_lite.serve.uploads import Media

DATABASE = "orbit-lite-serve.sqlite3"
INTERRUPTED = "interrupted: the service stopped while teaching; the previous recognizer still serves; teach again"


@dataclass(frozen=True)
class StoredVideo:
    """A clean video of an object, where teaching reads it."""

    video_id: str
    object_name: str
    path: Path
    frames: int


class Store:
    """One service's collections. Safe to share between threads."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser()
        _check_store_folder(self.root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OrbitLiteError(f"cannot open the store {self.root} ({e}); choose another --store") from None
        self._held = hold_store(self.root)  # before anything is touched: tmp/ and the jobs may be another service's
        try:
            self._open()
            self._lock = threading.RLock()
            self._recover()
        except BaseException:
            self._held.release()
            raise

    def _open(self) -> None:
        try:
            (self.root / "collections").mkdir(exist_ok=True)
            shutil.rmtree(self.root / "tmp", ignore_errors=True)  # our own leftovers of a crash: never served
            (self.root / "tmp").mkdir()
            self._db = sqlite3.connect(self.root / DATABASE, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA foreign_keys = ON")
            schema.upgrade(self._db, self.root / DATABASE)
        except (OSError, sqlite3.Error) as e:
            raise OrbitLiteError(f"cannot open the store {self.root} ({e}); choose another --store") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self._held.release()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _rows(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        with self._lock:
            cursor = self._db.execute(sql, args)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def _recover(self) -> None:
        """A teach job cut off by a crash or kill is failed; files no row points to are its leftovers."""
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET status = 'failed', error = ?, finished = ? WHERE status IN ('queued', 'running')",
                (INTERRUPTED, time.time()),
            )
        for row in self._rows("SELECT id, recognizer FROM collections"):
            folder = self.recognizer_folder(row["id"])
            if folder.is_dir():
                keep = {f"{row['recognizer']}.pt", f"{row['recognizer']}.onnx"}
                for leftover in [p for p in folder.iterdir() if p.name not in keep]:
                    leftover.unlink(missing_ok=True)

    # collections and their tokens

    def create_collection(self) -> tuple[str, str]:
        """A new empty collection: its id and its token (which is not kept, only its hash)."""
        cid, token = new_id(), new_token()
        with self._tx() as db:
            db.execute(
                "INSERT INTO collections (id, token_hash, created) VALUES (?, ?, ?)",
                (cid, token_hash(token), time.time()),
            )
        return cid, token

    def opens(self, cid: str, token: str | None) -> bool:
        """Whether ``token`` opens collection ``cid`` (timing-safe; False for a collection that does not exist)."""
        rows = self._rows("SELECT token_hash FROM collections WHERE id = ?", cid)
        return token_matches(token, rows[0]["token_hash"] if rows else None)

    def collection(self, cid: str) -> dict[str, Any]:
        """The collection's objects with their videos, its recognizer's state and its latest job."""
        rows = self._rows("SELECT * FROM collections WHERE id = ?", cid)
        if not rows:
            raise not_found("collection")
        c = rows[0]
        objects = []
        for o in self._rows("SELECT id, name FROM objects WHERE collection = ? ORDER BY name", cid):
            videos = self._rows(
                "SELECT id, kind, frames, bytes, original_name, created FROM videos WHERE object = ? "
                "ORDER BY created, id",
                o["id"],
            )
            objects.append({"name": o["name"], "videos": [{"video_id": v.pop("id"), **v} for v in videos]})
        jobs = self._rows("SELECT * FROM jobs WHERE collection = ? ORDER BY created DESC LIMIT 1", cid)
        latest = job_view(jobs[0]) if jobs else None
        teaching = latest is not None and latest["status"] in ("queued", "running")
        state = "teaching" if teaching else ("ready" if c["recognizer"] else "untaught")
        recognizer = None
        if c["recognizer"]:
            recognizer = {
                "job": c["recognizer"],
                "taught_at": c["taught_at"],
                "videos": json.loads(c["taught_videos"] or "[]"),
            }
        return {
            "id": cid,
            "created": c["created"],
            "objects": objects,
            "state": state,
            "recognizer": recognizer,
            "latest_job": latest,
        }

    def delete_collection(self, cid: str) -> None:
        with self._tx() as db:
            if db.execute("DELETE FROM collections WHERE id = ?", (cid,)).rowcount == 0:
                raise not_found("collection")
        self._discard(self.root / "collections" / cid)

    def _discard(self, folder: Path) -> None:
        """Move a folder the store made out of sight at once, then delete it."""
        if folder.exists():
            trash = Path(tempfile.mkdtemp(dir=self.root / "tmp"))
            folder.rename(trash / "gone")
            shutil.rmtree(trash, ignore_errors=True)

    # objects and videos

    def staging(self) -> Path:
        """A fresh folder for one upload to be checked in."""
        return Path(tempfile.mkdtemp(dir=self.root / "tmp"))

    def video_folder(self, cid: str, vid: str) -> Path:
        return self.root / "collections" / cid / "videos" / vid

    def add_video(self, cid: str, name: str, staged: Path, media: Media, original: str | None) -> str:
        """Move a checked upload (``media`` inside the folder ``staged``) into the collection, under ``name``."""
        vid = new_id()
        relative = media.path.relative_to(staged).as_posix()
        size = sum(p.stat().st_size for p in staged.rglob("*") if p.is_file())
        with self._tx() as db:
            if not db.execute("SELECT 1 FROM collections WHERE id = ?", (cid,)).fetchone():
                raise not_found("collection")  # deleted while the upload was being checked
            db.execute(
                "INSERT OR IGNORE INTO objects (collection, name, created) VALUES (?, ?, ?)", (cid, name, time.time())
            )
            oid = db.execute("SELECT id FROM objects WHERE collection = ? AND name = ?", (cid, name)).fetchone()[0]
            db.execute(
                "INSERT INTO videos (id, object, kind, media, frames, bytes, original_name, created) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?)",
                (vid, oid, media.kind, relative, media.frames, size, (original or "")[:200], time.time()),
            )
            target = self.video_folder(cid, vid)
            target.parent.mkdir(parents=True, exist_ok=True)
            staged.rename(target)  # inside the transaction: a failed rename leaves no row behind
        return vid

    def add_object(self, cid: str, name: str) -> bool:
        """An object with no videos yet; False when it already existed."""
        with self._tx() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO objects (collection, name, created) VALUES (?, ?, ?)", (cid, name, time.time())
            )
            return cursor.rowcount == 1

    def delete_object(self, cid: str, name: str) -> None:
        with self._tx() as db:
            row = db.execute("SELECT id FROM objects WHERE collection = ? AND name = ?", (cid, name)).fetchone()
            if row is None:
                raise not_found(f"object {name!r} in this collection")
            vids = [r[0] for r in db.execute("SELECT id FROM videos WHERE object = ?", (row[0],))]
            db.execute("DELETE FROM objects WHERE id = ?", (row[0],))
        for vid in vids:
            self._discard(self.video_folder(cid, vid))

    def delete_video(self, cid: str, vid: str) -> None:
        with self._tx() as db:
            cursor = db.execute(
                "DELETE FROM videos WHERE id = ? AND object IN (SELECT id FROM objects WHERE collection = ?)",
                (vid, cid),
            )
            if cursor.rowcount == 0:
                raise not_found("video in this collection")
        self._discard(self.video_folder(cid, vid))

    def thumbnail(self, cid: str, vid: str) -> Path:
        rows = self._rows(
            "SELECT v.id FROM videos v JOIN objects o ON v.object = o.id WHERE v.id = ? AND o.collection = ?", vid, cid
        )
        path = self.video_folder(cid, vid) / "thumb.jpg"
        if not rows or not path.is_file():
            raise not_found("video in this collection")
        return path

    def clean_videos(self, cid: str) -> list[StoredVideo]:
        rows = self._rows(
            "SELECT v.id, o.name, v.media, v.frames FROM videos v JOIN objects o ON v.object = o.id "
            "WHERE o.collection = ? ORDER BY o.name, v.created, v.id",
            cid,
        )
        return [
            StoredVideo(r["id"], r["name"], self.video_folder(cid, r["id"]) / r["media"], r["frames"]) for r in rows
        ]

    def object_names(self, cid: str) -> list[str]:
        return [r["name"] for r in self._rows("SELECT name FROM objects WHERE collection = ? ORDER BY name", cid)]

    # teach jobs and recognizers

    def recognizer_folder(self, cid: str) -> Path:
        return self.root / "collections" / cid / "recognizers"

    def recognizer(self, cid: str) -> Path | None:
        """The recognizer file that serves collection ``cid`` now, or None when it was never taught."""
        rows = self._rows("SELECT recognizer FROM collections WHERE id = ?", cid)
        if not rows:
            raise not_found("collection")
        job = rows[0]["recognizer"]
        return None if job is None else self.recognizer_folder(cid) / f"{job}.pt"

    def create_job(self, cid: str, videos: list[str]) -> str:
        job = new_id()
        with self._tx() as db:
            db.execute(
                "INSERT INTO jobs (id, collection, status, videos, created) VALUES (?, ?, 'queued', ?, ?)",
                (job, cid, json.dumps(videos), time.time()),
            )
        return job

    def job(self, job: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM jobs WHERE id = ?", job)
        return rows[0] if rows else None

    def update_job(self, job: str, **fields: Any) -> None:
        allowed = {"status", "progress", "stage", "error", "started", "finished"}
        assert set(fields) <= allowed, set(fields) - allowed  # column names are ours, never a client's
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._tx() as db:
            db.execute(f"UPDATE jobs SET {sets} WHERE id = ?", (*fields.values(), job))

    def publish_recognizer(self, cid: str, job: str) -> bool:
        """Make job ``job``'s recognizer file (already written) the one that serves; False when the collection went
        away meanwhile. The previous file is removed only after the switch."""
        with self._tx() as db:
            row = db.execute("SELECT recognizer FROM collections WHERE id = ?", (cid,)).fetchone()
            if row is None:
                return False
            videos = db.execute("SELECT videos FROM jobs WHERE id = ?", (job,)).fetchone()[0]
            db.execute(
                "UPDATE collections SET recognizer = ?, taught_at = ?, taught_videos = ? WHERE id = ?",
                (job, time.time(), videos, cid),
            )
            db.execute(
                "UPDATE jobs SET status = 'done', progress = 1, stage = 'ready', finished = ? WHERE id = ?",
                (time.time(), job),
            )
        if row[0] is not None:
            for suffix in (".pt", ".onnx"):
                (self.recognizer_folder(cid) / f"{row[0]}{suffix}").unlink(missing_ok=True)
        return True


def job_view(row: dict[str, Any]) -> dict[str, Any]:
    """A job as the API shows it."""
    return {
        "job": row["id"],
        "status": row["status"],
        "progress": row["progress"],
        "stage": row["stage"],
        "error": row["error"],
        "videos": json.loads(row["videos"] or "[]"),
        "created": row["created"],
        "started": row["started"],
        "finished": row["finished"],
    }


def _check_store_folder(root: Path) -> None:
    """A store goes into a new or empty folder, or one that holds an orbit-lite store: never into someone's files."""
    if root.exists() and not root.is_dir():
        raise OrbitLiteError(f"--store {root} is a file; give a folder")
    if root.is_dir() and any(p.name != LOCK for p in root.iterdir()) and not (root / DATABASE).is_file():
        raise ServiceError(
            400,
            f"--store {root} holds files but no {DATABASE}: it is not an orbit-lite store and is "
            "never written into; choose a new or empty folder",
        )
