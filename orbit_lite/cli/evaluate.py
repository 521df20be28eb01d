"""``orbit-lite evaluate``: the ORBIT protocol on a split's users."""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import ExitStack
from enum import Enum
from pathlib import Path

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from orbit_lite.choices import MODES, PROTOCOLS, SPLITS
from orbit_lite.cli.common import check_recipes, err, one_line_errors, out, plural, progress_bar
from orbit_lite.errors import OrbitLiteError
from orbit_lite.outputs import check_results_out, refuse_current_folder
from orbit_lite.results import METRICS, CostSummary, RunMetrics, Summary
from orbit_lite.safe_out import output_path

# The choices as the options offer them (the default first); the names are defined once, in orbit_lite.choices.
Mode = Enum("Mode", {m: m for m in MODES}, type=str)
Protocol = Enum("Protocol", {p: p for p in PROTOCOLS}, type=str)
Split = Enum("Split", {s: s for s in sorted(SPLITS, key=lambda s: s != "test")}, type=str)


def results_table(metrics: RunMetrics, title: str) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD)
    for column in ("user", "scores", "frame accuracy", "frames to recognition", "video accuracy"):
        table.add_column(column, justify="left" if column == "user" else "right")

    def cells(m: Mapping[str, Summary]) -> list[str]:
        return [f"{100 * m[k].mean:.2f} ({100 * m[k].ci95:.2f})" for k in METRICS]

    for user, m in metrics.per_user.items():
        if not m["frame_accuracy"].n:  # nothing scored (a dropped user): said below the table, never a nan row
            continue
        table.add_row(escape(user), str(m["frame_accuracy"].n), *cells(m))
    table.add_section()
    table.add_row("all", str(metrics.scores["frame_accuracy"].n), *cells(metrics.scores), style="bold")
    return table


def parse_users(users: str | None) -> list[str] | None:
    """``--users a,b`` as a list; None when not given. Empty or repeated names are mistakes, never "all users"."""
    if users is None:
        return None
    names = [u.strip() for u in users.split(",")]
    if not any(names) or "" in names:
        raise OrbitLiteError(f"--users {users!r} holds an empty user id; give comma-separated ids such as P177,P201")
    repeated = sorted({u for u in names if names.count(u) > 1})
    if repeated:
        raise OrbitLiteError(f"--users names {', '.join(repeated)} more than once; each user is evaluated once")
    return names


def cost_line(cost: CostSummary) -> str:
    """The cost summary, as ORBIT reports it: per task to personalise, per frame to recognize."""
    if not cost.tasks:
        return "cost: no task personalized"
    frame = cost.inference_macs_per_frame or 0
    return (
        f"cost per task: {(cost.task_macs_to_personalise or 0) / 1e9:,.2f} GMACs and "
        f"{cost.task_seconds_to_personalise or 0:.2f} s to personalise, {cost.task_params_added or 0:,.0f} "
        f"parameters added to {cost.params_base:,}; per frame: {frame / 1e9:.3f} GMACs, "
        f"{1000 * (cost.inference_seconds_per_frame or 0):.1f} ms"
    )


