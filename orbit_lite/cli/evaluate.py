"""``orbit-lite evaluate``: the ORBIT protocol on a split's users."""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from orbit_lite.cli.common import check_recipes, err, one_line_errors, out, plural, progress_bar
from orbit_lite.config import Config as ConfigSchema
from orbit_lite.config import apply_overrides, from_dict, to_dict
from orbit_lite.errors import OrbitLiteError
from orbit_lite.outputs import check_results_out, claim_out, refuse_current_folder

if TYPE_CHECKING:  # the engine (torch) loads once the options are known to be right: mistakes answer at once
    from orbit_lite.engine.distributed import Dist


class Mode(str, Enum):
    clutter = "clutter"
    clean = "clean"


class Protocol(str, Enum):
    orbit2022 = "orbit2022"
    orbit2021 = "orbit2021"


class Split(str, Enum):
    test = "test"
    validation = "validation"
    train = "train"


def results_table(metrics: dict, title: str) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD)
    for column in ("user", "scores", "frame accuracy", "frames to recognition", "video accuracy"):
        table.add_column(column, justify="left" if column == "user" else "right")

    def cells(m: dict) -> list[str]:
        return [f"{100 * m[k]['mean']:.2f} ({100 * m[k]['ci95']:.2f})" for k in
                ("frame_accuracy", "frames_to_recognition", "video_accuracy")]  # fmt: skip

    for user, m in metrics["per_user"].items():
        if not m["frame_accuracy"]["n"]:  # nothing scored (a dropped user): said below the table, never a nan row
            continue
        table.add_row(escape(user), str(m["frame_accuracy"]["n"]), *cells(m))
    table.add_section()
    table.add_row("all", str(metrics["frame_accuracy"]["n"]), *cells(metrics), style="bold")
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


def cost_line(cost: dict) -> str:
    """The cost summary, as ORBIT reports it: per task to personalise, per frame to recognize."""
    if not cost["tasks"]:
        return "cost: no task personalized"
    frame = cost["inference_macs_per_frame"] or 0
    return (f"cost per task: {cost['task_macs_to_personalise'] / 1e9:,.2f} GMACs and "
            f"{cost['task_seconds_to_personalise']:.2f} s to personalise, {cost['task_params_added']:,.0f} parameters "
            f"added to {cost['params_base']:,}; per frame: {frame / 1e9:.3f} GMACs, "
            f"{1000 * (cost['inference_seconds_per_frame'] or 0):.1f} ms")  # fmt: skip


RUNTIME_KEYS = ("train.channels_last", "train.pin_memory", "train.cudnn_benchmark")


def refuse_model_overrides(overrides: list[str]) -> None:
    """The model (and how it was trained) comes from the checkpoint: a ``--set`` there would be recorded in the
    results' config without changing the weights that are evaluated."""
    from orbit_lite.learners import LEARNERS

    for item in overrides:
        key = item.partition("=")[0]
        section = key.split(".")[0]
        if key in RUNTIME_KEYS:  # how the model runs on this device, not what it is: applied
            continue
        if key == "model.learner" and not LEARNERS.get(item.partition("=")[2], LEARNERS["protonets"]).meta_trained:
            continue  # a FineTuner re-using the checkpoint's backbone (the reference's --model_path)
        if section in ("model", "train"):
            raise OrbitLiteError(f"--set {item}: evaluate takes {section}.* from the checkpoint and cannot change it; "
                                 "train a model with that setting instead")  # fmt: skip


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
    refuse_current_folder(out_dir)  # `--out .` is written in place when empty, never renamed away
    check_results_out(out_dir, overwrite)  # refuse early, before any work (every rank checks, so all stop together)
    if seed < 0:
        raise OrbitLiteError(f"--seed must be >= 0, got {seed}")
    if (checkpoint is None) == (not config):
        from orbit_lite.engine.personalize import check_model_source

        check_model_source(checkpoint, config, overrides)  # raises: one of them, not both
    if checkpoint is not None:  # a recipe's model may be overridden; a checkpoint's is what was trained
        refuse_model_overrides(overrides)
    check_recipes(config, overrides)  # before torch: a mistake in a recipe answers at once
    wanted = parse_users(users)
    from orbit_lite.engine.distributed import from_env

    dist = from_env(os.environ)
    options = EvaluateOptions(data, checkpoint, list(config), out_dir, mode, split, wanted, protocol, tasks, overrides,
                              seed, device, overwrite)  # fmt: skip
    with claim_out(out_dir) if dist.main else nullcontext():  # one writer: rank 0 holds the output location
        _evaluate(options, dist)


