"""Damaged, foreign or unsafe files and full or read-only disks: each is one line naming the file, and nothing is
left half-written or removed that orbit-lite did not write."""

from __future__ import annotations

import errno
import os
import pickle
import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from orbit_lite.checkpoint import load_checkpoint, save_checkpoint
from orbit_lite.cli.main import app
from orbit_lite.data.layout import index_tree
from orbit_lite.errors import OrbitLiteError
from orbit_lite.out_lock import claim_out
from orbit_lite.outputs import is_onnx_file, is_predictions_csv
from tests.conftest import one_line_error

runner = CliRunner()


@pytest.fixture(scope="module")
def personal_file(tiny_frames: Path, tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("personal") / "me.pt"
    user = index_tree(tiny_frames).users("test")[0].user_id
    args = ["personalize", "--checkpoint", str(tiny_checkpoint), "--data", str(tiny_frames), "--user", user]
    result = runner.invoke(app, [*args, "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return out


def _damaged(personal_file: Path, tmp_path: Path, change) -> Path:
    record = torch.load(personal_file, weights_only=True)
    change(record)
    path = tmp_path / "damaged.pt"
    torch.save(record, path)
    return path


def test_a_personal_file_without_state_is_named_damaged(personal_file: Path, tmp_path: Path) -> None:
    damaged = _damaged(personal_file, tmp_path, lambda r: r.pop("state"))
    image = tmp_path / "frame.jpg"
    image.write_bytes(b"")
    recognize = runner.invoke(app, ["recognize", "--model", str(damaged), str(image), "--device", "cpu"])
    one_line_error(recognize, str(damaged), "damaged orbit-lite personal file: it has no 'state'")
    export = runner.invoke(app, ["export", "--model", str(damaged), "--out", str(tmp_path / "me.onnx")])
    one_line_error(export, "it has no 'state'")
    assert not (tmp_path / "me.onnx").exists()


def test_object_names_that_do_not_fit_the_head_are_refused(
    personal_file: Path, tiny_frames: Path, tmp_path: Path
) -> None:
    record = torch.load(personal_file, weights_only=True)
    way = len(record["object_names"])
    damaged = _damaged(personal_file, tmp_path, lambda r: r["object_names"].append("spare"))
    image = next(tiny_frames.rglob("*.jpg"))
    expected = f"{way + 1} object names for a head that scores {way} objects"
    one_line_error(runner.invoke(app, ["recognize", "--model", str(damaged), str(image), "--device", "cpu"]), expected)
    onnx_out = tmp_path / "me.onnx"  # export wrote a model naming the wrong objects and exited 0
    one_line_error(runner.invoke(app, ["export", "--model", str(damaged), "--out", str(onnx_out)]), expected)
    assert not onnx_out.exists()


@pytest.mark.parametrize("missing", ["model", "config"])
def test_a_training_checkpoint_without_its_parts_is_named_damaged(
    tiny_frames: Path, tiny_checkpoint: Path, tmp_path: Path, missing: str
) -> None:
    record = torch.load(tiny_checkpoint, weights_only=True)
    record.pop(missing)
    damaged = tmp_path / "best.pt"
    torch.save(record, damaged)
    user = index_tree(tiny_frames).users("test")[0].user_id
    personalize = runner.invoke(app, ["personalize", "--checkpoint", str(damaged), "--data", str(tiny_frames),
                                      "--user", user, "--out", str(tmp_path / "me.pt"), "--device", "cpu"])  # fmt: skip
    one_line_error(personalize, f"damaged orbit-lite training file: it has no '{missing}'")
    evaluate = runner.invoke(app, ["evaluate", "--data", str(tiny_frames), "--checkpoint", str(damaged),
                                   "--out", str(tmp_path / "r"), "--device", "cpu", "--tasks", "1"])  # fmt: skip
    one_line_error(evaluate, f"it has no '{missing}'")
    assert not (tmp_path / "r").exists()


def test_a_file_is_said_to_be_what_it_is(tmp_path: Path) -> None:
    noise = tmp_path / "noise.pt"
    noise.write_bytes(os.urandom(4096))
    with pytest.raises(
        OrbitLiteError, match=r"noise\.pt cannot be read as an orbit-lite checkpoint: not a PyTorch file$"
    ):
        load_checkpoint(noise)  # was "holds objects other than tensors... never unpickled": it is no pickle at all

    class Runs:
        def __reduce__(self):
            return (os.getcwd, ())

    code = tmp_path / "code.pt"
    torch.save({"weights": Runs()}, code)
    with pytest.raises(OrbitLiteError, match=r"a pickle that imports posix\.getcwd, which would run code when loaded"):
        load_checkpoint(code)
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"a": Runs()}))
    with pytest.raises(OrbitLiteError, match=r"imports posix\.getcwd.*refused, never unpickled"):
        load_checkpoint(plain)
    cut = tmp_path / "cut.pt"
    save_checkpoint(tmp_path / "whole.pt", {"x": torch.ones(1000)}, "training")
    cut.write_bytes((tmp_path / "whole.pt").read_bytes()[:-900])
    with pytest.raises(OrbitLiteError, match=r"a PyTorch file that is cut off or damaged$"):
        load_checkpoint(cut)


