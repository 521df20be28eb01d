"""``python -m orbit_lite.cli.compare NAME=RESULTS ...``: evaluate's results folders side by side (make demo's summary).

Each folder is one ``orbit-lite evaluate --out``; the table shows the learner, whether it was meta-trained, and the
three ORBIT metrics with their 95% intervals, in percent, with the chance level of the same tasks.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml
from rich import box
from rich.table import Table

from orbit_lite.cli.common import err, out
from orbit_lite.errors import OrbitLiteError

METRICS = ("frame_accuracy", "frames_to_recognition", "video_accuracy")


def read_results(folder: Path) -> tuple[dict, dict]:
    """metrics.json and config.yaml of an evaluate results folder."""
    try:
        metrics = json.loads((folder / "metrics.json").read_text())
        config = yaml.safe_load((folder / "config.yaml").read_text())
    except (OSError, ValueError, yaml.YAMLError) as exc:
        why = f"{folder} is not an evaluate results folder ({exc})"
        raise OrbitLiteError(f"{why}; fix: give folders written by evaluate --out") from None
    return metrics, config


def meta_training(config: dict) -> str:
    """How many tasks the evaluated model was meta-trained on ("none" for a recipe or an untrained checkpoint)."""
    train = config["train"]
    if not config["evaluation"].get("checkpoint") or not train["epochs"]:
        return "none"
    return f"{train['epochs'] * train['tasks_per_user']} per user"


def comparison_table(named: list[tuple[str, Path]]) -> Table:
    """One row per results folder; fits an 80-column terminal."""
    table = Table(title="test users, clutter videos: mean (95% CI), %", box=box.SIMPLE_HEAD)
    for column in ("recognizer", "meta-training", "frame acc.", "FTR", "video acc.", "chance"):
        table.add_column(column, justify="left" if column == "recognizer" else "right", min_width=len(column),
                         no_wrap=column != "recognizer")  # fmt: skip
    for name, folder in named:
        metrics, config = read_results(folder)
        cells = [f"{100 * metrics[m]['mean']:.1f} ({100 * metrics[m]['ci95']:.1f})" for m in METRICS]
        chance = metrics.get("chance")
        table.add_row(name, meta_training(config), *cells, "" if chance is None else f"{100 * chance:.1f}")
    return table


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        named = []
        for arg in args:
            name, sep, folder = arg.partition("=")
            if not sep or not name or not folder:
                raise OrbitLiteError(f"{arg!r}: give NAME=RESULTS_FOLDER, e.g. protonets=runs/demo/eval-protonets")
            named.append((name, Path(folder)))
        if not named:
            raise OrbitLiteError("give one or more NAME=RESULTS_FOLDER")
        out.print(comparison_table(named))
    except OrbitLiteError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        return 1
    out.print("meta-training: tasks per training user; FTR: frames to recognition, % of a video's frames before the "
              "first right answer (lower is better); chance: a uniform guess among each task's objects",
              markup=False, soft_wrap=False)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
