"""Evaluation outputs: aggregation (flattened per-(task, video) scores), tables, files and the per-user plot.

A results directory is built in a temporary sibling folder and renamed into place at the end, so it is there
complete or not at all.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from orbit_lite.errors import OrbitLiteError
from orbit_lite.metrics import summarize_scores
from orbit_lite.outputs import RESULTS_MARKER, check_results_out, install_folder, results_marker
from orbit_lite.publish import publish_folder
from orbit_lite.results import METRICS, CostSummary, FramesEncoded, Inference, Protocol, RunMetrics, Summary, UserResult
from orbit_lite.visual.evaluation import CONFUSION_FILE, FTR_FILE, confusion_figure, frames_to_recognition_figure
from orbit_lite.visual.png import new_figure, png_bytes


def per_video_table(results: Sequence[UserResult]) -> pd.DataFrame:
    rows = [asdict(s) for r in results for s in r.scores]
    columns = ["user", "task", "video", "object", "label", "n_frames", *METRICS]
    return pd.DataFrame(rows, columns=columns)


def _grouped(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    rows = []
    for key, group in table.groupby(keys, sort=True):
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        row.update(videos=group["video"].nunique(), scores=len(group))
        for metric in METRICS:
            stats = summarize_scores(group[metric].to_numpy())
            row[metric], row[f"{metric}_ci95"] = stats["mean"], stats["ci95"]
        rows.append(row)
    return pd.DataFrame(rows)


def _summary(scores: pd.Series) -> Summary:
    return Summary(**summarize_scores(scores.to_numpy()))


def aggregate(
    results: Sequence[UserResult], protocol: Protocol, split: str, wall_seconds: float
) -> tuple[RunMetrics, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """metrics.json's content and the per-video, per-user and per-object tables."""
    videos = per_video_table(results)
    per_user = _grouped(videos, ["user"]) if len(videos) else pd.DataFrame()
    per_object = _grouped(videos, ["user", "object"]) if len(videos) else pd.DataFrame()
    metrics = RunMetrics(
        protocol.name,
        protocol.mode,
        split,
        protocol.tasks_per_user,
        users=len(results),
        scores={m: _summary(videos[m]) for m in METRICS},
        per_user={r.user: {m: _summary(videos.loc[videos["user"] == r.user, m]) for m in METRICS} for r in results},
        frames_encoded=sum((r.frames_encoded for r in results), FramesEncoded()),
        personalizations=sum(r.personalizations for r in results),
        cost=cost_summary(results),
        chance=chance_level(results),
        wall_seconds=round(wall_seconds, 3),
        skipped_videos=tuple(s for r in results for s in r.skipped),
        dropped_users=tuple((r.user, r.dropped) for r in results if r.dropped),
        dropped_objects=tuple((r.user, o) for r in results for o in r.dropped_objects),
    )
    return metrics, videos, per_user, per_object


def chance_level(results: Sequence[UserResult]) -> float | None:
    """The frame accuracy of guessing uniformly among a task's objects, averaged as the scores are (over every scored
    (task, video)); None when nothing was scored."""
    ways = [len(r.tasks[s.task].object_names) for r in results for s in r.scores]
    return sum(1 / w for w in ways) / len(ways) if ways else None


def cost_summary(results: Sequence[UserResult]) -> CostSummary:
    """Mean cost per task (MACs and seconds to personalise, parameters a task adds) and per query frame."""
    costs = [t.cost for r in results for t in r.tasks if t.cost is not None]
    inference = sum((r.inference for r in results), Inference())
    frames = inference.frames

    def mean(values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None

    return CostSummary(
        tasks=len(costs),
        task_macs_to_personalise=mean([c.macs for c in costs]),
        task_seconds_to_personalise=mean([c.seconds for c in costs]),
        params_base=max((r.params_base for r in results), default=0),
        task_params_added=mean([c.params_added for c in costs]),
        frames=frames,
        inference_macs_per_frame=inference.macs / frames if frames else None,
        inference_seconds_per_frame=inference.seconds / frames if frames else None,
    )


def check_scored(results: Sequence[UserResult], protocol: Protocol) -> None:
    """Refuse a results folder without a single score, saying why nothing could be scored."""
    if any(r.scores for r in results):
        return
    why = []
    short = sum(r.short_videos for r in results)
    if short:
        kind = "held-out clean" if protocol.mode == "clean" else "clutter"
        need = protocol.sampling.min_target_frames
        why.append(
            f"{short} {kind} videos have fewer than the {need} usable frames a query video needs "
            "(test_sampling.min_target_frames)"
        )
    skipped = sum(len(r.skipped) for r in results)
    if skipped:
        why.append(f"{skipped} videos had corrupt files")
    dropped = [r.user for r in results if r.dropped]
    if dropped:
        why.append(f"users {', '.join(dropped)} had fewer than two teachable objects")
    raise OrbitLiteError(
        f"no video could be scored ({protocol.name}, {protocol.mode} mode): "
        f"{'; '.join(why) or 'no query videos'}; nothing written"
    )


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float as None: JSON has no NaN, and a bare ``NaN`` breaks strict readers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def plot_per_user(per_user: pd.DataFrame, title: str) -> bytes:
    """Bars of per-user frame accuracy with their 95% intervals, as PNG bytes."""
    fig = new_figure(max(4.0, 0.5 * len(per_user) + 2), 3.5, layout="constrained")
    ax = fig.subplots()
    if len(per_user):
        ax.bar(
            per_user["user"],
            100 * per_user["frame_accuracy"],
            yerr=100 * per_user["frame_accuracy_ci95"],
            capsize=3,
            color="#4C72B0",
        )
    ax.set_ylabel("frame accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=60)
    return png_bytes(fig)


def prepare_out(out: Path, overwrite: bool) -> None:
    """Refuse an output folder unless it is new, empty, or (with ``overwrite``) results that orbit-lite wrote."""
    check_results_out(out, overwrite)


def write_results(
    out: Path,
    results: Sequence[UserResult],
    protocol: Protocol,
    split: str,
    wall_seconds: float,
    config: dict[str, Any],
    overwrite: bool = False,
) -> RunMetrics:
    """Write every output file into ``out`` all at once; returns metrics.json's content."""
    prepare_out(out, overwrite)
    metrics, videos, per_user, per_object = aggregate(results, protocol, split, wall_seconds)
    title = f"{protocol.name} {protocol.mode}, {split} users"
    files = {  # built in memory first: a full disk is then one failed write, with the size it needed known
        "results.json": json.dumps({r.user: r.to_json() for r in results}, allow_nan=False).encode(),
        "metrics.json": json.dumps(json_safe(metrics.to_json()), indent=2, allow_nan=False).encode(),
        "per_video.csv": videos.to_csv(index=False).encode(),
        "per_user.csv": per_user.to_csv(index=False).encode(),
        "per_object.csv": per_object.to_csv(index=False).encode(),
        "config.yaml": yaml.safe_dump(config, sort_keys=False).encode(),
        "per_user_accuracy.png": plot_per_user(per_user, title),
        CONFUSION_FILE: png_bytes(confusion_figure(results, title)),
        FTR_FILE: png_bytes(frames_to_recognition_figure(videos["frames_to_recognition"].to_numpy(), title)),
    }
    needed = sum(len(d) for d in files.values())
    with publish_folder(out, install=install_folder, needed=lambda _: needed) as tmp:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        (tmp / RESULTS_MARKER).write_text(results_marker(tmp))  # last: the proof covers every file written
    return metrics