def test_a_weights_file_that_would_run_code_is_named_so(tmp_path: Path) -> None:
    from orbit_lite.models.backbones import create_backbone

    class Runs:
        def __reduce__(self):
            return (os.getcwd, ())

    weights = tmp_path / "w.pt"
    torch.save({"conv.weight": Runs()}, weights)
    with pytest.raises(OrbitLiteError) as e:
        create_backbone("tiny_cnn", str(weights), 32)
    assert "imports posix.getcwd, which would run code when loaded; refused" in str(e.value)
    assert "weights_only" not in str(e.value) and "pass a file saved by torch.save" not in str(e.value)


def test_a_folder_where_a_file_is_expected_is_named_a_folder(tiny_frames: Path, tmp_path: Path) -> None:
    folder = tmp_path / "orbit_cluve_protonets_efficientnet_b0_224_lite.pth"
    folder.mkdir()
    result = runner.invoke(app, ["import-orbit", str(folder), "--out", str(tmp_path / "c.pt")])
    one_line_error(result, f"{folder} is a folder; a reference checkpoint (.pth) must be a file")
    with pytest.raises(OrbitLiteError, match="is a folder; an orbit-lite training file must be a file"):
        load_checkpoint(tmp_path, "training")  # train.init=DIR goes through here


def test_import_orbit_takes_the_readmes_backbone_names(tmp_path: Path) -> None:
    from orbit_lite.import_orbit import resolve

    path = tmp_path / "mine.pth"
    assert resolve(path, "protonets", "tf_efficientnet_b0", None).backbone == "efficientnet_b0"
    assert resolve(path, "protonets", "efficientnet_b0", None).backbone == "efficientnet_b0"
    with pytest.raises(OrbitLiteError, match=r"--backbone one of efficientnet_b0.*or tf_efficientnet_b0"):
        resolve(path, "protonets", "resnet9000", None)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_mistakes_name_the_flag_the_command_takes(tiny_frames: Path, tiny_checkpoint: Path, tmp_path: Path):
    result = runner.invoke(app, ["evaluate", "--data", str(tiny_frames), "--checkpoint", str(tiny_checkpoint),
                                 "--out", str(tmp_path / "r"), "--device", "cuda"])  # fmt: skip
    one_line_error(result, "--device cuda but no CUDA device is visible; use --device cpu or --device auto")


