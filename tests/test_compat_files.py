"""Files written by an earlier orbit-lite (tests/fixtures/compat, made by its make.py) load in today's code and give
the same answers: a training checkpoint evaluates to the same results files, personalizes to the same recognizer, and
a personal recognizer recognizes the same. Timings are the only values allowed to differ."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml
from typer.testing import CliRunner

from orbit_lite.checkpoint import load_checkpoint
from orbit_lite.cli.main import app
from orbit_lite.config import Config, to_dict

HERE = Path(__file__).parent / "fixtures" / "compat"
runner = CliRunner()


def untimed(value):
    """``value`` without the keys that hold timings (seconds), which differ from run to run."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if "seconds" not in k}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


def test_an_earlier_checkpoint_evaluates_to_the_same_results_files(tiny_frames: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    args = ["evaluate", "--data", str(tiny_frames), "--checkpoint", str(HERE / "checkpoint.pt"), "--out", str(out)]
    result = runner.invoke(app, [*args, "--tasks", "2", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    expected = HERE / "evaluate"
    for name in ("per_video.csv", "per_user.csv", "per_object.csv"):
        assert (out / name).read_text() == (expected / name).read_text(), name
    for name in ("results.json", "metrics.json"):
        got, want = (json.loads((d / name).read_text()) for d in (out, expected))
        assert untimed(got) == untimed(want), name
    got, want = (yaml.safe_load((d / "config.yaml").read_text()) for d in (out, expected))
    got["evaluation"].pop("checkpoint"), want["evaluation"].pop("checkpoint")  # where the file was
    # Keys added since the earlier version may appear, but only with their defaults: they change nothing it did.
    defaults = to_dict(Config())
    for section, keys in got.items():
        if isinstance(keys, dict) and isinstance(want.get(section), dict):
            added = {k: v for k, v in keys.items() if k not in want[section]}
            assert added == {k: defaults.get(section, {}).get(k, "(no default)") for k in added}, section
            want[section] = {**want[section], **added}
    assert got == want


def test_an_earlier_checkpoint_personalizes_to_the_same_recognizer(tiny_frames: Path, tmp_path: Path) -> None:
    user = json.loads((HERE / "recognize.json").read_text())["user"]
    args = ["personalize", "--checkpoint", str(HERE / "checkpoint.pt"), "--data", str(tiny_frames), "--user", user]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "me.pt"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    got, want = load_checkpoint(tmp_path / "me.pt", "personal"), load_checkpoint(HERE / "personal.pt", "personal")
    assert got.keys() == want.keys()
    for key in ("user", "object_names", "frame_size", "clip_length", "backbone_name", "head_name", "config"):
        assert got[key] == want[key], key
    for a, b in zip(got["state"], want["state"], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    for part in ("backbone", "head"):
        assert got[part].keys() == want[part].keys()
        for k in got[part]:
            assert torch.equal(got[part][k], want[part][k]), k


def test_an_earlier_personal_file_recognizes_the_same(tiny_frames: Path) -> None:
    saved = json.loads((HERE / "recognize.json").read_text())["answer"]
    video = tiny_frames / saved["inputs"][0]["input"]
    result = runner.invoke(app, ["recognize", str(video), "--model", str(HERE / "personal.pt"), "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    answer["inputs"][0]["input"] = saved["inputs"][0]["input"]
    got, want = untimed(answer), untimed(saved)
    got_frames, want_frames = got["inputs"][0].pop("per_frame"), want["inputs"][0].pop("per_frame")
    assert got == {**want, "inputs": [{**want["inputs"][0], "confidence": got["inputs"][0]["confidence"]}]}
    assert abs(got["inputs"][0]["confidence"] - want["inputs"][0]["confidence"]) < 1e-6
    assert [f["prediction"] for f in got_frames] == [f["prediction"] for f in want_frames]
    for g, w in zip(got_frames, want_frames, strict=True):
        assert abs(g["probability"] - w["probability"]) < 1e-6
