"""Evaluation outputs: aggregation (flattened per-(task, video) scores), tables, files and the per-user plot.

A results directory is built in a temporary sibling folder and renamed into place at the end, so it is there
complete or not at all.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from orbit_lite.checkpoint import umask_mode, write_failure
from orbit_lite.engine.evaluate import Protocol, UserResult
from orbit_lite.errors import OrbitLiteError
from orbit_lite.metrics import summarize_scores
from orbit_lite.outputs import RESULTS_MARKER, check_results_out, install_folder, results_marker
from orbit_lite.visual.evaluation import CONFUSION_FILE, FTR_FILE, confusion_figure, frames_to_recognition_figure
from orbit_lite.visual.png import new_figure, png_bytes

METRICS = ("frame_accuracy", "frames_to_recognition", "video_accuracy")


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


def aggregate(
    results: Sequence[UserResult], protocol: Protocol, split: str, wall_seconds: float
) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """metrics.json's content and the per-video, per-user and per-object tables."""
    videos = per_video_table(results)
    per_user = _grouped(videos, ["user"]) if len(videos) else pd.DataFrame()
    per_object = _grouped(videos, ["user", "object"]) if len(videos) else pd.DataFrame()
    metrics: dict[str, Any] = {"protocol": protocol.name, "mode": protocol.mode, "split": split,
                               "tasks_per_user": protocol.tasks_per_user, "users": len(results)}  # fmt: skip
    for metric in METRICS:
        metrics[metric] = summarize_scores(videos[metric].to_numpy())
    metrics["chance"] = chance_level(results)
    metrics["per_user"] = {
        r.user: {m: summarize_scores(videos.loc[videos["user"] == r.user, m].to_numpy()) for m in METRICS}
        for r in results
    }
    context = sum(r.frames_encoded["context"] for r in results)
    target = sum(r.frames_encoded["target"] for r in results)
    metrics["frames_encoded"] = {"context": context, "target": target, "total": context + target}
    metrics["personalizations"] = sum(r.personalizations for r in results)
    metrics["cost"] = cost_summary(results)
    metrics["wall_seconds"] = round(wall_seconds, 3)
    metrics["skipped_videos"] = [s for r in results for s in r.skipped]
    metrics["dropped_users"] = [{"user": r.user, "reason": r.dropped} for r in results if r.dropped]
    metrics["dropped_objects"] = [{"user": r.user, "object": o} for r in results for o in r.dropped_objects]
    return metrics, videos, per_user, per_object


def chance_level(results: Sequence[UserResult]) -> float | None:
    """The frame accuracy of guessing uniformly among a task's objects, averaged as the scores are (over every scored
    (task, video)); None when nothing was scored."""
    ways = [len(r.tasks[s.task]["task_object_list"]) for r in results for s in r.scores]
    return sum(1 / w for w in ways) / len(ways) if ways else None


def cost_summary(results: Sequence[UserResult]) -> dict[str, Any]:
    """Mean cost per task (MACs and seconds to personalise, parameters a task adds) and per query frame."""
    tasks = [t for r in results for t in r.tasks if "task_macs_to_personalise" in t]
    frames = sum(r.inference["frames"] for r in results)

    def mean(key: str) -> float | None:
        return sum(t[key] for t in tasks) / len(tasks) if tasks else None

    return {
        "tasks": len(tasks),
        "task_macs_to_personalise": mean("task_macs_to_personalise"),
        "task_seconds_to_personalise": mean("task_seconds_to_personalise"),
        "params_base": max((r.params_base for r in results), default=0),
        "task_params_added": mean("task_params_added"),
        "frames": frames,
        "inference_macs_per_frame": sum(r.inference["macs"] for r in results) / frames if frames else None,
        "inference_seconds_per_frame": sum(r.inference["seconds"] for r in results) / frames if frames else None,
    }


def check_scored(results: Sequence[UserResult], protocol: Protocol) -> None:
    """Refuse a results folder without a single score, saying why nothing could be scored."""
    if any(r.scores for r in results):
        return
    why = []
    short = sum(r.short_videos for r in results)
    if short:
        kind = "held-out clean" if protocol.mode == "clean" else "clutter"
        need = protocol.sampling.min_target_frames
        why.append(f"{short} {kind} videos have fewer than the {need} usable frames a query video needs "
                   "(test_sampling.min_target_frames)")  # fmt: skip
    skipped = sum(len(r.skipped) for r in results)
    if skipped:
        why.append(f"{skipped} videos had corrupt files")
    dropped = [r.user for r in results if r.dropped]
    if dropped:
        why.append(f"users {', '.join(dropped)} had fewer than two teachable objects")
    raise OrbitLiteError(f"no video could be scored ({protocol.name}, {protocol.mode} mode): "
                         f"{'; '.join(why) or 'no query videos'}; nothing written")  # fmt: skip


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
        ax.bar(per_user["user"], 100 * per_user["frame_accuracy"], yerr=100 * per_user["frame_accuracy_ci95"],
               capsize=3, color="#4C72B0")  # fmt: skip
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
) -> dict[str, Any]:
    """Write every output file into ``out`` all at once; returns metrics.json's content."""
    prepare_out(out, overwrite)
    metrics, videos, per_user, per_object = aggregate(results, protocol, split, wall_seconds)
    title = f"{protocol.name} {protocol.mode}, {split} users"
    files = {  # built in memory first: a full disk is then one failed write, with the size it needed known
        "results.json": json.dumps({r.user: r.tasks for r in results}, allow_nan=False).encode(),
        "metrics.json": json.dumps(json_safe(metrics), indent=2, allow_nan=False).encode(),
        "per_video.csv": videos.to_csv(index=False).encode(),
        "per_user.csv": per_user.to_csv(index=False).encode(),
        "per_object.csv": per_object.to_csv(index=False).encode(),
        "config.yaml": yaml.safe_dump(config, sort_keys=False).encode(),
        "per_user_accuracy.png": plot_per_user(per_user, title),
        CONFUSION_FILE: png_bytes(confusion_figure(results, title)),
        FTR_FILE: png_bytes(frames_to_recognition_figure(videos["frames_to_recognition"].to_numpy(), title)),
    }
    tmp: Path | None = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
        tmp.chmod(umask_mode(0o777))  # mkdtemp's folder is private; results get the mode mkdir would give
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        (tmp / RESULTS_MARKER).write_text(results_marker(tmp))  # last: the proof covers every file written
        install_folder(tmp, out)
    except OSError as e:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise write_failure(out, e, sum(len(d) for d in files.values())) from None
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    return metrics
