from __future__ import annotations

from pathlib import Path

import pytest
import torch

from orbit_lite.config import ModelConfig
from orbit_lite.learners import create_learner
from orbit_lite.personal import PersonalModel, load_personal, save_personal

pytest.importorskip("onnxruntime")
from orbit_lite.export import export_onnx, onnx_parity


def personal(
    learner_name: str, backbone: str, head: str = "", clip_length: int = 1, style: str = "orbit_lite"
) -> PersonalModel:
    torch.manual_seed(0)
    model = ModelConfig(learner=learner_name, backbone=backbone, weights="none", head=head, style=style)
    learner = create_learner(model, 32)
    if learner.film is not None:
        with torch.no_grad():
            for gate in [*learner.film.r_gamma.values(), *learner.film.r_beta.values()]:
                gate.normal_(0, 0.5)  # FiLM far from the identity, so folding it is really tested
    g = torch.Generator().manual_seed(1)
    clips = torch.randint(0, 256, (12, clip_length, 3, 32, 32), generator=g, dtype=torch.uint8)
    labels = torch.arange(12) % 3
    recognizer = learner.eval().personalize(clips, labels, 3)
    return PersonalModel(recognizer, ["a", "b", "c"], "me", 32, clip_length, {})


@pytest.mark.parametrize(
    ("learner", "backbone", "head", "style"),
    [
        ("protonets", "tiny_cnn", "proto", "orbit_lite"),
        ("protonets", "tiny_vit", "proto_cosine", "orbit_lite"),
        ("simple_cnaps", "tiny_cnn", "mahalanobis", "orbit_lite"),
        ("cnaps", "tiny_vit", "versa", "orbit_lite"),
        ("finetuner", "tiny_vit", "", "orbit_lite"),
        ("finetuner_film", "tiny_cnn", "", "reference"),  # the tuned norm layers travel in the backbone's weights
    ],
)
def test_onnx_matches_pytorch(learner: str, backbone: str, head: str, style: str, tmp_path: Path) -> None:
    model = personal(learner, backbone, head, style=style)
    path = export_onnx(model, tmp_path / "model.onnx")
    assert path.stat().st_size > 0 and not list(tmp_path.glob(".*.tmp"))
    assert onnx_parity(model, path, batch=5) < 1e-4


def test_reference_film_folds_into_timm_batch_norms() -> None:
    # The ONNX graph of a timm EfficientNet exports too (about 30 s on CPU, so not run here); what export adds to it
    # is the folding, checked here on the reference's backbone and FiLM formula.
    from orbit_lite.export import ExportedRecognizer

    model = personal("simple_cnaps", "tf_efficientnet_b0", style="reference")
    frames = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    with torch.inference_mode():
        logits, _ = ExportedRecognizer(model)(frames)
        torch.testing.assert_close(logits, model.recognizer.predict(frames), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize(("learner", "style"), [("simple_cnaps", "orbit_lite"), ("cnaps", "reference")])
def test_onnx_of_clips_and_of_a_saved_file(learner: str, style: str, tmp_path: Path) -> None:
    model = personal(learner, "tiny_cnn", clip_length=2, style=style)
    save_personal(tmp_path / "me.pt", model)
    loaded = load_personal(tmp_path / "me.pt")  # the style (FiLM formula, Versa networks) comes back with the file
    assert loaded.recognizer.backbone.film_style == style and loaded.recognizer.head.style == style
    frames = torch.randint(0, 256, (3, 2, 3, 32, 32), dtype=torch.uint8)
    torch.testing.assert_close(loaded.recognizer.predict(frames), model.recognizer.predict(frames))
    path = export_onnx(loaded, tmp_path / "clips.onnx")
    assert onnx_parity(loaded, path, batch=4) < 1e-4


def test_export_cli(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from orbit_lite.cli.main import app

    save_personal(tmp_path / "me.pt", personal("protonets", "tiny_cnn"))
    runner = CliRunner()
    result = runner.invoke(app, ["export", "--model", str(tmp_path / "me.pt"), "--out", str(tmp_path / "me.onnx")])
    assert result.exit_code == 0, result.output
    assert "max |onnxruntime - pytorch|" in result.stdout and (tmp_path / "me.onnx").exists()
    side = load_personal(tmp_path / "me.pt").frame_size
    assert f"uint8 [batch, 3, {side}, {side}], outputs" in " ".join(result.stdout.split())  # brackets: not markup
    again = runner.invoke(app, ["export", "--model", str(tmp_path / "me.pt"), "--out", str(tmp_path / "me.onnx")])
    assert again.exit_code == 1 and "already exists" in again.stderr
    bad = runner.invoke(app, ["export", "--model", str(tmp_path / "me.pt"), "--format", "tflite", "--out", "x"])
    assert bad.exit_code != 0


def test_export_in_a_fresh_process_prints_no_library_chatter(tmp_path: Path) -> None:
    import subprocess
    import sys

    save_personal(tmp_path / "me.pt", personal("protonets", "tiny_cnn"))
    args = ["export", "--model", str(tmp_path / "me.pt"), "--out", str(tmp_path / "me.onnx"), "--no-check"]
    done = subprocess.run([sys.executable, "-m", "orbit_lite", *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-1000:]
    assert "INFO" not in done.stderr and "wrote" in done.stdout  # the exporter's optimizer logs at INFO
