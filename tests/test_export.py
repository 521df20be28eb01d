from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from orbit_lite.config import ModelConfig
from orbit_lite.data.synth_render import object_frames
from orbit_lite.learners import create_learner
from orbit_lite.learners.base import Personalized
from orbit_lite.personal import PersonalModel, load_personal, save_personal

pytest.importorskip("onnxruntime")
from orbit_lite.export import ExportedRecognizer, check_inputs, compare, export_onnx, onnx_parity, softmax


def _calibrate_norms(backbone: torch.nn.Module, frames: torch.Tensor) -> None:
    # Random weights with default running statistics give nearly the same features for every frame (a B0's differ by
    # 1e-6), so every head's logits are nearly equal and any comparison passes; batch statistics of the frames the
    # model will see spread them out.
    norms = [m for m in backbone.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a plain average over the batches seen
        norm.train()
    with torch.no_grad():
        backbone(frames)
    backbone.eval()


def personal(
    learner_name: str, backbone: str, head: str = "", clip_length: int = 1, style: str = "orbit_lite"
) -> PersonalModel:
    """A recognizer personalized on rendered objects (4 clips per object), with the file's check clips."""
    torch.manual_seed(0)
    model = ModelConfig(learner=learner_name, backbone=backbone, weights="none", head=head, style=style)
    learner = create_learner(model, 32)
    frames = object_frames(12 * clip_length, 32)
    _calibrate_norms(learner.backbone, frames)
    if getattr(learner, "film", None) is not None:  # a meta-learner with a FiLM generator (a FineTuner has none)
        with torch.no_grad():
            for gate in [*learner.film.r_gamma.values(), *learner.film.r_beta.values()]:
                gate.normal_(0, 0.5)  # FiLM far from the identity, so folding it is really tested
    clips = frames.view(12, clip_length, 3, 32, 32)
    labels = torch.arange(12) % 3
    recognizer = learner.eval().personalize(clips, labels, 3)
    return PersonalModel(recognizer, ["a", "b", "c"], "me", 32, clip_length, {}, clips[:3].clone())


def spread(model: PersonalModel, inputs: torch.Tensor) -> float:
    """The mean gap between an input's largest and smallest logit."""
    logits = model.recognizer.predict(inputs)
    return float((logits.max(1).values - logits.min(1).values).mean())


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
    inputs, source = check_inputs(model)
    assert source == "context clips from the personal file" and inputs.shape == (3, 3, 32, 32)
    assert 0.3 < spread(model, inputs) < 100  # logits that differ, so the comparison can see a difference
    path = export_onnx(model, tmp_path / "model.onnx")
    assert path.stat().st_size > 0 and not list(tmp_path.glob(".*.tmp"))
    parity = onnx_parity(model, path)
    assert parity.ok and parity.inputs == 3, parity.summary()
    assert parity.logit_diff < 1e-5 and parity.probability_diff < 1e-5


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.slow  # a B0 at 32 px: about 15 s on a CPU
def test_reference_film_folds_into_timm_batch_norms() -> None:
    # The ONNX graph of a timm EfficientNet exports too (about 30 s on CPU, so not run here); what export adds to it
    # is the folding, checked here on the reference's backbone and FiLM formula, on a model whose logits spread.
    model = personal("simple_cnaps", "tf_efficientnet_b0", "proto_cosine", style="reference")
    frames = object_frames(8, 32, seed=3)
    with torch.inference_mode():
        logits, probabilities = ExportedRecognizer(model)(frames)
        expected = model.recognizer.predict(frames)
        r = model.recognizer
        unadapted = Personalized(r.backbone, r.head, None, r.state, r.way).predict(frames)
    assert spread(model, frames) > 0.3
    assert _relative(unadapted, expected) > 1e-2  # FiLM changes the logits, so folding it is what is checked
    assert _relative(logits, expected) < 1e-5
    torch.testing.assert_close(probabilities, torch.softmax(expected, 1), rtol=0, atol=1e-6)
    assert torch.equal(logits.argmax(1), expected.argmax(1))


@pytest.mark.parametrize(("learner", "style"), [("simple_cnaps", "orbit_lite"), ("cnaps", "reference")])
def test_onnx_of_clips_and_of_a_saved_file(learner: str, style: str, tmp_path: Path) -> None:
    model = personal(learner, "tiny_cnn", clip_length=2, style=style)
    save_personal(tmp_path / "me.pt", model)
    loaded = load_personal(tmp_path / "me.pt")  # the style (FiLM formula, Versa networks) comes back with the file
    assert loaded.recognizer.backbone.film_style == style and loaded.recognizer.head.style == style
    assert loaded.check_clips is not None and torch.equal(loaded.check_clips, model.check_clips)
    frames = object_frames(6, 32, seed=5).view(3, 2, 3, 32, 32)
    torch.testing.assert_close(loaded.recognizer.predict(frames), model.recognizer.predict(frames))
    assert spread(loaded, frames) > 0.3
    path = export_onnx(loaded, tmp_path / "clips.onnx")
    parity = onnx_parity(loaded, path)
    assert parity.ok and parity.inputs == 3 and parity.logit_diff < 1e-5, parity.summary()


def test_check_without_stored_clips_uses_rendered_objects(tmp_path: Path) -> None:
    model = dataclasses.replace(personal("protonets", "tiny_cnn"), check_clips=None)  # a file from before they were
    inputs, source = check_inputs(model)
    assert source == "rendered object frames" and inputs.shape == (6, 3, 32, 32) and inputs.dtype == torch.uint8
    assert inputs.float().std() > 20 and len({frame.float().mean().item() for frame in inputs}) == 6  # not uniform
    parity = onnx_parity(model, export_onnx(model, tmp_path / "m.onnx"))
    assert parity.ok and parity.inputs == 6


def test_compare_fails_on_each_kind_of_difference() -> None:
    expected = np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 0.2]])
    same = compare(expected, softmax(expected), expected, "x")
    assert same.ok and same.logit_diff == 0 and same.probability_diff < 1e-12
    assert not compare(expected * 1.01, softmax(expected * 1.01), expected, "x").ok  # 1% relative logit error
    swapped = expected[:, [1, 0, 2]]
    broken = compare(swapped, softmax(swapped), expected, "x")
    assert not broken.ok and broken.argmax_changed == 2 and broken.probability_diff > 0.1
    zeros = np.zeros_like(expected)
    assert not compare(zeros + 1e-9, softmax(zeros), zeros + 2e-9, "x").ok  # tiny logits: relative, not absolute
    nan = compare(expected * np.nan, softmax(expected), expected, "x")
    assert not nan.ok and nan.summary().count("inf") >= 2


