"""Commands replace only what orbit-lite wrote: never a user's data, with or without --overwrite."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from orbit_lite.cli.main import app
from orbit_lite.config import Config
from orbit_lite.errors import OrbitLiteError
from orbit_lite.outputs import (
    check_file_out,
    check_results_out,
    check_run_out,
    is_results_folder,
    mark_run,
    results_ownership,
)
from tests.conftest import TINY_RECIPE

runner = CliRunner()


def evaluate(data: Path, checkpoint: Path, out: Path, *extra: str):
    args = ["evaluate", "--data", str(data), "--checkpoint", str(checkpoint), "--out", str(out), "--device", "cpu"]
    return runner.invoke(app, [*args, "--tasks", "1", *extra])


def test_overwrite_never_deletes_a_folder_that_is_not_results(
    tiny_frames: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    precious = tmp_path / "demo"
    (precious / "data").mkdir(parents=True)
    (precious / "data" / "keys.jpg").write_bytes(b"my data")
    (precious / "personal.pt").write_bytes(b"my model")
    for extra in ((), ("--overwrite",)):
        result = evaluate(tiny_frames, tiny_checkpoint, precious, *extra)
        assert result.exit_code == 1
        assert "is not a results folder orbit-lite can prove it wrote" in result.stderr
        assert "already holds results" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert (precious / "data" / "keys.jpg").read_bytes() == b"my data"
    assert (precious / "personal.pt").read_bytes() == b"my model"


def test_overwrite_replaces_results_it_wrote_and_only_those(
    tiny_frames: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "results"
    assert evaluate(tiny_frames, tiny_checkpoint, out).exit_code == 0
    assert is_results_folder(out)
    refused = evaluate(tiny_frames, tiny_checkpoint, out)
    assert refused.exit_code == 1 and "already holds results" in refused.stderr
    assert evaluate(tiny_frames, tiny_checkpoint, out, "--overwrite").exit_code == 0
    (out / "my_notes.txt").write_text("mine")  # a user's file inside: the folder is no longer only results
    assert not is_results_folder(out)
    again = evaluate(tiny_frames, tiny_checkpoint, out, "--overwrite")
    assert again.exit_code == 1 and (out / "my_notes.txt").read_text() == "mine"


def test_results_folder_rules(tmp_path: Path) -> None:
    check_results_out(tmp_path / "new", overwrite=False)  # absent: fine
    (tmp_path / "empty").mkdir()
    check_results_out(tmp_path / "empty", overwrite=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OrbitLiteError, match="is a file"):
        check_results_out(tmp_path / "file", overwrite=True)
    old = tmp_path / "old"  # results written before the marker held a proof: refused, with how to move them aside
    old.mkdir()
    for name in ("metrics.json", "results.json", "per_video.csv"):
        (old / name).write_text("{}")
    (old / ".orbit-lite-results").write_text("evaluation results written by orbit-lite\n")
    assert not is_results_folder(old)
    with pytest.raises(OrbitLiteError, match=rf"move it aside \(mv {old} {old}.old\)"):
        check_results_out(old, overwrite=True)


def test_results_are_ours_only_while_unchanged(tiny_frames: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    assert evaluate(tiny_frames, tiny_checkpoint, out).exit_code == 0
    marker = json.loads((out / ".orbit-lite-results").read_text())
    assert len(marker["id"]) == 32 and set(marker["files"]) == {p.name for p in out.iterdir()} - {".orbit-lite-results"}
    assert is_results_folder(out)
    metrics = (out / "metrics.json").read_text()
    (out / "metrics.json").write_text(metrics.replace("{", "{ ", 1))  # the user edited a file: no longer provably ours
    assert results_ownership(out) == "metrics.json was changed after orbit-lite wrote it"
    refused = evaluate(tiny_frames, tiny_checkpoint, out, "--overwrite")
    assert refused.exit_code == 1 and "metrics.json was changed after orbit-lite wrote it" in refused.stderr
    (out / "metrics.json").write_text(metrics)
    (out / "per_user.csv").unlink()
    assert results_ownership(out) == "per_user.csv, which orbit-lite wrote there, is gone"


def test_another_tools_results_with_our_file_names_are_never_replaced(
    tiny_frames: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    look = tmp_path / "look"  # said "already holds results" and replaced them with --overwrite
    look.mkdir()
    (look / "metrics.json").write_text('{"mine": 1}')
    (look / "config.yaml").write_text("mine: true\n")
    for extra in ((), ("--overwrite",)):
        result = evaluate(tiny_frames, tiny_checkpoint, look, *extra)
        assert result.exit_code == 1 and "already holds results" not in result.stderr
        assert "it has no orbit-lite results marker" in result.stderr
    assert (look / "metrics.json").read_text() == '{"mine": 1}' and (look / "config.yaml").read_text() == "mine: true\n"


def test_replacing_results_never_touches_a_sibling_with_the_old_trash_name(
    tiny_frames: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ev0"  # `.ev0.old/` was the fixed trash name, deleted with its content
    sibling = tmp_path / ".ev0.old"
    sibling.mkdir()
    (sibling / "keep.txt").write_text("mine")
    assert evaluate(tiny_frames, tiny_checkpoint, out).exit_code == 0
    first = json.loads((out / ".orbit-lite-results").read_text())["id"]
    assert evaluate(tiny_frames, tiny_checkpoint, out, "--overwrite").exit_code == 0
    assert json.loads((out / ".orbit-lite-results").read_text())["id"] != first
    assert (sibling / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ev0.old", "ev0"]  # no trash or temporary left


def test_evaluate_into_the_current_folder_only_when_empty(
    tiny_frames: Path, tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = tmp_path / "here"
    here.mkdir()
    inode = here.stat().st_ino
    monkeypatch.chdir(here)
    assert evaluate(tiny_frames, tiny_checkpoint, Path(".")).exit_code == 0
    assert here.stat().st_ino == inode and is_results_folder(here)  # written in place: the shell's folder stays
    again = evaluate(tiny_frames, tiny_checkpoint, Path("."), "--overwrite")
    assert again.exit_code == 1 and "is the current folder (or holds it) and is not empty" in again.stderr
    assert here.stat().st_ino == inode and is_results_folder(here)


def test_file_outputs_replace_only_their_own_kind(tmp_path: Path) -> None:
    mine = tmp_path / "notes.pt"
    mine.write_text("not a model")
    with pytest.raises(OrbitLiteError, match="not a thing written by orbit-lite; it is never replaced"):
        check_file_out(mine, True, lambda p: False, "a thing")
    with pytest.raises(OrbitLiteError, match="already exists; pass --overwrite"):
        check_file_out(mine, False, lambda p: True, "a thing")
    check_file_out(mine, True, lambda p: True, "a thing")
    with pytest.raises(OrbitLiteError, match="is a folder"):
        check_file_out(tmp_path, True, lambda p: True, "a thing")


def test_personalize_and_recognize_refuse_to_replace_foreign_files(
    tiny_frames: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    foreign = tmp_path / "thesis.pt"
    foreign.write_bytes(b"chapter one")
    args = ["personalize", "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--data", str(tiny_frames)]
    result = runner.invoke(app, [*args, "--user", "P900", "--out", str(foreign), "--overwrite"])
    assert result.exit_code == 1 and "not a personal recognizer written by orbit-lite" in result.stderr
    assert foreign.read_bytes() == b"chapter one"
    model = tmp_path / "me.pt"
    from orbit_lite.data.layout import index_tree

    user = index_tree(tiny_frames).users("test")[0].user_id
    assert runner.invoke(app, [*args, "--user", user, "--out", str(model)]).exit_code == 0
    assert runner.invoke(app, [*args, "--user", user, "--out", str(model), "--overwrite"]).exit_code == 0
    image = next(tiny_frames.rglob("*.jpg"))
    csv_file = tmp_path / "budget.csv"
    csv_file.write_text("month,amount\njan,3\n")
    seen = runner.invoke(app, ["recognize", "--model", str(model), str(image), "--csv", str(csv_file)])
    assert seen.exit_code == 1 and "not a predictions CSV" in seen.stderr
    assert "--overwrite" not in seen.stderr  # recognize has no such option: do not suggest it
    assert csv_file.read_text() == "month,amount\njan,3\n"


def test_train_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    with pytest.raises(OrbitLiteError, match="not an orbit-lite training run"):
        check_run_out(tmp_path)
    run = tmp_path / "run"  # a run's file names without orbit-lite's marker: the user's, refused
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("x")
    with pytest.raises(OrbitLiteError, match=r"no \.orbit-lite-run marker, whatever files it holds"):
        check_run_out(run)
    mark_run(run, "ab" * 16)
    assert check_run_out(run) == "ab" * 16  # marked by orbit-lite: an unfinished run of its own
    (run / "checkpoints" / "mine.pt").write_text("x")
    with pytest.raises(OrbitLiteError, match=r"holds checkpoints/mine\.pt, which is not part of"):
        check_run_out(run)


def _train(data: Path, out: Path, *extra: str):
    recipe = out.parent / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({**TINY_RECIPE, "train": {**TINY_RECIPE["train"], "epochs": 1}}))
    return runner.invoke(app, ["train", "--data", str(data), "--config", str(recipe), "--out", str(out), *extra])


@pytest.mark.parametrize("own", [("config.yaml", "metrics.jsonl"), ("checkpoints/best.pt",)])
def test_train_never_writes_into_a_users_folder_with_run_file_names(
    tiny_frames: Path, tmp_path: Path, own: tuple[str, ...]
) -> None:
    project = tmp_path / "myproj"  # exit 0 and the user's files silently replaced
    for name in own:
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(f"my {name}")
    for extra in ((), ("--resume",)):
        result = _train(tiny_frames, project, *extra)
        assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1, result.output
        assert "marker" in result.stderr
    assert all((project / name).read_text() == f"my {name}" for name in own)
    assert not (project / ".orbit-lite-run").exists()


def test_a_run_resumes_only_with_its_own_checkpoints(tiny_frames: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert _train(tiny_frames, run).exit_code == 0
    run_id = json.loads((run / ".orbit-lite-run").read_text())["id"]
    assert len(run_id) == 32 and torch.load(run / "checkpoints" / "last.pt")["run_id"] == run_id
    other = tmp_path / "other"
    assert _train(tiny_frames, other).exit_code == 0
    shutil.copy(other / "checkpoints" / "last.pt", run / "checkpoints" / "last.pt")  # another run's checkpoint
    result = _train(tiny_frames, run, "--resume")
    assert result.exit_code == 1 and "was not written by the run marked in" in result.stderr
    (run / ".orbit-lite-run").unlink()  # a run of an older orbit-lite: not resumed, pointed at train.init instead
    result = _train(tiny_frames, run, "--resume")
    assert result.exit_code == 1 and f"--set train.init={run / 'checkpoints' / 'last.pt'}" in result.stderr


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_written_files_and_folders_follow_the_umask(tmp_path: Path, mask: int) -> None:
    import os

    from orbit_lite.checkpoint import atomic_write_text, save_checkpoint
    from orbit_lite.engine.evaluate import make_protocol
    from orbit_lite.engine.report import write_results
    from orbit_lite.results import UserResult

    old = os.umask(mask)
    try:
        save_checkpoint(tmp_path / "c.pt", {"x": 1}, "training")
        atomic_write_text(tmp_path / "t.csv", "input,frame\n")
        write_results(tmp_path / "r", [UserResult("P1")], make_protocol(Config()), "test", 1.0, {})
    finally:
        os.umask(old)
    assert (tmp_path / "c.pt").stat().st_mode & 0o777 == 0o666 & ~mask
    assert (tmp_path / "t.csv").stat().st_mode & 0o777 == 0o666 & ~mask
    assert (tmp_path / "r").stat().st_mode & 0o777 == 0o777 & ~mask
    assert {p.stat().st_mode & 0o777 for p in (tmp_path / "r").iterdir()} == {0o666 & ~mask}


def test_a_text_file_as_checkpoint_is_explained_not_quoted(tmp_path: Path) -> None:
    from orbit_lite.checkpoint import load_checkpoint

    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(
        OrbitLiteError, match=r"notes.pt cannot be read as an orbit-lite checkpoint: not a PyTorch file$"
    ):
        load_checkpoint(text)


def test_the_makefile_deletes_no_demo_output_and_reruns_with_overwrite() -> None:
    """DEMO_DIR and SYNTH_DIR may be a user's own folders: make replaces there only through the commands'
    --overwrite (which proves what orbit-lite wrote), and make clean removes only the default folders."""
    text = (Path(__file__).parent.parent / "Makefile").read_text().replace("\\\n", " ")
    commands = [line.strip() for line in text.splitlines() if line.startswith("\t")]
    removals = [c for c in commands if c.split()[:1] == ["rm"] or " rm " in f" {c} "]
    assert removals and not [c for c in removals if "DEMO_DIR" in c or "SYNTH_DIR" in c], removals
    writes = [c for c in commands if any(f"orbit-lite {n} " in c for n in ("train", "evaluate", "personalize"))]
    assert len(writes) >= 8 and all("--overwrite" in c for c in writes), writes
