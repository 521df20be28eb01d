"""`orbit-lite personalize` shows the engine's progress: off a terminal a line per stage, in order, and a last line
with the work complete, never on stdout; on a terminal a bar per stage. Showing it changes nothing saved."""

from __future__ import annotations

import io
import re
from pathlib import Path

import torch
import yaml
from rich.console import Console
from typer.testing import CliRunner

from orbit_lite.checkpoint import load_checkpoint
from orbit_lite.cli.main import app
from orbit_lite.data.layout import index_tree
from orbit_lite.progress import Step

runner = CliRunner()
STEPS = 3
LINE = re.compile(r"(\d)/3 ([a-z -]+): (\d+)/(\d+)")


def same(a: object, b: object) -> bool:
    """Two saved records hold the same values, tensors compared exactly."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    return a == b


def test_personalize_off_a_terminal_prints_its_stages_and_saves_the_same_recognizer(
    tiny_frames: Path, tmp_path: Path
) -> None:
    recipe = tmp_path / "finetuner.yaml"  # a FineTuner reports every kind but adapt: read, encode, tune
    recipe.write_text(yaml.safe_dump({
        "data": {"frame_size": 32, "num_workers": 0},
        "model": {"learner": "finetuner", "backbone": "tiny_cnn", "weights": "none"},
        "finetune": {"steps": STEPS, "lr": 0.01},
        "test_sampling": {"subsample_factor": 4, "clip_cap": 20},
    }))  # fmt: skip
    user = index_tree(tiny_frames).users("test")[0]

    def personalize(name: str, seconds: str):
        args = ["personalize", "--config", str(recipe), "--user", user.user_id, "--data", str(tiny_frames),
                "--out", str(tmp_path / name), "--device", "cpu"]  # fmt: skip
        torch.manual_seed(0)  # the recipe's backbone starts random (weights: none): the same start in both runs
        result = runner.invoke(app, args, env={"ORBIT_LITE_PROGRESS_SECONDS": seconds})
        assert result.exit_code == 0, result.output
        return result, load_checkpoint(tmp_path / name, "personal")

    quiet, unwatched = personalize("quiet.pt", "0")  # lines turned off: the engine runs without a callback
    shown, watched = personalize("shown.pt", "600")  # no heartbeat in 600 s: a line per stage and the last
    assert quiet.stderr == ""
    lines = shown.stderr.splitlines()
    found = [LINE.match(line) for line in lines]
    assert all(found), lines
    assert [(m[1], m[2]) for m in found] == [("1", "reading videos"), ("2", "encoding frames"),
                                             ("3", "fine-tuning steps"), ("3", "fine-tuning steps")], lines  # fmt: skip
    assert [m[3] for m in found[:3]] == ["0", "0", "0"]  # each stage announced as it starts
    videos = sum(len(o.clean) for o in user.objects)
    assert found[0][4] == str(videos) and (found[-1][3], found[-1][4]) == (str(STEPS), str(STEPS)), lines
    assert "elapsed" in lines[-1] and "left" not in lines[-1]  # the last line: complete
    assert "saved to" in shown.stdout and not any(LINE.search(line) for line in shown.stdout.splitlines())
    assert same(unwatched, watched)


def test_a_run_prints_a_bounded_number_of_lines_however_many_steps() -> None:
    from orbit_lite.cli.step_progress import StepLines

    buffer = io.StringIO()
    lines = StepLines(("read", "encode"), every=600, console=Console(file=buffer, width=200))
    with lines.beat:
        for kind, total in (("read", 1000), ("encode", 5000)):
            for done in range(total + 1):
                lines(Step(kind, done, total))
        for _ in range(100):  # kinds taking turns: still one line each
            lines(Step("read", 1000, 1000))
            lines(Step("encode", 5000, 5000))
    lines.finish()
    assert buffer.getvalue().splitlines()[0] == "1/2 reading videos: 0/1,000"
    assert buffer.getvalue().splitlines()[1:2] == ["2/2 encoding frames: 0/5,000"]
    assert len(buffer.getvalue().splitlines()) == 3 and "5,000/5,000" in buffer.getvalue().splitlines()[-1]


def test_on_a_terminal_a_bar_per_stage_and_stdout_left_alone(capsys) -> None:
    from orbit_lite.cli.step_progress import step_progress

    buffer = io.StringIO()
    terminal = Console(file=buffer, width=120, force_terminal=True, color_system=None)
    with step_progress(("read", "encode", "tune"), console=terminal) as report:
        assert report is not None
        for done in range(4):
            report(Step("read", done, 3))
        print("a result")  # what a command prints on stdout while the bars are drawn stays there
        report(Step("encode", 0, 12))
        report(Step("encode", 12, 12))
    shown = buffer.getvalue()
    for stage in ("1/3 reading videos", "2/3 encoding frames", "3/3 fine-tuning steps"):
        assert stage in shown, shown
    assert "3/3 " in shown and "12/12" in shown  # the bars' counts as they ended
    assert "a result" not in shown and capsys.readouterr().out == "a result\n"
