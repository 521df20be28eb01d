"""``orbit-lite personalize`` and ``orbit-lite recognize``: a user's recognizer, and what it sees."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from orbit_lite.cli.common import check_recipes, err, one_line_errors, out, plural
from orbit_lite.errors import OrbitLiteError
from orbit_lite.outputs import (
    check_file_out,
    is_annotated_video,
    is_orbit_lite_checkpoint,
    is_predictions_csv,
    writable_parent,
)
from orbit_lite.safe_out import distinct_outputs, is_recognize_plot, output_path, outside_other_outputs


@one_line_errors
def personalize_command(
    checkpoint: Path = typer.Option(None, "--checkpoint", help="A training checkpoint (checkpoints/best.pt)."),
    out_file: Path = typer.Option(..., "--out", help="Where to write the personal recognizer."),
    config: list[Path] = typer.Option(
        [],
        "--config",
        help="Instead of --checkpoint: a recipe of a learner without "
        "meta-trained parts (finetuner, finetuner_film, protonets).",
    ),
    overrides: list[str] = typer.Option(
        [],
        "--set",
        help="Override a config key (with --config; with --checkpoint "
        "only model.learner=finetuner[_film] and finetune.*).",
    ),
    user: str = typer.Option(None, "--user", help="A user of the ORBIT tree given with --data (e.g. P177)."),
    data: Path = typer.Option(None, "--data", help="An ORBIT tree holding --user."),
    videos: Path = typer.Option(None, "--videos", help="A user's own folder: <dir>/<object>/[clean/]<videos>."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or mps."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
) -> None:
    """Teach a recognizer a user's objects from their clean videos."""
    if (user is None) == (videos is None) or (user is not None and data is None):
        raise OrbitLiteError("give either --user ID with --data ROOT, or --videos DIR")
    check_recipes(config, overrides)  # before torch: a mistake in a recipe answers at once
    from orbit_lite.engine.model import open_model, parse_source  # torch: a source is checked by its learner's kind

    source = parse_source(checkpoint, config, overrides)
    out_file = output_path(out_file, "--out")
    outside_other_outputs(out_file, "--out")
    check_file_out(out_file, overwrite, is_orbit_lite_checkpoint("personal"), "a personal recognizer")
    writable_parent(out_file)
    # the data and the engine (torch) load only once the options are known to be right: mistakes answer at once
    from orbit_lite.cli.step_progress import step_progress
    from orbit_lite.data.layout import index_tree, index_user_folder
    from orbit_lite.engine.personalize import personalize_user, progress_kinds
    from orbit_lite.personal import save_personal
    from orbit_lite.results import Skipped, skipped_counts
    from orbit_lite.runtime import select_device

    who = index_tree(data).user(user) if user is not None else index_user_folder(videos).users()[0]
    learner, cfg = open_model(source, select_device(device, "--device "))
    with step_progress(progress_kinds(learner)) as progress:  # videos read, frames encoded, steps: on stderr
        model, task = personalize_user(learner, who, cfg, progress=progress)
    save_personal(out_file, model)
    table = Table(title=f"personal recognizer for {escape(who.user_id)}", box=box.SIMPLE_HEAD)
    for column in ("label", "object", "clean videos", "context frames"):
        table.add_column(column, justify="left" if column == "object" else "right")
    for label, name in enumerate(model.object_names):
        ids = {v for v, lab in zip(task.context_video_ids, task.context_labels.tolist(), strict=True) if lab == label}
        frames = int((task.context_labels == label).sum()) * task.clip_length
        table.add_row(str(label), escape(name), str(len(ids)), str(frames))  # user text is never markup
    out.print(table)
    skipped = [Skipped.from_json(s) for s in model.config.get("skipped", [])]
    if skipped:
        frames, whole = skipped_counts(skipped)
        left = f"{plural(frames, 'corrupt frame')} and {plural(whole, 'whole video')}"
        names = ", ".join(s.video for s in skipped)
        err.print(f"left out {left} (unreadable or too few usable frames): {names}", markup=False, soft_wrap=True)
    out.print(f"saved to {out_file}", markup=False)


