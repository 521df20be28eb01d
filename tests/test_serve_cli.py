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