def test_object_names_with_brackets_show_as_written(personal_file: Path, tiny_frames: Path, tmp_path: Path) -> None:
    names = ["[red]cup", "mug [v2]"]

    def rename(record: dict) -> None:
        record["object_names"][:2] = names

    model = _damaged(personal_file, tmp_path, rename)  # only the names change: still a valid recognizer
    image = next(tiny_frames.rglob("*.jpg"))
    result = runner.invoke(app, ["recognize", "--model", str(model), str(image), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "[red]cup" in result.stdout and "mug [v2]" in result.stdout


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_disk_that_fills_mid_write_is_one_line_and_changes_nothing(
    tiny_frames: Path, tiny_checkpoint: Path, personal_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "personal.pt"
    target.write_bytes(personal_file.read_bytes())
    before = target.read_bytes()
    monkeypatch.setattr("orbit_lite.publish.os.fsync", _enospc)
    with pytest.raises(OrbitLiteError) as e:
        save_checkpoint(target, {"x": torch.ones(100_000)}, "personal")
    assert re.match(
        rf"cannot write {re.escape(str(target))} \(No space left on device; it needs 39\d KB, ", str(e.value)
    )
    assert str(e.value).endswith("free); nothing was changed there: free some space or choose another location")
    assert target.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["personal.pt"]
    monkeypatch.undo()

    results = tmp_path / "results"
    monkeypatch.setattr(Path, "write_bytes", _enospc)  # the results folder's files
    result = runner.invoke(app, ["evaluate", "--data", str(tiny_frames), "--checkpoint", str(tiny_checkpoint),
                                 "--out", str(results), "--device", "cpu", "--tasks", "1"])  # fmt: skip
    one_line_error(result, f"cannot write {results} (No space left on device; it needs ", "nothing was changed there")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["personal.pt"]  # no partial folder, no lock


def test_synth_onto_a_full_or_read_only_disk_isone_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Path, "write_bytes", _enospc)
    result = runner.invoke(app, ["data", "synth", str(tmp_path / "s"), "--preset", "tiny"])
    one_line_error(result, f"cannot write {tmp_path / 's'} (No space left on device; it needs more than 0 KB")
    assert list(tmp_path.iterdir()) == []

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr("orbit_lite.publish.tempfile.mkdtemp", read_only)
    result = runner.invoke(app, ["data", "synth", str(tmp_path / "s"), "--preset", "tiny"])
    one_line_error(result, "(Read-only file system); nothing was changed there")


def test_synth_mentions_what_an_interrupted_synth_left(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from orbit_lite.data.synth import synthesize

    left = tmp_path / ".s.partial.abc123"
    left.mkdir()
    synthesize(tmp_path / "s", "tiny", seed=0)
    assert any(str(left) in r.getMessage() and "interrupted" in r.getMessage() for r in caplog.records)
    assert left.is_dir()  # mentioned, never removed: a synth may still be writing it


def test_a_lock_file_orbit_lite_did_not_write_is_never_removed(tmp_path: Path) -> None:
    lock = tmp_path / "r.lock"
    never = r"r\.lock exists and was not written by orbit-lite; it is never removed"
    for mine in ("my notes\n", ""):  # an empty file is no proof either
        lock.write_text(mine)
        with pytest.raises(OrbitLiteError, match=never), claim_out(tmp_path / "r"):
            pass
        assert lock.read_text() == mine


def test_only_an_onnx_model_with_orbit_lites_mark_is_ours(personal_file: Path, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from orbit_lite.export import export_onnx
    from orbit_lite.personal import load_personal

    path = export_onnx(load_personal(personal_file), tmp_path / "me.onnx")
    assert is_onnx_file(path)
    model = onnx.load(str(path))
    del model.metadata_props[:]  # the same graph, frames in, logits and probabilities out, without the mark
    onnx.save(model, str(path))
    assert not is_onnx_file(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["me.onnx"]  # no temporary left beside it


def test_a_predictions_csv_is_known_by_its_whole_header(tmp_path: Path) -> None:
    ours = tmp_path / "p.csv"
    ours.write_text("input,frame,prediction,probability,p_cup,p_mug\nv.mp4,1,cup,0.9000,0.9000,0.1000\n")
    assert is_predictions_csv(ours)
    theirs = tmp_path / "q.csv"
    theirs.write_text("input,frame,notes\nv.mp4,1,my notes\n")  # began like ours: was replaced by recognize --csv
    assert not is_predictions_csv(theirs)
