"""What a newcomer meets: the README's command table is the CLI's, help names values readably, model names answer
before torch, slow commands print progress off a terminal, the same seed gives the same run, evaluate's chance level
and make demo's comparison table."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
import torch
import yaml
from rich.console import Console
from typer.testing import CliRunner

from orbit_lite.checkpoint import load_checkpoint
from orbit_lite.cli.main import app
from tests.conftest import TINY_RECIPE

ROOT = Path(__file__).parent.parent
runner = CliRunner()


def test_the_names_known_before_torch_are_the_registries() -> None:
    from orbit_lite.choices import BACKBONE_NAMES, HEAD_NAMES, LEARNER_NAMES
    from orbit_lite.learners import LEARNERS
    from orbit_lite.models.backbones import BACKBONES
    from orbit_lite.models.heads import HEADS

    assert sorted(BACKBONE_NAMES) == sorted(BACKBONES)
    assert sorted(LEARNER_NAMES) == sorted(LEARNERS)
    assert sorted(HEAD_NAMES) == sorted(HEADS)


def test_the_readme_command_table_is_the_command_line() -> None:
    from orbit_lite.cli.help import command_table, readme_block

    assert readme_block(ROOT / "README.md") == command_table(), (
        "the README's command table differs from the CLI: python -m orbit_lite.cli.help --write README.md"
    )
    table = command_table()
    for option in ("evaluate --data ROOT", "[--split test|train|validation]", "[--seed N]", "[--set KEY=VALUE]",
                   "[--check/--no-check]", "[--overwrite]", "import-orbit --out CKPT.pt", "INPUT..."):  # fmt: skip
        assert option.replace("|", "\\|") in table, option


@pytest.mark.parametrize("command", ["train", "evaluate", "personalize", "recognize", "import-orbit", "data synth"])
def test_help_names_values_by_what_they_are(command: str) -> None:
    result = runner.invoke(app, [*command.split(), "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    assert "{" not in result.output.splitlines()[0]  # the usage line: REF.pth, not {REF.pth}
    for typed in ("<list[", "<str>", "<path>", "<int>", "<integer>", "<float>"):  # Python types as value names
        assert typed not in result.output, typed


def test_heartbeat_prints_progress_and_time_left_off_a_terminal() -> None:
    from orbit_lite.cli.common import Heartbeat

    buffer = io.StringIO()
    console = Console(file=buffer, width=200, force_terminal=False)
    with Heartbeat("evaluating 4 users", 4, every=0.05, console=console) as beat:
        time.sleep(0.12)  # nothing done yet: still a line
        beat.advance(1)
        time.sleep(0.12)
    lines = buffer.getvalue().splitlines()
    assert any("0/4" in line and "time left not known yet" in line for line in lines), lines
    assert any("1/4" in line and "left" in line and "elapsed" in line for line in lines), lines
    count = len(lines)
    time.sleep(0.12)
    assert len(buffer.getvalue().splitlines()) == count  # stopped with the work


def test_the_same_seed_gives_the_same_run(tiny_frames: Path, tmp_path: Path) -> None:
    """Two runs of the same recipe, one decoding in the main process and one in a loader worker, end with identical
    weights and log identical metrics."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({**TINY_RECIPE, "train": {**TINY_RECIPE["train"], "epochs": 1}}))
    runs = [tmp_path / "a", tmp_path / "b"]
    for run, workers in zip(runs, (0, 1), strict=True):
        args = ["train", "--data", str(tiny_frames), "--config", str(recipe), "--out", str(run)]
        assert runner.invoke(app, [*args, "--set", f"data.num_workers={workers}"]).exit_code == 0

    def metrics(run: Path) -> list[dict]:
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k not in ("tasks_per_s", "memory_mb")} for r in records]

    assert metrics(runs[0]) == metrics(runs[1]) and len(metrics(runs[0])) >= 2
    a, b = (load_checkpoint(run / "checkpoints" / "last.pt")["model"] for run in runs)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_evaluate_reports_the_chance_level() -> None:
    from orbit_lite.engine.report import chance_level
    from orbit_lite.results import TaskResult, UserResult, VideoScore

    def score(task: int) -> VideoScore:
        return VideoScore("P1", task, f"v{task}", "mug", 0, 10, 1.0, 0.0, 1.0)

    tasks = (TaskResult(("a", "b"), {}), TaskResult(("a", "b", "c", "d"), {}))
    result = UserResult("P1", scores=(score(0), score(1), score(1)), tasks=tasks)
    assert chance_level([result]) == pytest.approx((1 / 2 + 1 / 4 + 1 / 4) / 3)  # averaged as the scores are
    assert chance_level([UserResult("P2")]) is None


def test_the_demo_comparison_fits_80_columns(tmp_path: Path) -> None:
    from orbit_lite.cli.compare import comparison_table

    named = []
    for name, checkpoint, epochs in (("ProtoNets", None, 0), ("ProtoNets+LITE", "best.pt", 2)):
        folder = tmp_path / name
        folder.mkdir()
        metric = {"mean": 0.5751, "ci95": 0.1832}
        (folder / "metrics.json").write_text(json.dumps({"frame_accuracy": metric, "frames_to_recognition": metric,
                                                         "video_accuracy": metric, "chance": 0.2105}))  # fmt: skip
        config = {"evaluation": {"checkpoint": checkpoint}, "train": {"epochs": epochs, "tasks_per_user": 5}}
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
        named.append((name, folder))
    buffer = io.StringIO()
    table, chance = comparison_table(named)
    Console(file=buffer, width=80).print(table)
    text = buffer.getvalue() + chance
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "57.5 (18.3)" in text and "21.1" in text and "ProtoNets+LITE" in text
    rows = [line.split() for line in text.splitlines() if line.lstrip().startswith("ProtoNets")]
    assert [row[1] for row in rows] == ["no", "yes"]
