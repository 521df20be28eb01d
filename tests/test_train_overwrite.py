"""``train --overwrite`` replaces an earlier orbit-lite run and nothing else; interrupted, it never loses the old
run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from orbit_lite.checkpoint import load_checkpoint, save_checkpoint
from orbit_lite.cli.main import app
from orbit_lite.config import Config, from_dict
from orbit_lite.engine.train import _Loop, train
from orbit_lite.outputs import mark_run
from orbit_lite.replace_run import replacing
from tests.conftest import TINY_RECIPE

ROOT = Path(__file__).parent.parent
runner = CliRunner()
QUICK = {**TINY_RECIPE, "train": {**TINY_RECIPE["train"], "epochs": 0}}  # a marked run with checkpoints, no training


def run_train(data: Path, out: Path, *extra: str):
    recipe = out.parent / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(QUICK))
    return runner.invoke(app, ["train", "--data", str(data), "--config", str(recipe), "--out", str(out), *extra])


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_id(run: Path) -> str:
    return json.loads((run / ".orbit-lite-run").read_text())["id"]


def trash(parent: Path) -> list[Path]:
    return [p for p in parent.iterdir() if ".old." in p.name]


def test_overwrite_replaces_an_earlier_run_and_only_when_asked(tiny_frames: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert run_train(tiny_frames, out, "--set", "train.seed=7", "--set", "train.epochs=1").exit_code == 0
    assert (out / "curves.png").is_file()  # a trained run's every file passes the proof, its pictures included
    (out / "checkpoints" / ".last.pt.x1y2.tmp").write_bytes(b"a killed save's temporary")  # the old run's own
    old_id, before = run_id(out), files(out)
    again = run_train(tiny_frames, out)  # without --overwrite: refused as before, nothing touched
    assert again.exit_code == 1
    assert (
        again.stderr.strip()
        == f"error: {out} already holds a training run; pass --resume to continue it or use a new --out"
    )
    assert files(out) == before
    result = run_train(tiny_frames, out, "--overwrite")
    assert result.exit_code == 0, result.output
    new_id = run_id(out)
    assert new_id != old_id  # a new run with its own id: no file of the old one passes as its own
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["seed"] == 0
    for name in ("best.pt", "last.pt"):
        assert load_checkpoint(out / "checkpoints" / name, "training")["run_id"] == new_id
    assert not (out / "checkpoints" / ".last.pt.x1y2.tmp").exists()  # nothing of the old run is left in the new one
    assert trash(tmp_path) == [] and not (tmp_path / "run.lock").exists()  # the old run deleted once the new one ended
    both = run_train(tiny_frames, out, "--overwrite", "--resume")
    assert both.exit_code == 1 and "pass only one of them" in both.stderr and run_id(out) == new_id


def _unmarked(run: Path) -> None:
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("my settings")
    (run / "checkpoints" / "best.pt").write_bytes(b"my model")


def _foreign_file(run: Path) -> None:
    (run / "notes.txt").write_text("my notes")


def _foreign_checkpoint(run: Path) -> None:  # another run's best.pt copied into this one
    record = load_checkpoint(run / "checkpoints" / "best.pt", "training")
    save_checkpoint(run / "checkpoints" / "best.pt", {**record, "run_id": "c" * 32}, "training")


def _foreign_curves(run: Path) -> None:
    (run / "curves.png").write_bytes(b"my plot")


def _foreign_event_file(run: Path) -> None:
    (run / "tensorboard").mkdir(exist_ok=True)
    (run / "tensorboard" / "notes.txt").write_text("my notes")


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (_unmarked, "is not an orbit-lite training run (no .orbit-lite-run marker"),
        (_foreign_file, "holds notes.txt, which is not part of an orbit-lite training run"),
        (_foreign_checkpoint, "best.pt was not written by the run marked in"),
        (_foreign_curves, "holds curves.png, which orbit-lite did not draw"),
        (_foreign_event_file, "holds tensorboard/notes.txt, which a run does not write"),
    ],
)
def test_overwrite_refuses_what_orbit_lite_cannot_prove_it_wrote(make, why: str, tiny_frames: Path, tmp_path: Path):
    out = tmp_path / "run"
    if make is not _unmarked:
        assert run_train(tiny_frames, out).exit_code == 0
    make(out)
    before = files(out)
    result = run_train(tiny_frames, out, "--overwrite")
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1, result.output
    assert why in result.stderr and str(out) in result.stderr and "never" in result.stderr
    assert "choose a new" in result.stderr
    assert files(out) == before and trash(tmp_path) == []


def test_a_failed_overwrite_puts_the_old_run_back(tiny_frames: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "run"
    assert run_train(tiny_frames, out).exit_code == 0
    before = files(out)

    def interrupted(self, path: Path) -> None:  # Ctrl-C after the new run's first files
        assert run_id(out) != json.loads(before[".orbit-lite-run"])["id"]
        raise KeyboardInterrupt

    monkeypatch.setattr(_Loop, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(from_dict(Config, QUICK), tiny_frames, out, overwrite=True)
    assert files(out) == before and trash(tmp_path) == []


def test_a_run_killed_while_replacing_leaves_the_old_run_whole_and_named(tmp_path: Path, caplog) -> None:
    run = tmp_path / "run"
    mark_run(run, "a" * 32)
    (run / "config.yaml").write_text("the old run's")
    kill = (
        "import os, signal, sys\nfrom pathlib import Path\nfrom orbit_lite.outputs import mark_run\n"
        "from orbit_lite.replace_run import replacing\nrun = Path(sys.argv[1])\n"
        "with replacing(run, 'a' * 32, 'b' * 32):\n    mark_run(run, 'b' * 32)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    assert subprocess.run([sys.executable, "-c", kill, str(run)], env=env, cwd=tmp_path).returncode == -9
    (aside,) = trash(tmp_path)
    assert run_id(aside / "run") == "a" * 32 and (aside / "run" / "config.yaml").read_text() == "the old run's"
    assert run_id(run) == "b" * 32  # the new run's start, resumable or replaceable
    with caplog.at_level("WARNING"), replacing(run, None, "c" * 32):
        pass
    assert str(aside / "run") in caplog.text and "kept" in caplog.text  # named, never deleted for the user
    assert (aside / "run" / "config.yaml").read_text() == "the old run's"


def test_overwrite_never_moves_the_folder_a_shell_stands_in(tiny_frames: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "run"
    assert run_train(tiny_frames, out).exit_code == 0
    before = files(out)
    monkeypatch.chdir(out / "checkpoints")  # renamed away, the run would leave the shell in a moved folder
    result = run_train(tiny_frames, out, "--overwrite")
    assert result.exit_code == 1 and "is the current folder (or holds it)" in result.stderr, result.output
    assert files(out) == before and trash(tmp_path) == []