def test_export_cli(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from orbit_lite.cli.main import app

    save_personal(tmp_path / "me.pt", personal("protonets", "tiny_cnn"))
    runner = CliRunner()
    result = runner.invoke(app, ["export", "--model", str(tmp_path / "me.pt"), "--out", str(tmp_path / "me.onnx")])
    assert result.exit_code == 0, result.output
    assert "check: onnxruntime agrees with PyTorch on 3 context clips" in " ".join(result.stdout.split())
    assert (tmp_path / "me.onnx").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["me.onnx", "me.pt"]
    side = load_personal(tmp_path / "me.pt").frame_size
    assert f"uint8 [batch, 3, {side}, {side}], outputs" in " ".join(result.stdout.split())  # brackets: not markup
    again = runner.invoke(app, ["export", "--model", str(tmp_path / "me.pt"), "--out", str(tmp_path / "me.onnx")])
    assert again.exit_code == 1 and "already exists" in again.stderr
    bad = runner.invoke(app, ["export", "--model", str(tmp_path / "me.pt"), "--format", "tflite", "--out", "x"])
    assert bad.exit_code == 2 and "'tflite' is not one of 'onnx'" in " ".join(bad.stderr.split())


def test_export_check_fails_on_a_broken_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from orbit_lite.cli.main import app

    save_personal(tmp_path / "me.pt", personal("protonets", "tiny_cnn"))
    head = ExportedRecognizer._head
    monkeypatch.setattr(ExportedRecognizer, "_head", lambda self, x: head(self, x).roll(1, dims=1))  # classes shifted
    result = CliRunner().invoke(app, ["export", "--model", str(tmp_path / "me.pt"), "--out", str(tmp_path / "me.onnx")])
    message = " ".join(result.stderr.split())
    assert result.exit_code == 1 and message.startswith("error: onnxruntime's output differs from PyTorch's"), message
    assert "on 3 context clips" in message and "top object changed on 3" in message
    assert f"{tmp_path / 'me.onnx'} was not written" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["me.pt"]  # what it wrote is gone


def test_export_in_a_fresh_process_prints_no_library_chatter(tmp_path: Path) -> None:
    import subprocess
    import sys

    save_personal(tmp_path / "me.pt", personal("protonets", "tiny_cnn"))
    args = ["export", "--model", str(tmp_path / "me.pt"), "--out", str(tmp_path / "me.onnx"), "--no-check"]
    done = subprocess.run([sys.executable, "-m", "orbit_lite", *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-1000:]
    assert "INFO" not in done.stderr and "wrote" in done.stdout  # the exporter's optimizer logs at INFO
