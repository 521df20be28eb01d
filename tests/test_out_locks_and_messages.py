"""Output locations, locks and one-line messages under misuse: --out ., a killed run, two runs into one --out, foreign
files that look like ours, and mistakes that name their fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from orbit_lite.cli.main import app
from orbit_lite.errors import OrbitLiteError
from orbit_lite.out_lock import claim_out
from orbit_lite.outputs import is_onnx_file, writable_parent
from tests.conftest import TINY_RECIPE

runner = CliRunner()


def test_evaluate_out_dot_writes_into_the_current_empty_folder(
    tiny_frames: Path, tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = tmp_path / "results"
    here.mkdir()
    monkeypatch.chdir(here)  # `cd results && orbit-lite evaluate --out .` was a ValueError traceback
    args = ["evaluate", "--data", str(tiny_frames), "--checkpoint", str(tiny_checkpoint), "--out", "."]
    result = runner.invoke(app, [*args, "--device", "cpu", "--tasks", "1"])
    assert result.exit_code == 0, result.output
    assert (here / "metrics.json").is_file() and not (tmp_path / "results.lock").exists()


def test_sigterm_unwinds_and_leaves_no_lock(tmp_path: Path) -> None:
    script = (
        "import os, signal, sys, time\n"
        "from pathlib import Path\n"
        "from orbit_lite.cli import main as m\n"
        "from orbit_lite.out_lock import claim_out\n"
        "def busy():\n"
        "    with claim_out(Path(sys.argv[1])):\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        time.sleep(30)\n"
        "m.app = busy\n"
        "m.main()\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "r")], timeout=60)
    assert done.returncode == 128 + 15  # unwound: its lock file removed on the way out
    assert not (tmp_path / "r.lock").exists()


def _recipe(tmp_path: Path) -> Path:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(TINY_RECIPE))
    return recipe


def test_a_second_train_into_the_same_out_stops_at_once(tiny_frames: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["train", "--data", str(tiny_frames), "--config", str(_recipe(tmp_path)), "--device", "cpu"]
    with claim_out(run):  # a first run at work: a second one used to train too, both writing into run/
        result = runner.invoke(app, [*args, "--out", str(run)])
    assert result.exit_code == 1 and result.stderr.splitlines() == [
        f"error: {run} is being written by another orbit-lite run (process {__import__('os').getpid()}); wait for "
        "it to finish, or choose another --out"
    ]
    assert not run.exists()
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    result = runner.invoke(app, [*args, "--out", str(notes / "run")])  # was a NotADirectoryError traceback
    assert result.exit_code == 1 and result.stderr.splitlines() == [
        f"error: {notes} is a file, so {notes / 'run'} cannot be written there: choose another --out"
    ]


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc")
def test_an_unwritable_location_is_found_by_trying_not_by_permission_bits() -> None:
    with pytest.raises(OrbitLiteError, match=r"^/proc is not writable .*: choose another --out$"):
        writable_parent(Path("/proc/me.onnx"))  # as root os.access said yes; export then died with a traceback


def test_a_foreign_onnx_model_from_pytorch_is_not_ours(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    def model(inputs: list[str], outputs: list[str]) -> Path:
        node = helper.make_node("Identity", inputs[:1], outputs[:1])
        graph = helper.make_graph(
            [node] + [helper.make_node("Identity", inputs[:1], [o]) for o in outputs[1:]], "g",
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in inputs],
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in outputs],
        )  # fmt: skip
        path = tmp_path / f"{'-'.join(outputs)}.onnx"
        onnx.save(helper.make_model(graph, producer_name="pytorch"), str(path))
        return path

    assert not is_onnx_file(model(["x"], ["y"]))  # someone's own PyTorch export: replaced with --overwrite before
    # the same names as orbit-lite's exports, but no orbit-lite export id: still someone else's
    assert not is_onnx_file(model(["frames"], ["logits", "probabilities"]))


def test_one_line_errors_have_no_blank_line_before_them(tiny_copy: Path) -> None:
    frame = next(tiny_copy.rglob("*.jpg"))
    frame.write_bytes(b"")
    result = runner.invoke(app, ["data", "check", str(tiny_copy), "--no-decode"])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith("1 problem(s) found in") and "" not in lines  # a progress bar left a blank line first


def test_a_user_of_another_split_is_named_with_the_split_to_choose(tiny_frames: Path) -> None:
    from orbit_lite.data.layout import index_tree

    index = index_tree(tiny_frames)
    train_user = index.users("train")[0].user_id
    with pytest.raises(OrbitLiteError, match=r"in the test split .*is a train user: choose --split train"):
        index.user(train_user, "test")


def test_a_sampling_mistake_names_the_section_it_was_written_in() -> None:
    from orbit_lite.config import load_config

    with pytest.raises(OrbitLiteError, match=r"^test_sampling\.clip_cap must be an integer >= 1, got 0"):
        load_config([], ["test_sampling.clip_cap=0"])
    with pytest.raises(OrbitLiteError, match=r"^train_sampling\.clip_cap must be an integer >= 1, got 0"):
        load_config([], ["train_sampling.clip_cap=0"])
