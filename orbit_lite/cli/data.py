"""``orbit-lite data``: make, summarize and check ORBIT trees."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from orbit_lite.cli.common import err, one_line_errors, out, progress_bar
from orbit_lite.data.presets import PRESETS

app = typer.Typer(help="Make, summarize and check ORBIT data.", no_args_is_help=True)

Preset = Enum("Preset", {name: name for name in PRESETS}, type=str)  # type: ignore[misc]


class Format(str, Enum):
    frames = "frames"
    videos = "videos"
    mixed = "mixed"


@app.command()
@one_line_errors
def synth(
    out_dir: Path = typer.Argument(..., metavar="OUT", help="New folder to write the synthetic ORBIT tree into."),
    preset: Preset = typer.Option("demo", help="Dataset size."),  # type: ignore[valid-type]
    frame_size: int = typer.Option(None, help="Frame side in pixels [default: the preset's]."),
    format: Format = typer.Option(Format.frames, "--format", help="JPEG frame folders, mp4 files, or both."),
    seed: int = typer.Option(0, help="Random seed; the same seed writes the same tree."),
) -> None:
    """Write a deterministic synthetic dataset in the ORBIT benchmark layout."""
    from orbit_lite.data.synth import expected_videos, synthesize

    with progress_bar("writing videos", expected_videos(preset.value)) as advance:
        summary = synthesize(out_dir, preset.value, frame_size, format.value, seed, progress=lambda _: advance(1))
    users = ", ".join(f"{n} {s}" for s, n in summary.users.items())
    err.print(f"wrote {summary.videos} videos, {summary.frames} frames ({users} users) to {summary.root}", markup=False)


@app.command()
@one_line_errors
def summarize(
    root: Path = typer.Argument(..., help="An ORBIT tree (holding train/ validation/ test/) or one user's folder."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object of counts per split."),
) -> None:
    """Count what is on disk per split: users, objects, videos, frames (no filtering)."""
    from orbit_lite.data.layout import index_tree
    from orbit_lite.data.summary import summarize_index

    index = index_tree(root)
    with progress_bar("counting frames", sum(1 for _ in index.videos())) as advance:
        summary = summarize_index(index, progress=advance)
    if as_json:
        out.print_json(json.dumps({split: s.counts() for split, s in summary.items()}))
        return
    caption = "clean/clutter: videos; last column: frames per video"
    table = Table(
        title=escape(f"{index.root} ({index.layout} layout)"), box=box.SIMPLE_HEAD, pad_edge=False, caption=caption
    )
    for column in ("split", "users", "objects", "clean", "clutter", "frames", "min/mean/median/max"):
        table.add_column(column, justify="left" if column == "split" else "right", min_width=len(column))
    for split, s in summary.items():
        f = s.frames_per_video
        table.add_row(
            split,
            str(s.users),
            str(s.objects),
            str(s.clean_videos),
            str(s.clutter_videos),
            f"{s.frames:,}",
            f"{f['min']:.0f} / {f['mean']:.1f} / {f['median']:.0f} / {f['max']:.0f}",
        )
    out.print(table)
    unreadable = sum(s.unreadable_videos for s in summary.values())
    if unreadable:
        err.print(
            f"[yellow]{unreadable} video files could not be opened; run `orbit-lite data check {escape(str(root))}`[/]"
        )


@app.command()
@one_line_errors
def check(
    root: Path = typer.Argument(..., help="An ORBIT tree or one user's folder."),
    decode: bool = typer.Option(True, "--decode/--no-decode", help="Decode every frame, or only read the files."),
) -> None:
    """List every problem in a tree: layout, empty or corrupt videos and frames, annotations. Exit 1 if any."""
    from orbit_lite.data.check import check_tree
    from orbit_lite.data.layout import index_tree

    index = index_tree(root)
    with progress_bar("checking videos", sum(1 for _ in index.videos())) as advance:
        problems = check_tree(index, decode=decode, progress=advance)
    for problem in problems:
        out.print(str(problem), highlight=False, markup=False, soft_wrap=True)
    if problems:
        err.print(f"[red]{len(problems)} problem(s) found in {escape(str(root))}[/]")
        raise typer.Exit(1)
    err.print(f"[green]no problems found in {escape(str(root))}[/]")
