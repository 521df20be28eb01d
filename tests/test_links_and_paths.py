"""Outputs go only where orbit-lite can prove they are its own: never through a link, never over another command's
file, never two outputs on one path; a link to nothing and a name too long are one line before any work."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from orbit_lite.cli.main import app
from orbit_lite.data.layout import index_tree
from orbit_lite.outputs import RESULTS_MARKER, mark_run, new_id, results_marker
from tests.conftest import TINY_RECIPE, one_line_error

runner = CliRunner()


def _recipe(tmp_path: Path, **train) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({**TINY_RECIPE, "train": {**TINY_RECIPE["train"], "epochs": 1, **train}}))
    return path


def _train(data: Path, recipe: Path, out: Path, *extra: str):
    return runner.invoke(app, ["train", "--data", str(data), "--config", str(recipe), "--out", str(out), *extra])


def _unstarted_run(folder: Path) -> Path:
    """A marked run that was stopped before its first checkpoint: marker, config.yaml, metrics.jsonl."""
    mark_run(folder, new_id())
    (folder / "config.yaml").write_text("{}\n")
    (folder / "metrics.jsonl").write_text("")
    return folder


def test_a_checkpoints_link_in_a_run_is_never_written_through(tiny_frames: Path, tmp_path: Path) -> None:
    mine = tmp_path / "my_models"
    mine.mkdir()
    (mine / "best.pt").write_bytes(b"my own best model")
    run = _unstarted_run(tmp_path / "run")
    (run / "checkpoints").symlink_to(mine)
    one_line_error(_train(tiny_frames, _recipe(tmp_path), run), "checkpoints", "symbolic link")
    assert (mine / "best.pt").read_bytes() == b"my own best model" and sorted(os.listdir(mine)) == ["best.pt"]


def test_a_metrics_link_in_a_run_is_never_emptied(tiny_frames: Path, tmp_path: Path) -> None:
    log = tmp_path / "my.log"
    log.write_text("my own log\n")
    run = _unstarted_run(tmp_path / "run")
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").symlink_to(log)
    one_line_error(_train(tiny_frames, _recipe(tmp_path), run), "metrics.jsonl", "symbolic link")
    assert log.read_text() == "my own log\n"


def test_a_users_file_where_a_run_keeps_a_folder_is_refused_first(tiny_frames: Path, tmp_path: Path) -> None:
    run = _unstarted_run(tmp_path / "run")
    (run / "metrics.jsonl").write_text('{"type": "train"}\n')
    (run / "tensorboard").write_text("my notes")
    one_line_error(_train(tiny_frames, _recipe(tmp_path), run), "tensorboard", "not a folder")
    assert (run / "metrics.jsonl").read_text() == '{"type": "train"}\n' and not (run / "checkpoints").exists()


def test_resuming_a_hard_linked_copy_leaves_the_original_as_it_was(tiny_frames: Path, tmp_path: Path) -> None:
    original = tmp_path / "run"
    assert _train(tiny_frames, _recipe(tmp_path, epochs=0), original).exit_code == 0  # checkpoints, no lines
    with open(original / "metrics.jsonl", "a") as f:  # a line logged after the checkpoint (then the run was killed):
        f.write('{"type": "train", "step": 99}\n')  # a resume cuts it, in its own copy only
    before = {p.relative_to(original): p.read_bytes() for p in original.rglob("*") if p.is_file()}
    copy = tmp_path / "copy"  # cp -al: every file a hard link to the original's
    for path in sorted(original.rglob("*")):
        target = copy / path.relative_to(original)
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            target.mkdir(exist_ok=True)
        else:
            os.link(path, target)
    result = _train(tiny_frames, _recipe(tmp_path, epochs=1), copy, "--resume")
    assert result.exit_code == 0, result.output
    after = {p.relative_to(original): p.read_bytes() for p in original.rglob("*") if p.is_file()}
    assert after == before
    assert len((copy / "metrics.jsonl").read_text().splitlines()) > len(before[Path("metrics.jsonl")].splitlines())


def _results_folder(folder: Path) -> Path:
    folder.mkdir()
    (folder / "metrics.json").write_text("{}\n")
    (folder / RESULTS_MARKER).write_text(results_marker(folder))
    return folder


def _evaluate(data: Path, checkpoint: Path, out: Path, *extra: str):
    args = ["evaluate", "--data", str(data), "--checkpoint", str(checkpoint), "--out", str(out), "--device", "cpu"]
    user = index_tree(data).users("test")[0].user_id
    return runner.invoke(app, [*args, "--tasks", "1", "--users", user, *extra])


def test_an_out_link_to_results_is_written_through_and_stays_a_link(
    tiny_frames: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    results = _results_folder(tmp_path / "results")
    link = tmp_path / "latest"
    link.symlink_to(results)
    result = _evaluate(tiny_frames, tiny_checkpoint, link, "--overwrite")
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and link.resolve() == results.resolve()
    assert (results / "per_video.csv").is_file() and json.loads((results / "metrics.json").read_text())["users"] == 1


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_an_out_link_to_nothing_is_one_line_before_any_work(
    command: str, tiny_frames: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "gone")
    if command == "train":
        result = _train(tiny_frames, _recipe(tmp_path), link)
    else:
        result = _evaluate(tiny_frames, tiny_checkpoint, link)
    one_line_error(result, "--out", "symbolic link", "does not exist")
    assert link.is_symlink() and not (tmp_path / "gone").exists()


@pytest.fixture(scope="module")
def personal(tiny_frames: Path, tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("personal") / "me.pt"
    user = index_tree(tiny_frames).users("test")[0].user_id
    args = ["personalize", "--checkpoint", str(tiny_checkpoint), "--data", str(tiny_frames), "--user", user]
    assert runner.invoke(app, [*args, "--out", str(out), "--device", "cpu"]).exit_code == 0
    return out


def _frame(tiny_frames: Path) -> Path:
    return sorted(tiny_frames.rglob("*.jpg"))[0]


def _recognize(personal: Path, frame: Path, *extra: str):
    return runner.invoke(app, ["recognize", "--model", str(personal), str(frame), "--device", "cpu", *extra])


@pytest.mark.parametrize(("first", "second", "name"), [("--csv", "--plot", "same.png"),
                                                       ("--csv", "--annotate", "x.mp4")])  # fmt: skip
def test_two_outputs_on_one_path_are_refused(
    personal: Path, tiny_frames: Path, tmp_path: Path, first: str, second: str, name: str
) -> None:
    same = tmp_path / name
    one_line_error(_recognize(personal, _frame(tiny_frames), first, str(same), second, str(same)), first, second)
    assert not same.exists()


def test_a_plot_replaces_only_recognizes_own_picture(personal: Path, tiny_frames: Path, tmp_path: Path) -> None:
    frame = _frame(tiny_frames)
    own = tmp_path / "mine.png"
    assert _recognize(personal, frame, "--plot", str(own)).exit_code == 0
    assert _recognize(personal, frame, "--plot", str(own)).exit_code == 0  # its own picture: replaced
    results = _results_folder(tmp_path / "results")  # another command's folder, picture and all
    shutil.copy(own, results / "per_user_accuracy.png")
    before = (results / "per_user_accuracy.png").read_bytes()
    one_line_error(_recognize(personal, frame, "--plot", str(results / "per_user_accuracy.png")), "--plot",
              "evaluation results")  # fmt: skip
    assert (results / "per_user_accuracy.png").read_bytes() == before
    from orbit_lite.visual.png import new_figure, save_png

    curves = tmp_path / "curves.png"  # orbit-lite's mark, but drawn by train: not recognize's to replace
    save_png(new_figure(2, 2), curves)
    one_line_error(_recognize(personal, frame, "--plot", str(curves)), str(curves), "never replaced")


def test_a_name_longer_than_the_file_system_takes_isone_line_error(
    personal: Path, tiny_frames: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    long = "n" * 250
    frame = _frame(tiny_frames)
    for option, name in (("--csv", long + ".csv"), ("--plot", long + ".png"), ("--annotate", long + ".mp4")):
        one_line_error(_recognize(personal, frame, option, str(tmp_path / name)), option, "shorter name")
    user = index_tree(tiny_frames).users("test")[0].user_id
    args = ["personalize", "--checkpoint", str(tiny_checkpoint), "--data", str(tiny_frames), "--user", user]
    one_line_error(runner.invoke(app, [*args, "--out", str(tmp_path / (long + ".pt"))]), "--out", "shorter name")
    one_line_error(runner.invoke(app, ["export", "--model", str(personal), "--out", str(tmp_path / (long + ".onnx"))]),
              "--out", "shorter name")  # fmt: skip
    one_line_error(_train(tiny_frames, _recipe(tmp_path), tmp_path / long), "--out", "shorter name")
    one_line_error(_evaluate(tiny_frames, tiny_checkpoint, tmp_path / long), "--out", "shorter name")
    one_line_error(
        runner.invoke(app, ["data", "synth", str(tmp_path / long), "--preset", "tiny"]), "OUT", "shorter name"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recipe.yaml"]


def test_messages_name_the_option_that_was_used(personal: Path, tiny_frames: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    frame = _frame(tiny_frames)
    for option, name in (("--csv", "p.csv"), ("--plot", "p.png"), ("--annotate", "p.mp4")):
        line = one_line_error(_recognize(personal, frame, option, str(blocker / name)), f"choose another {option}")
        assert "--out" not in line


def test_a_hard_link_taken_while_a_run_logs_keeps_its_lines(tmp_path: Path) -> None:
    """A snapshot backup (rsync --link-dest) taken mid-run hard-links metrics.jsonl: later lines must not reach it."""
    from orbit_lite.engine.train import _Run

    run = _Run(tmp_path / "run")
    run.dir.mkdir()
    run.truncate_metrics(0)
    run.log({"type": "train", "step": 1})
    snapshot = tmp_path / "snapshot.jsonl"
    os.link(run.metrics, snapshot)
    run.log({"type": "train", "step": 2})
    assert snapshot.read_text() == '{"type": "train", "step": 1}\n'
    assert len(run.metrics.read_text().splitlines()) == 2 and run.metrics_size() == run.metrics.stat().st_size
