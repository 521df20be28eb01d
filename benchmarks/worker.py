"""Running one measurement in a fresh process, so that one configuration's peak memory never hides another's."""

from __future__ import annotations

import json
import subprocess
from typing import Any


def run_worker(command: list[str], label: dict[str, Any]) -> dict[str, Any]:
    """Run ``command`` (a benchmark's ``--worker`` mode, printing one JSON line last) and return that JSON; a worker
    that fails (out of memory, a crash) gives ``label`` with the error instead of stopping the benchmark."""
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["killed (out of memory?)"])[-1]
        return {**label, "error": f"exit {done.returncode}: {tail}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def claim_save_path(path: str | None) -> None:
    """Refuse a ``--save`` path that already exists: the partial saves replace the file again and again, which is
    only right for a file this run wrote."""
    import os

    if path and os.path.lexists(path):
        raise SystemExit(f"--save {path} exists: choose a new path, or move the old file aside")


def save_partial(path: str | None, report: dict[str, Any]) -> None:
    """Write ``report`` to ``path`` (when given) through a fresh temporary name in the same folder, so that a run cut
    short by a time limit leaves every finished result and never a half-written file."""
    if not path:
        return
    import os
    import tempfile

    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".partial-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(report, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
