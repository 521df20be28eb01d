"""evaluate claims its output location before any work: one writer per --out, and a bad --out fails at once."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orbit_lite.cli.main import app
from orbit_lite.errors import OrbitLiteError
from orbit_lite.out_lock import claim_out

runner = CliRunner()


def evaluate(data: Path, checkpoint: Path, out: Path):
    args = ["evaluate", "--data", str(data), "--checkpoint", str(checkpoint), "--out", str(out), "--device", "cpu"]
    return runner.invoke(app, [*args, "--tasks", "1"])


def test_a_second_run_into_the_same_out_stops_at_once(tiny_frames: Path, tiny_checkpoint: Path, tmp_path: Path):
    out = tmp_path / "r"
    with claim_out(out) as lock:  # a first run at work
        assert lock == tmp_path / "r.lock" and lock.read_text() == f"orbit-lite lock\n{os.getpid():>10}\n"
        second = evaluate(tiny_frames, tiny_checkpoint, out)
        assert second.exit_code == 1 and second.stderr.splitlines() == [
            f"error: {out} is being written by another orbit-lite run (process {os.getpid()}); wait for it to "
            "finish, or choose another --out"
        ]
        assert lock.read_text() == f"orbit-lite lock\n{os.getpid():>10}\n" and not out.exists()
    assert not lock.exists()
    assert evaluate(tiny_frames, tiny_checkpoint, out).exit_code == 0
    assert not (tmp_path / "r.lock").exists() and (out / "metrics.json").is_file()


_HOLD = """
import os, sys, time
from pathlib import Path
from orbit_lite.out_lock import claim_out
with claim_out(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


def test_the_lock_of_a_killed_run_is_gone_with_it(tmp_path: Path) -> None:
    out = tmp_path / "r"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        busy = rf"another orbit-lite run \(process {holder.pid}\)"
        with pytest.raises(OrbitLiteError, match=busy), claim_out(out):  # held by a live process: refused
            pass
    finally:
        holder.kill()  # SIGKILL: no cleanup runs, its lock file stays behind
        holder.wait(timeout=30)
    assert (tmp_path / "r.lock").read_text() == f"orbit-lite lock\n{holder.pid:>10}\n"
    with claim_out(out) as lock:  # the kernel dropped the dead run's lock: the next run proceeds, nothing to remove
        assert lock.read_text() == f"orbit-lite lock\n{os.getpid():>10}\n"
    assert not lock.exists()
    lock.write_text("1234\norbit-lite lock\n")  # left by a killed run of an earlier orbit-lite: taken over too
    with claim_out(out):
        pass
    assert not lock.exists()


def test_a_read_only_or_full_location_fails_before_any_work(
    tiny_frames: Path, tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_link = os.link

    def read_only(src, dst, *args, **kwargs):
        if str(dst).endswith(".lock"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dst))
        return real_link(src, dst, *args, **kwargs)

    def no_checkpoint_reading(*args, **kwargs):
        raise AssertionError("work started before the output location was checked")

    monkeypatch.setattr("orbit_lite.engine.evaluate.open_model", no_checkpoint_reading)  # imported by the engine
    monkeypatch.setattr(os, "link", read_only)
    result = evaluate(tiny_frames, tiny_checkpoint, tmp_path / "r")
    assert result.exit_code == 1
    assert f"error: cannot write next to {tmp_path / 'r'} (Read-only file system)" in result.stderr
    monkeypatch.setattr(os, "link", real_link)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr("orbit_lite.outputs.shutil.disk_usage", lambda _: usage(10**9, 10**9, 0))
    result = evaluate(tiny_frames, tiny_checkpoint, tmp_path / "r")
    assert result.exit_code == 1 and "(no space left on device): choose another --out" in result.stderr
    assert not (tmp_path / "r.lock").exists() and not (tmp_path / "r").exists()
    file_out = tmp_path / "file"
    file_out.write_text("x")
    result = evaluate(tiny_frames, tiny_checkpoint, file_out)
    assert result.exit_code == 1 and f"{file_out} is a file; --out must be a folder" in result.stderr