@dataclass(frozen=True)
class EvaluateOptions:
    """What ``orbit-lite evaluate`` was asked to do, after the checks that need no work."""

    data: Path
    checkpoint: Path | None  # None: a recipe (learners without meta-trained parts)
    recipes: list[Path]
    out_dir: Path
    mode: Mode
    split: Split
    users: list[str] | None  # None: every user of the split
    protocol: Protocol
    tasks: int | None  # None: the protocol's number
    overrides: list[str]
    seed: int
    device: str
    overwrite: bool


def _evaluate(o: EvaluateOptions, dist: Dist) -> None:
    from orbit_lite import runtime
    from orbit_lite.data.layout import index_benchmark
    from orbit_lite.engine.distributed import gather_to_main, setup, teardown
    from orbit_lite.engine.evaluate import evaluate_users, make_protocol
    from orbit_lite.engine.personalize import open_learner
    from orbit_lite.engine.report import check_scored, write_results
    from orbit_lite.engine.train import select_device

    device = setup(dist, select_device(o.device, "--device "))
    learner, cfg = open_learner(o.checkpoint, o.recipes, o.overrides, device)
    cfg = from_dict(ConfigSchema, apply_overrides(to_dict(cfg), o.overrides))
    runtime.prepare(learner, cfg, learner.device, allow_compile=False)  # lite.buckets and the like, as overridden
    spec = make_protocol(cfg, o.protocol.value, o.mode.value, o.tasks)
    split = o.split.value
    index = index_benchmark(o.data)
    chosen = index.users(split)
    if o.users is not None:
        chosen = tuple(index.user(u, split) for u in o.users)
    if not chosen:
        raise OrbitLiteError(f"{index.root / split}: the {split} split holds no users")
    mine = chosen[dist.rank :: dist.world]
    try:
        with progress_bar(f"evaluating {len(mine)} users", len(mine), enabled=dist.main) as advance:
            results, seconds = evaluate_users(learner, mine, spec, cfg, o.seed, progress=lambda _: advance(1))
        gathered = gather_to_main((results, seconds), dist)
    finally:
        teardown(dist)
    if gathered is None:
        return
    order = {u.user_id: i for i, u in enumerate(chosen)}
    results = sorted((r for part, _ in gathered for r in part), key=lambda r: order[r.user])
    seconds = max(s for _, s in gathered)
    config = {**to_dict(cfg), "evaluation": {"protocol": spec.name, "mode": spec.mode, "split": split,
              "tasks_per_user": spec.tasks_per_user, "seed": o.seed,
              "checkpoint": str(o.checkpoint) if o.checkpoint else None, "recipes": [str(p) for p in o.recipes],
              "sampling": to_dict(spec.sampling)}}  # fmt: skip
    check_scored(results, spec)
    metrics = write_results(o.out_dir, results, spec, split, seconds, config, o.overwrite)
    out.print(results_table(metrics, f"{spec.name}, {spec.mode} videos, {split} users (mean (95% CI), %)"))
    _print_summary(metrics, seconds, o.out_dir)


def _print_summary(metrics: dict, seconds: float, out_dir: Path) -> None:
    from orbit_lite.data.tasks import TaskBuilder

    if metrics.get("chance") is not None:
        out.print(f"chance: {100 * metrics['chance']:.2f}% frame accuracy (a uniform guess among each task's "
                  "objects, averaged as the scores are)", markup=False)  # fmt: skip
    encoded = metrics["frames_encoded"]
    out.print(f"{encoded['total']:,} frames encoded ({encoded['context']:,} context, {encoded['target']:,} query), "
              f"{metrics['personalizations']} personalizations, {seconds:.1f} s; results in {out_dir}",
              markup=False)  # fmt: skip
    out.print(cost_line(metrics["cost"]), markup=False)
    skipped = metrics["skipped_videos"]
    if skipped:
        frames, whole = TaskBuilder.skipped_counts(skipped)
        left = f"{plural(frames, 'corrupt frame')} and {plural(whole, 'whole video')}"
        err.print(f"[yellow]left out {left} (unreadable, too few usable frames or a wrong annotation file; "
                  f"{plural(len(skipped), 'video')} affected); see skipped_videos in metrics.json[/]")  # fmt: skip
    for d in metrics["dropped_users"]:
        err.print(f"[yellow]user {escape(d['user'])} left out of the evaluation: {escape(d['reason'])}[/]")
    dropped = {d["user"] for d in metrics["dropped_users"]}
    for user in (u for u, m in metrics["per_user"].items() if not m["frame_accuracy"]["n"] and u not in dropped):
        err.print(f"[yellow]user {escape(user)}: no query video could be scored (too short or corrupt)[/]")
    for d in metrics["dropped_objects"]:
        err.print(f"[yellow]user {escape(d['user'])}: object {escape(d['object'])!r} left out (no usable clean "
                  "video)[/]")  # fmt: skip
