"""The store's SQLite schema, as numbered steps: a database at version n gets steps n+1.. on opening, each in one
transaction, so an older store is upgraded in place and a newer one is refused."""

from __future__ import annotations

import sqlite3

from orbit_lite.errors import OrbitLiteError

# Marks a database as an orbit-lite store (SQLite's application_id header field): the proof that it is ours.
APPLICATION_ID = 0x4F524254  # "ORBT"

MIGRATIONS: list[str] = [
    # 1: collections with their token hashes, objects, videos, teach jobs
    """
    CREATE TABLE collections (
        id TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL,
        created REAL NOT NULL,
        recognizer TEXT,          -- the job whose recognizer file serves now (NULL: untaught)
        taught_at REAL,
        taught_videos TEXT        -- JSON list of the video ids it was taught from
    );
    CREATE TABLE objects (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        collection TEXT NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        created REAL NOT NULL,
        UNIQUE (collection, name)
    );
    CREATE TABLE videos (
        id TEXT PRIMARY KEY,
        object INTEGER NOT NULL REFERENCES objects(id) ON DELETE CASCADE,
        kind TEXT NOT NULL,       -- video (a file) or frames (a folder of images)
        media TEXT NOT NULL,      -- its file or folder name inside the video's folder
        frames INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        original_name TEXT,
        created REAL NOT NULL
    );
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        collection TEXT NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
        status TEXT NOT NULL,     -- queued, running, done, failed
        progress REAL NOT NULL DEFAULT 0,
        stage TEXT NOT NULL DEFAULT '',
        error TEXT,
        videos TEXT,
        created REAL NOT NULL,
        started REAL,
        finished REAL
    );
    CREATE INDEX objects_by_collection ON objects (collection);
    CREATE INDEX videos_by_object ON videos (object);
    CREATE INDEX jobs_by_collection ON jobs (collection);
    """,
]

VERSION = len(MIGRATIONS)


def upgrade(db: sqlite3.Connection, where: object) -> int:
    """Bring ``db`` to :data:`VERSION`; returns the version it had. ``where`` names the file in errors."""
    app_id = db.execute("PRAGMA application_id").fetchone()[0]
    version = db.execute("PRAGMA user_version").fetchone()[0]
    tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if app_id != APPLICATION_ID and (tables or version):
        raise OrbitLiteError(
            f"{where} is a database orbit-lite did not write; it is never changed: choose another --store"
        )
    if version > VERSION:
        raise OrbitLiteError(
            f"{where} is at schema version {version}, newer than this orbit-lite knows ({VERSION}); "
            "upgrade orbit-lite or choose another --store"
        )
    for step in range(version, VERSION):
        # executescript commits first; each step then runs in its own transaction with the version it reaches
        db.executescript(
            f"BEGIN; {MIGRATIONS[step]}; PRAGMA application_id = {APPLICATION_ID}; "
            f"PRAGMA user_version = {step + 1}; COMMIT;"
        )
    return version
