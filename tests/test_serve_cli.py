"""`orbit-lite serve`'s options: defaults (loopback, port 8000, the platform's data folder), one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("fastapi", reason="pip install 'orbit-lite[serve]'")
from serve_media import write_recipe

from orbit_lite.cli.main import app
from orbit_lite.cli.serve import default_store


def test_serve_listens_on_loopback_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw, app=app))
    result = CliRunner().invoke(
        app, ["serve", "--config", str(write_recipe(tmp_path)), "--store", str(tmp_path / "s"), "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8000
    assert seen["app"].state.service.settings.max_upload_mb == 200
    assert (tmp_path / "s" / "orbit-lite-serve.sqlite3").is_file()


def test_serve_mistakes_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    runner = CliRunner()
    cases = [
        (["--store", str(tmp_path / "file")], "is a file"),
        (["--checkpoint", str(tmp_path / "c.pt"), "--config", str(tmp_path / "r.yaml")], "either --checkpoint"),
    ]
    for options, words in cases:
        result = runner.invoke(app, ["serve", *options, "--device", "cpu"])
        assert result.exit_code == 1 and words in result.output and "Traceback" not in result.output, result.output


def test_default_store_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_store() == tmp_path / "orbit-lite" / "serve"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_store() == Path.home() / ".local" / "share" / "orbit-lite" / "serve"


def test_a_second_server_on_a_held_store_refuses_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    import uvicorn

    from orbit_lite.serve.store import Store

    started: list[bool] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.append(True))
    recipe, store = write_recipe(tmp_path), tmp_path / "s"
    command = ["serve", "--config", str(recipe), "--store", str(store), "--device", "cpu"]
    first = Store(store)  # another server holding the store
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 1 and not started, result.output
    line = result.output.strip()
    assert "\n" not in line and "Traceback" not in line
    assert f"the store {store} is in use by another orbit-lite serve (process {os.getpid()})" in line
    assert "stop that server first, or choose another --store" in line
    first.close()
    result = CliRunner().invoke(app, command)  # the first one stopped: the store is free again
    assert result.exit_code == 0 and started == [True], result.output


def test_a_killed_server_never_blocks_the_next(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    from orbit_lite.errors import OrbitLiteError
    from orbit_lite.serve.store import Store

    store = tmp_path / "s"
    store.mkdir()
    hold = (
        "import pathlib, sys, time; from orbit_lite.serve.store_lock import hold_store; "
        "held = hold_store(pathlib.Path(sys.argv[1])); print('held', flush=True); time.sleep(60)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    holder = subprocess.Popen([sys.executable, "-c", hold, str(store)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(OrbitLiteError, match=f"in use by another orbit-lite serve \\(process {holder.pid}\\)"):
            Store(store)
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    finally:
        holder.kill()
        holder.wait(10)
    Store(store).close()  # no stale lock: the kernel dropped it with its holder
