"""The command line answers at once: --help, --version and option mistakes never wait for torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

HEAVY = ("torch", "torchvision", "timm", "cv2", "decord", "numpy", "pandas", "matplotlib")

_LOADED = (
    "[m for m in "
    + repr(HEAVY)
    + " if m in sys.modules] + [m for m in sys.modules if m.startswith('orbit_lite.engine')]"
)


def _run(script: str, *args: str) -> object:
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_importing_the_command_line_loads_no_heavy_library() -> None:
    assert _run(f"import json, sys\nimport orbit_lite.cli.main\nprint(json.dumps({_LOADED}))") == []


# Every command of the app (found by walking it, so a new command is covered too), each with --help, then --version:
# after each, which heavy modules are loaded and how it exited.
_EVERY_HELP = f"""
import json, sys, click, typer
from orbit_lite.cli.main import app

def walk(command, path):
    yield path
    for name, sub in getattr(command, "commands", {{}}).items():
        yield from walk(sub, [*path, name])

root = typer.main.get_command(app)
report = []
for args in [*([*p, "--help"] for p in walk(root, [])), ["--version"]]:
    try:
        app(args, standalone_mode=False)
        code = 0
    except SystemExit as e:
        code = e.code
    report.append([args, code, {_LOADED}])
print(json.dumps(report))
"""


def test_every_help_and_the_version_answer_without_torch() -> None:
    report = _run(_EVERY_HELP)
    commands = {" ".join(args[:-1]) for args, _, _ in report}
    assert {"train", "personalize", "recognize", "evaluate", "export", "import-orbit", "data synth"} <= commands
    for args, code, loaded in report:
        assert code in (0, None) and loaded == [], (args, code, loaded)


_MISTAKES = f"""
import json, sys
from typer.testing import CliRunner
from orbit_lite.cli.main import app

report = []
for args in json.loads(sys.argv[1]):
    result = CliRunner().invoke(app, args)
    report.append([args, result.exit_code, result.stderr, {_LOADED}])
print(json.dumps(report))
"""


def test_option_and_config_mistakes_answer_without_torch(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"train": {"epochz": 1}}))
    f = tmp_path / "file"
    f.write_text("x")
    d, new = str(tmp_path), str(tmp_path / "new")
    train = ["train", "--data", d, "--config", str(recipe), "--out", new]
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"model": {"learner": "protonets", "backbone": "tiny_cnn", "weights": "none"}}))
    good_train = ["train", "--data", d, "--config", str(good), "--out", new]
    evaluate = ["evaluate", "--data", d, "--checkpoint", str(f)]
    mistakes = {
        "train.epochz": train,
        "'x' is not key=value": [*train, "--set", "x"],
        "is a file; --out must be a folder": [*evaluate, "--out", str(f)],
        "--seed must be >= 0": [*evaluate, "--out", new, "--seed", "-1"],
        "give either --user ID with --data ROOT": ["personalize", "--checkpoint", str(f), "--out", new],
        "is not a predictions CSV written by orbit-lite": ["recognize", "--model", str(f), "--csv", str(f), str(f)],
        "is a folder; it must name a file": ["export", "--model", str(f), "--out", d],
        "is not named like a published checkpoint": ["import-orbit", str(f), "--out", new],
        "'huge' is not one of": ["data", "synth", new, "--preset", "huge"],
        # registry names in a recipe or a --set, on every command that reads a recipe
        "unknown backbone 'resnet19'; did you mean resnet18?": [*good_train, "--set", "model.backbone=resnet19"],
        "unknown learner 'protonet'; available: protonets": [
            "evaluate", "--data", d, "--config", str(good), "--out", new, "--set", "model.learner=protonet"],
        "unknown head 'cosine'; available: proto": [
            "personalize", "--user", "P1", "--data", d, "--config", str(good), "--out", str(tmp_path / "me.pt"),
            "--set", "model.head=cosine"],
    }  # fmt: skip
    report = _run(_MISTAKES, json.dumps(list(mistakes.values())))
    for (expected, args), (_, code, stderr, loaded) in zip(mistakes.items(), report, strict=True):
        assert code != 0 and loaded == [], (args, code, loaded)
        assert expected in " ".join(stderr.split()), (args, stderr)
