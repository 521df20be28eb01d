"""``orbit-lite train``: LITE meta-training."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from orbit_lite.cli.common import err, one_line_errors, out
from orbit_lite.config import load_config
from orbit_lite.errors import OrbitLiteError
from orbit_lite.out_lock import claim_out
from orbit_lite.safe_out import output_path


@one_line_errors
def train_command(
    data: Path = typer.Option(..., "--data", help="ORBIT tree with train/ (and validation/) users."),
    config: list[Path] = typer.Option(..., "--config", help="Recipe YAML (repeat to layer several)."),
    out_dir: Path = typer.Option(..., "--out", help="Run directory for config.yaml, metrics.jsonl, checkpoints/."),
    overrides: list[str] = typer.Option([], "--set", help="Override a config key: section.key=value (repeatable)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from checkpoints/last.pt."),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Replace the training run in --out (only a run orbit-lite wrote; kept until this one ends).",
    ),
    device: str = typer.Option(None, "--device", help="auto, cpu, cuda or mps [default: the config's train.device]."),
    bf16: bool = typer.Option(None, "--bf16/--fp32", help="bf16 autocast [default: the config's train.bf16]."),
    compile_: bool = typer.Option(None, "--compile/--no-compile", help="torch.compile the backbone."),
) -> None:
    """Meta-train a recognizer with LITE on user-centric ORBIT tasks (under torchrun: data-parallel)."""
    flags = {"train.device": device, "train.bf16": bf16, "train.compile": compile_}
    overrides = [*overrides, *(f"{k}={str(v).lower()}" for k, v in flags.items() if v is not None)]
    cfg = load_config([str(p) for p in config], overrides)
    out_dir = output_path(out_dir, "--out")  # a link to a folder is written through; a link to nothing refused
    # the engine (torch) loads once the config is known to be right: a mistake in it answers at once
    from orbit_lite.cli.train_monitor import LineMonitor, RichMonitor
    from orbit_lite.engine.distributed import from_env
    from orbit_lite.engine.train import train
    from orbit_lite.learners import LEARNERS, why_nothing_to_meta_train

    spec = LEARNERS.get(cfg.model.learner)
    if spec is not None and not spec.meta_trained:  # before --out is claimed: nothing is written
        raise OrbitLiteError(why_nothing_to_meta_train(cfg.model.learner))
    dist = from_env(os.environ)
    if not dist.main:  # one voice: rank 0 draws the progress and reports
        train(cfg, data, out_dir, resume=resume, dist=dist, overwrite=overwrite)
        return
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
    ]
    # one run at a time in --out (two would interleave metrics and checkpoints); a file as --out's parent, a
    # read-only file system: one-line errors now
    if not err.is_terminal:  # a log file or a pipe: progress lines with the time left instead of a bar
        monitor = LineMonitor(err)
        try:
            with claim_out(out_dir):
                report = train(cfg, data, out_dir, resume=resume, monitor=monitor, dist=dist, overwrite=overwrite)
        finally:
            monitor.close()
    else:
        with claim_out(out_dir), Progress(*columns, console=err, transient=False) as progress:
            report = train(
                cfg, data, out_dir, resume=resume, monitor=RichMonitor(progress), dist=dist, overwrite=overwrite
            )
    best = "n/a" if report.best is None else f"{report.best:.1%}"
    out.print(
        f"trained {report.epochs} epochs ({report.steps} optimizer steps); best validation accuracy {best}; "
        f"checkpoints in {report.run_dir / 'checkpoints'}",
        markup=False,
    )