@one_line_errors
def recognize_command(
    inputs: list[Path] = typer.Argument(..., metavar="INPUT...", help="Video files, frame folders or images."),
    model_file: Path = typer.Option(..., "--model", help="A personal recognizer from `orbit-lite personalize`."),
    label: str = typer.Option(None, "--label", help="The true object, to score the predictions."),
    csv_path: Path = typer.Option(None, "--csv", help="Write one row per frame to this CSV file."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
    annotate: Path = typer.Option(
        None,
        "--annotate",
        metavar="OUT.mp4",
        help="Write the INPUT back as a video with the answer on every frame (one INPUT).",
    ),
    plot: Path = typer.Option(None, "--plot", metavar="OUT.png", help="Plot each object's probability per frame."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or mps."),
) -> None:
    """Say which of the user's objects each frame shows (causal: a frame's answer uses only earlier frames)."""
    csv_path, annotate, plot = (
        None if p is None else output_path(p, option)
        for p, option in ((csv_path, "--csv"), (annotate, "--annotate"), (plot, "--plot"))
    )
    distinct_outputs({"--csv": csv_path, "--annotate": annotate, "--plot": plot})  # one would overwrite the other
    if csv_path is not None:  # our own predictions CSV is replaced (as before); any other file never is
        outside_other_outputs(csv_path, "--csv")
        check_file_out(csv_path, True, is_predictions_csv, "a predictions CSV", has_overwrite_flag=False)
        writable_parent(csv_path, "--csv")
    check_picture_outs(annotate, plot, inputs)
    from orbit_lite.engine.model import open_personal
    from orbit_lite.engine.recognize import recognize
    from orbit_lite.publish import atomic_write_text
    from orbit_lite.runtime import select_device

    model = open_personal(model_file, select_device(device, "--device "))
    names = model.object_names
    recognitions = [recognize(model, path, label) for path in inputs]
    if csv_path is not None:
        buffer = io.StringIO()  # built in memory, written at once: never a half-written CSV
        writer = csv.writer(buffer)
        writer.writerow(["input", "frame", "prediction", "probability", *[f"p_{n}" for n in names]])
        for r in recognitions:
            for number, pred, probs in zip(r.frame_numbers, r.predictions, r.probabilities, strict=True):
                writer.writerow(
                    [r.source, int(number), names[pred], f"{probs[pred]:.4f}", *[f"{p:.4f}" for p in probs]]
                )
        atomic_write_text(csv_path, buffer.getvalue())
    write_pictures(recognitions, names, annotate, plot)
    summary = [
        {
            "input": r.source,
            "frames": len(r.predictions),
            "prediction": names[r.video_prediction],
            "confidence": float(r.probabilities[:, r.video_prediction].mean()),
            **r.scores(len(names)),
            **r.cost_per_frame(),
            "per_frame": [
                {"frame": int(n), "prediction": names[p], "probability": float(q[p])}
                for n, p, q in zip(r.frame_numbers, r.predictions, r.probabilities, strict=True)
            ],
        }
        for r in recognitions
    ]
    if as_json:
        out.print_json(json.dumps({"objects": names, "label": label, "inputs": summary}))
        return
    # the objects on one line of their own (a title would wrap inside a name to the table's width)
    out.print(f"recognizer of {model.user}: {', '.join(names)}", markup=False, highlight=False, soft_wrap=True)
    table = Table(box=box.SIMPLE_HEAD)
    # long names (ORBIT video ids run to 80 characters) fold into a tall column: numbered rows, names listed below
    inputs = [Path(s["input"]).name for s in summary]
    numbered = max(map(len, inputs)) > 24
    table.add_column("#" if numbered else "input", justify="right" if numbered else "left")
    for column in ("frames", "object", "prob."):
        table.add_column(column, justify="left" if column == "object" else "right")
    if label is not None:
        for column in ("frame acc.", "FTR", "video ok"):
            table.add_column(column, justify="right")
    for i, (s, name) in enumerate(zip(summary, inputs, strict=True), 1):
        first = str(i) if numbered else escape(name)
        row = [first, str(s["frames"]), escape(s["prediction"]), f"{s['confidence']:.2f}"]
        if label is not None:
            row += [
                f"{s['frame_accuracy']:.1%}",
                f"{s['frames_to_recognition']:.1%}",  # in % of the frames, as evaluate gives it
                "yes" if s["video_accuracy"] else "no",
            ]
        table.add_row(*row)
    out.print(table)
    if numbered:
        for i, name in enumerate(inputs, 1):
            out.print(f"{i:>3}  {name}", markup=False, highlight=False, soft_wrap=True)
    if label is not None:
        out.print("frame acc.: frames named right; FTR: frames to recognition, % of the frames before the first right "
                  "answer; video ok: the most frequent answer is right", markup=False, highlight=False)  # fmt: skip
    if csv_path is not None:
        err.print(f"per-frame predictions written to {csv_path}", markup=False)


def check_picture_outs(annotate: Path | None, plot: Path | None, inputs: list[Path]) -> None:
    """Refuse --annotate and --plot files before any work: a wrong kind of name, or a file orbit-lite did not write
    (our own, known by their marks, are replaced like the CSV)."""
    if annotate is not None:
        if len(inputs) != 1:
            raise OrbitLiteError(f"--annotate writes one video but {len(inputs)} inputs were given: give one INPUT")
        if annotate.suffix.lower() != ".mp4":
            raise OrbitLiteError(f"--annotate {annotate}: the video is written as MP4; give a name ending in .mp4")
        outside_other_outputs(annotate, "--annotate")
        check_file_out(annotate, True, is_annotated_video, "an annotated video", has_overwrite_flag=False)
        writable_parent(annotate, "--annotate")
    if plot is not None:
        if plot.suffix.lower() != ".png":
            raise OrbitLiteError(f"--plot {plot}: the plot is written as PNG; give a name ending in .png")
        outside_other_outputs(plot, "--plot")  # evaluate's and train's pictures are theirs
        check_file_out(plot, True, is_recognize_plot, "an orbit-lite plot", has_overwrite_flag=False)  # recognize's own
        writable_parent(plot, "--plot")


def write_pictures(recognitions: list, names: list[str], annotate: Path | None, plot: Path | None) -> None:
    if annotate is not None:
        from orbit_lite.visual.annotate import write_annotated

        frames, codec = write_annotated(recognitions[0], names, annotate)
        err.print(f"annotated video ({frames} frames, {codec}) written to {annotate}", markup=False)
    if plot is not None:
        from orbit_lite.visual.recognition import plot_recognitions

        plot_recognitions(recognitions, names, plot)
        err.print(f"probability plot written to {plot}", markup=False)
