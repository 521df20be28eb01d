"""evaluate claims its output location before any work: one writer per --out, and a bad --out fails at once."""

from __future__ import annotations

import errno
import os
from collections import namedtuple
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orbit_lite.cli.main import app
from orbit_lite.errors import OrbitLiteError
from orbit_lite.outputs import claim_out

runner = CliRunner()


def evaluate(data: Path, checkpoint: Path, out: Path):
    args = ["evaluate", "--data", str(data), "--checkpoint", str(checkpoint), "--out", str(out), "--device", "cpu"]
    return runner.invoke(app, [*args, "--tasks", "1"])


def test_a_second_run_into_the_same_out_stops_at_once(tiny_frames: Path, tiny_checkpoint: Path, tmp_path: Path):
    out = tmp_path / "r"
    with claim_out(out) as lock:  # a first run at work
        assert lock == tmp_path / "r.lock" and lock.read_text() == f"{os.getpid()}\norbit-lite lock\n"
        second = evaluate(tiny_frames, tiny_checkpoint, out)
        assert second.exit_code == 1 and len(second.stderr.strip().splitlines()) == 1
        assert f"{out} is being written by another orbit-lite run (process {os.getpid()})" in second.stderr
        assert f"remove {lock}" in second.stderr and lock.exists() and not out.exists()
    assert not lock.exists()
    assert evaluate(tiny_frames, tiny_checkpoint, out).exit_code == 0
    assert not (tmp_path / "r.lock").exists() and (out / "metrics.json").is_file()


def test_a_stale_lock_is_reported_with_how_to_remove_it(tmp_path: Path) -> None:
    # A pid no process can have (Linux keeps pids below 2**22, macOS below 10**5); the pid of a process that has
    # exited could be given to a new one before the check.
    dead = 2**22 + 7
    lock = tmp_path / "r.lock"
    lock.write_text(f"{dead}\norbit-lite lock\n")
    with pytest.raises(OrbitLiteError) as e, claim_out(tmp_path / "r"):
        pass
    assert str(e.value) == (f"{tmp_path / 'r'} is being written by another orbit-lite run (process "
                            f"{dead}, which is no longer running: a stale lock); wait for it, or if no "
                            f"such run is going on, remove {lock}")  # fmt: skip


def test_a_read_only_or_full_location_fails_before_any_work(
    tiny_frames: Path, tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open

    def read_only(path, *args, **kwargs):
        if str(path).endswith(".lock"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, *args, **kwargs)

    def no_checkpoint_reading(*args, **kwargs):
        raise AssertionError("work started before the output location was checked")

    monkeypatch.setattr("orbit_lite.engine.evaluate.open_model", no_checkpoint_reading)  # imported by the engine
    monkeypatch.setattr(os, "open", read_only)
    result = evaluate(tiny_frames, tiny_checkpoint, tmp_path / "r")
    assert result.exit_code == 1
    assert f"error: cannot write next to {tmp_path / 'r'} (Read-only file system)" in result.stderr
    monkeypatch.setattr(os, "open", real_open)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr("orbit_lite.outputs.shutil.disk_usage", lambda _: usage(10**9, 10**9, 0))
    result = evaluate(tiny_frames, tiny_checkpoint, tmp_path / "r")
    assert result.exit_code == 1 and "(no space left on device): choose another --out" in result.stderr
    assert not (tmp_path / "r.lock").exists() and not (tmp_path / "r").exists()
    file_out = tmp_path / "file"
    file_out.write_text("x")
    result = evaluate(tiny_frames, tiny_checkpoint, file_out)
    assert result.exit_code == 1 and f"{file_out} is a file; --out must be a folder" in result.stderr
