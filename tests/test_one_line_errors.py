"""Damaged and odd inputs as one line naming the right option and the right culprit, never a traceback."""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from orbit_lite.checkpoint import load_checkpoint, save_checkpoint
from orbit_lite.cli.main import app
from orbit_lite.data.layout import index_tree
from orbit_lite.errors import OrbitLiteError
from tests.conftest import one_line_error

runner = CliRunner()


def test_an_annotation_file_that_is_not_utf8_is_named(tiny_copy: Path) -> None:
    bad = sorted((tiny_copy / "annotations").rglob("*.json"))[0]
    bad.write_bytes(b'{"\xff\xfe": 1}')
    check = runner.invoke(app, ["data", "check", str(tiny_copy)])
    assert check.exit_code == 1 and not isinstance(check.exception, UnicodeDecodeError), check.exception
    assert f"{bad}: unreadable annotation file" in check.output
    from orbit_lite.data.annotations import load_annotations  # what evaluate reads each query video's labels with

    video = next(v for v in index_tree(tiny_copy).videos() if v.annotation_path == bad)
    with pytest.raises(OrbitLiteError, match="unreadable annotation file"):
        load_annotations(video)


@pytest.mark.parametrize("shape", [(1, 4000, 3), (4000, 1, 3)])
def test_an_image_one_pixel_thin_is_checked_without_an_assertion(tiny_copy: Path, shape: tuple[int, ...]) -> None:
    frame = sorted(tiny_copy.rglob("*.jpg"))[0]
    frame.write_bytes(cv2.imencode(".png", np.zeros(shape, np.uint8))[1].tobytes())  # a PNG named .jpg
    result = runner.invoke(app, ["data", "check", str(tiny_copy)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception


def test_a_checkpoint_without_its_kind_is_named_damaged(tiny_checkpoint: Path, tmp_path: Path) -> None:
    record = torch.load(tiny_checkpoint, weights_only=True)
    record.pop("kind")
    path = tmp_path / "nokind.pt"
    torch.save(record, path)
    with pytest.raises(OrbitLiteError, match="does not say which kind") as caught:
        load_checkpoint(path, "training")
    assert "None" not in str(caught.value)


def test_the_pickle_refusal_names_the_import_that_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "mixed.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "step": np.float64(3.0)}, path, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    with pytest.raises(OrbitLiteError, match=r"imports numpy\.") as caught:
        load_checkpoint(path)
    assert "collections.OrderedDict" not in str(caught.value) and "torch." not in str(caught.value)


@pytest.fixture(scope="module")
def personal(tiny_frames: Path, tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("personal") / "me.pt"
    user = index_tree(tiny_frames).users("test")[0].user_id
    args = ["personalize", "--checkpoint", str(tiny_checkpoint), "--data", str(tiny_frames), "--user", user]
    assert runner.invoke(app, [*args, "--out", str(out), "--device", "cpu"]).exit_code == 0
    return out


@pytest.mark.parametrize("clips", [torch.zeros(2, 1, 3, 7, 7, dtype=torch.uint8), torch.zeros(2, 3), "text"])
def test_damaged_check_clips_are_named_before_export_runs(personal: Path, tmp_path: Path, clips) -> None:
    record = load_checkpoint(personal, "personal")
    payload = {k: v for k, v in record.items() if k not in ("format", "version", "kind")}
    payload["check_clips"] = clips
    damaged = tmp_path / "damaged.pt"
    save_checkpoint(damaged, payload, "personal")
    out = tmp_path / "me.onnx"
    one_line_error(
        runner.invoke(app, ["export", "--model", str(damaged), "--out", str(out)]), str(damaged), "check_clips"
    )
    assert not out.exists()


@pytest.mark.parametrize("size", ["0", "100000"])
def test_backbones_frame_size_out_of_range_isone_line_error(size: str) -> None:
    one_line_error(runner.invoke(app, ["backbones", "tiny_cnn", "--frame-size", size]), "--frame-size", size)


def test_backbones_frame_size_mistake_names_the_flag() -> None:
    line = one_line_error(
        runner.invoke(app, ["backbones", "efficientnet_b0", "--frame-size", "30"]), "set --frame-size"
    )
    assert "data.frame_size" not in line


def test_a_full_disk_while_annotating_isone_line_error(
    personal: Path, tiny_videos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    import orbit_lite.visual.annotate as annotate

    video = sorted(tiny_videos.rglob("*.mp4"))[0]
    out = tmp_path / "seen.mp4"
    args = ["recognize", "--model", str(personal), str(video), "--annotate", str(out), "--device", "cpu"]

    class Closed:  # what cv2.VideoWriter does on a disk with no room: it cannot open its file
        def __init__(self, *a) -> None: ...
        def isOpened(self) -> bool:
            return False

        def release(self) -> None: ...

    monkeypatch.setattr(annotate.cv2, "VideoWriter", Closed)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(annotate.shutil, "disk_usage", lambda _: usage._replace(free=0))
    line = one_line_error(runner.invoke(app, args), str(out), "space")
    assert "install" not in line and not out.exists()
    monkeypatch.undo()

    class Silent(Closed):  # opens, then loses every frame (FFmpeg reports a failed write on stderr only)
        def isOpened(self) -> bool:
            return True

        def write(self, frame) -> None: ...

    monkeypatch.setattr(annotate.cv2, "VideoWriter", Silent)
    one_line_error(runner.invoke(app, args), str(out), "could not finish")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize(("field", "value"), [("style", torch.zeros(4, 2, dtype=torch.bool)), ("film", {"a": None})])
def test_a_personal_file_with_a_wrong_field_isone_line_error(personal: Path, tmp_path: Path, field: str, value) -> None:
    """Found by the fuzzer: a tensor where a name belongs gave a message of many lines, a None where FiLM's pair
    belongs a TypeError."""
    record = load_checkpoint(personal, "personal")
    payload = {k: v for k, v in record.items() if k not in ("format", "version", "kind")}
    payload[field] = value
    damaged = tmp_path / "damaged.pt"
    save_checkpoint(damaged, payload, "personal")
    result = runner.invoke(app, ["recognize", "--model", str(damaged), str(tmp_path / "x.jpg"), "--device", "cpu"])
    one_line_error(result, str(damaged), f"'{field}'")
