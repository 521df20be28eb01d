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


def meta_trained(config: dict) -> str:
    """Whether the evaluated model was meta-trained ("no" for a recipe, or a checkpoint trained for 0 epochs)."""
    return "yes" if config["evaluation"].get("checkpoint") and config["train"]["epochs"] else "no"


def comparison_table(named: list[tuple[str, Path]]) -> tuple[Table, str]:
    """One row per results folder (fits an 80-column terminal), and a line with the chance level."""
    table = Table(title="test users, clutter videos: mean (95% CI), %", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("recognizer", "meta-trained", "frame acc.", "FTR", "video acc."):
        table.add_column(column, justify="left" if column == "recognizer" else "right", no_wrap=True)
    chances = {}
    for name, folder in named:
        metrics, config = read_results(folder)
        cells = [f"{100 * metrics[m]['mean']:.1f} ({100 * metrics[m]['ci95']:.1f})" for m in METRICS]
        table.add_row(name, meta_trained(config), *cells)
        if metrics.get("chance") is not None:
            chances[name] = f"{100 * metrics['chance']:.1f}%"
    if len(set(chances.values())) == 1:
        level = next(iter(chances.values()))
    else:
        level = ", ".join(f"{name} {value}" for name, value in chances.items()) or "not recorded"
    return table, f"chance (a uniform guess among each task's objects): {level} frame accuracy"


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
        table, chance = comparison_table(named)
        out.print(table)
        out.print(chance, markup=False, highlight=False)
    except OrbitLiteError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        return 1
    out.print("FTR: frames to recognition, % of a video's frames before the first right answer (lower is better)",
              markup=False, highlight=False)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