@one_line_errors
def evaluate_command(
    data: Path = typer.Option(..., "--data", help="The ORBIT tree."),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="A training checkpoint (checkpoints/best.pt)."),
    config: list[Path] = typer.Option(
        [],
        "--config",
        help="Instead of --checkpoint: a recipe of a learner without "
        "meta-trained parts (finetuner, finetuner_film, protonets).",
    ),
    out_dir: Path = typer.Option(..., "--out", help="Results folder (written completely or not at all)."),
    mode: Mode = typer.Option(Mode.clutter, "--mode", help="clutter: clean teach, clutter test; clean: clean/clean."),
    split: Split = typer.Option(Split.test, "--split", help="Which users."),
    users: str = typer.Option(None, "--users", help="Comma-separated user ids (default: every user of the split)."),
    protocol: Protocol = typer.Option(Protocol.orbit2022, "--protocol", help="orbit2022 (default) or orbit2021."),
    tasks: int = typer.Option(None, "--tasks", help="Tasks per user [default: 50 for orbit2022, 5 for orbit2021]."),
    overrides: list[str] = typer.Option([], "--set", help="Override a config key, e.g. test_sampling.clip_cap=100."),
    seed: int = typer.Option(0, "--seed", help="Seed of the tasks' random draws."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or mps."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the results already in --out."),
) -> None:
    """Personalize on each user's clean videos and score the clutter (or held-out clean) videos.

    Under torchrun the users are dealt out across the ranks and rank 0 writes one results folder, the same as a
    single process would."""
    if out_dir.name in ("", ".."):  # "--out ." names no folder to replace: use the path it stands for
        out_dir = Path(os.path.abspath(out_dir))
    out_dir = output_path(out_dir, "--out")  # a link to a results folder is written through, never replaced
    refuse_current_folder(out_dir)  # `--out .` is written in place when empty, never renamed away
    check_results_out(out_dir, overwrite)  # refuse early, before any work (every rank checks, so all stop together)
    if seed < 0:
        raise OrbitLiteError(f"--seed must be >= 0, got {seed}")
    check_recipes(config, overrides)  # before torch: a mistake in a recipe answers at once
    from orbit_lite.engine.model import parse_source  # torch: a source is checked by its learner's kind

    source = parse_source(checkpoint, config, overrides, settings=True)
    wanted = parse_users(users)
    from orbit_lite.engine.evaluate import EvaluationRequest, run

    request = EvaluationRequest(
        data,
        source,
        out_dir,
        protocol.value,
        mode.value,
        split.value,
        None if wanted is None else tuple(wanted),
        tasks,
        seed,
        device,
        overwrite,
    )
    from orbit_lite.engine.distributed import from_env

    dist = from_env(os.environ)  # torchrun's job layout; one process without it
    with ExitStack() as bars:
        report = run(request, dist, monitor=_Bar(bars, dist.main))
    if report is None:  # another rank: rank 0 reports
        return
    metrics, protocol_ = report.metrics, report.protocol
    title = f"{protocol_.name}, {protocol_.mode} videos, {report.split} users (mean (95% CI), %)"
    out.print(results_table(metrics, title))
    _print_summary(metrics, report.seconds, report.out_dir)


class _Bar:
    """A progress bar over the users this process evaluates (on a terminal; rank 0 only)."""

    def __init__(self, stack: ExitStack, main: bool) -> None:
        self.stack = stack
        self.main = main
        self.advance = lambda n=1: None

    def started(self, users: int) -> None:
        self.advance = self.stack.enter_context(progress_bar(f"evaluating {users} users", users, enabled=self.main))

    def user_done(self, user: str) -> None:
        self.advance(1)


def _print_summary(metrics: RunMetrics, seconds: float, out_dir: Path) -> None:
    from orbit_lite.results import skipped_counts

    if metrics.chance is not None:
        out.print(f"chance: {100 * metrics.chance:.2f}% frame accuracy (a uniform guess among each task's objects, "
                  "averaged as the scores are)", markup=False)  # fmt: skip
    encoded = metrics.frames_encoded
    out.print(
        f"{encoded.total:,} frames encoded ({encoded.context:,} context, {encoded.target:,} query), "
        f"{metrics.personalizations} personalizations, {seconds:.1f} s; results in {out_dir}",
        markup=False,
    )
    out.print(cost_line(metrics.cost), markup=False)
    skipped = metrics.skipped_videos
    if skipped:
        frames, whole = skipped_counts(skipped)
        left = f"{plural(frames, 'corrupt frame')} and {plural(whole, 'whole video')}"
        err.print(
            f"[yellow]left out {left} (unreadable, too few usable frames or a wrong annotation file; "
            f"{plural(len(skipped), 'video')} affected); see skipped_videos in metrics.json[/]"
        )
    for user, reason in metrics.dropped_users:
        err.print(f"[yellow]user {escape(user)} left out of the evaluation: {escape(reason)}[/]")
    dropped = {user for user, _ in metrics.dropped_users}
    for user in (u for u, m in metrics.per_user.items() if not m["frame_accuracy"].n and u not in dropped):
        err.print(f"[yellow]user {escape(user)}: no query video could be scored (too short or corrupt)[/]")
    for user, obj in metrics.dropped_objects:
        err.print(f"[yellow]user {escape(user)}: object {escape(obj)!r} left out (no usable clean video)[/]")
