"""Nothing silent: a config that says one thing twice, a YAML bomb, an integer beyond any index, a personalization
that diverges. Each is one line before anything is written (or instead of a NaN recognizer)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from orbit_lite.cli.main import app
from orbit_lite.config import load_config
from orbit_lite.data.layout import index_tree
from orbit_lite.errors import OrbitLiteError
from tests.conftest import TINY_RECIPE, one_line_error

runner = CliRunner()


def _train(data: Path, config: Path, out: Path, *extra: str):
    return runner.invoke(app, ["train", "--data", str(data), "--config", str(config), "--out", str(out), *extra])


def test_a_section_written_twice_is_an_error_not_the_last_one(tiny_frames: Path, tmp_path: Path) -> None:
    config = tmp_path / "twice.yaml"
    body = yaml.safe_dump(TINY_RECIPE)
    config.write_text(body + "train:\n  epochs: 0\n")  # a second train: section, which PyYAML would keep alone
    one_line_error(_train(tiny_frames, config, tmp_path / "run"), str(config), "'train'", "twice")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("text", ["data: {frame_size: 32, frame_size: 64}\n", "model:\n  head: a\n  head: b\n"])
def test_a_key_written_twice_anywhere_is_an_error(tmp_path: Path, text: str) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(text)
    with pytest.raises(OrbitLiteError, match="written twice"):
        load_config([str(config)])


def test_merge_keys_and_plain_anchors_still_work(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("train_sampling: &s {clip_cap: 10, frame_cap: 500}\ntest_sampling:\n  <<: *s\n  clip_cap: 20\n")
    cfg = load_config([str(config)])
    assert (cfg.test_sampling.clip_cap, cfg.test_sampling.frame_cap, cfg.train_sampling.clip_cap) == (20, 500, 10)


def _mapping_bomb(levels: int) -> str:
    lines = ["a0: &a0 {x: 1, y: 1, z: 1, w: 1, v: 1, u: 1}"]
    for i in range(1, levels):
        ref = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} {{p: {ref}, q: {ref}, r: {ref}, s: {ref}, t: {ref}, o: {ref}}}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "words"),
    [(_mapping_bomb(12), "aliases expand"), ("[" * 5000 + "]" * 5000, "nested"), ("a: " + "x" * (2 << 20), "MB")],
    ids=["aliases", "depth", "size"],
)
def test_a_yaml_bomb_is_refused_in_well_under_a_second(tmp_path: Path, text: str, words: str) -> None:
    config = tmp_path / "bomb.yaml"
    config.write_text(text)
    started = time.perf_counter()
    one_line_error(_train(tmp_path, config, tmp_path / "run"), str(config), words)
    assert time.perf_counter() - started < 0.5
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("value", ["1.0e+20", "-1.0e+19"])
def test_an_integer_setting_beyond_64_bits_is_refused_before_anything_is_written(
    tiny_frames: Path, tmp_path: Path, value: str
) -> None:
    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump(TINY_RECIPE))
    run = tmp_path / "run"
    result = _train(tiny_frames, config, run, "--set", f"train_sampling.subsample_factor={value}")
    one_line_error(result, "train_sampling.subsample_factor", "2**63" if value[0] != "-" else ">= 1")
    assert not run.exists()


def _finetuner_recipe(tmp_path: Path, lr: float) -> Path:
    path = tmp_path / "finetuner.yaml"
    path.write_text(yaml.safe_dump({
        "data": {"frame_size": 32, "num_workers": 0},
        "model": {"learner": "finetuner_film", "backbone": "tiny_cnn", "weights": "none"},
        "finetune": {"steps": 3, "lr": lr},
        "test_sampling": {"subsample_factor": 4, "clip_cap": 20},
    }))  # fmt: skip
    return path


@pytest.mark.parametrize("lr", [1e10, 1e30])
def test_a_diverging_personalization_names_the_setting_and_saves_nothing(
    tiny_frames: Path, tmp_path: Path, lr: float
) -> None:
    user = index_tree(tiny_frames).users("test")[0].user_id
    out = tmp_path / "me.pt"
    args = ["personalize", "--config", str(_finetuner_recipe(tmp_path, lr)), "--out", str(out), "--device", "cpu"]
    one_line_error(runner.invoke(app, [*args, "--user", user, "--data", str(tiny_frames)]), "finetune.lr", "diverged")
    assert not out.exists()
    evaluate = ["evaluate", "--config", str(_finetuner_recipe(tmp_path, lr)), "--data", str(tiny_frames)]
    result = runner.invoke(app, [*evaluate, "--out", str(tmp_path / "eval"), "--tasks", "1", "--users", user])
    one_line_error(result, "finetune.lr", "diverged")
    assert not (tmp_path / "eval").exists()


def test_a_recognizer_holding_nan_is_never_saved(tmp_path: Path) -> None:
    from orbit_lite.config import ModelConfig
    from orbit_lite.learners import create_learner
    from orbit_lite.personal import PersonalModel, save_personal

    learner = create_learner(ModelConfig(backbone="tiny_cnn", weights="none"), 32)
    clips = torch.randint(0, 255, (4, 1, 3, 32, 32), dtype=torch.uint8)
    personal = learner.personalize(clips, torch.tensor([0, 0, 1, 1]), 2)
    personal.state = tuple(torch.full_like(t, float("nan")) for t in personal.state)
    model = PersonalModel(personal, ["a", "b"], "me", 32, 1, {})
    with pytest.raises(OrbitLiteError, match="NaN or infinite"):
        save_personal(tmp_path / "me.pt", model)
    assert not (tmp_path / "me.pt").exists()
