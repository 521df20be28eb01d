"""Commands replace only what orbit-lite wrote: never a user's data, with or without --overwrite."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from orbit_lite.cli.main import app
from orbit_lite.config import Config
from orbit_lite.errors import OrbitLiteError
from orbit_lite.outputs import check_file_out, check_results_out, check_run_out, is_results_folder

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
        assert "did not write as evaluation results" in result.stderr and "already holds results" not in result.stderr
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
    old = tmp_path / "old"  # results written before the marker file existed are still recognized
    old.mkdir()
    for name in ("metrics.json", "results.json", "per_video.csv"):
        (old / name).write_text("{}")
    assert is_results_folder(old)
    check_results_out(old, overwrite=True)
    (old / "sub").mkdir()
    assert not is_results_folder(old)


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
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("x")
    check_run_out(run)  # an unfinished run's own files: may be started again


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_written_files_and_folders_follow_the_umask(tmp_path: Path, mask: int) -> None:
    import os

    from orbit_lite.checkpoint import atomic_write_text, save_checkpoint
    from orbit_lite.engine.evaluate import UserResult, make_protocol
    from orbit_lite.engine.report import write_results

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
    with pytest.raises(OrbitLiteError, match=r"not an orbit-lite checkpoint \(not a PyTorch file, or a truncated one"):
        load_checkpoint(text)
