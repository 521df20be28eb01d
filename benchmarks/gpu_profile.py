"""Where a training task's time goes, and the counts that predict a GPU's cost; prints JSON and a table.

Trains the 224 recipe (`configs/protonets_lite_224.yaml`, random weights, ORBIT-sized tasks:
`train_sampling.subsample_factor=1`) on the `small` synthetic preset through `orbit_lite.engine.train.train`, and
looks at it in three windows:

1. `first`: the first tasks after the model is built, under `torch.profiler` (a Chrome trace is saved);
2. `steady`: tasks after a warm-up, under `torch.profiler` (another trace);
3. `counts`: more tasks under `orbit_lite.profiling`'s counters: host-device syncs (reads of a device tensor's value:
   `.item()`, `float()`, `.tolist()`, `.cpu()`, `nonzero`, boolean-mask indexing), aten calls dispatched, and the
   backbone's calls and distinct input shapes (each new shape is a cuDNN set-up on a GPU).

The profiled windows split each task's time into: backbone forward without a graph, backbone forward with a graph,
backward, heads, optimizer, data wait and value reads (host syncs on CUDA; a CPU run also counts its host-only reads
there); on CUDA also the GPU's busy and idle share of the window.
On a CPU the times mean little for a GPU, the counts do. On the CPU the habits that `auto` turns on only on CUDA
and that a CPU can run (shape buckets, batched context forwards) are switched on, so that the counts are the GPU's.

    PYTHONPATH=$PWD python3 benchmarks/gpu_profile.py --save $OUT/gpu_profile.json --trace $OUT   # on a GPU
    python benchmarks/gpu_profile.py --frame-size 64 --set train.tasks_per_batch=4 --first 4 --warm 0 --steady 4 \
        --counted 4 --workers 1   # on this CPU (the README's table)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing (the GPU machine has its own torch)

from orbit_lite.config import load_config  # noqa: E402
from orbit_lite.data.layout import index_tree  # noqa: E402
from orbit_lite.data.synth import synthesize  # noqa: E402
from orbit_lite.engine.train import Monitor, train  # noqa: E402
from orbit_lite.profiling import AtenCounter, SyncCounter  # noqa: E402
from orbit_lite.runtime import select_device  # noqa: E402

# Labels of the ranges this script adds, and the prefixes of the ranges torch itself records.
NO_GRAPH, WITH_GRAPH = "backbone forward (no graph)", "backbone forward (with graph)"
HEADS, SET_ENCODER = "heads", "set encoder"
CATEGORIES: dict[str, tuple[str, ...]] = {
    NO_GRAPH: (NO_GRAPH,),
    WITH_GRAPH: (WITH_GRAPH,),
    SET_ENCODER: (SET_ENCODER,),
    "backward": ("autograd::engine::evaluate_function",),
    HEADS: (HEADS,),
    "optimizer": ("Optimizer.step#", "Optimizer.zero_grad#"),
    "data wait": ("enumerate(DataLoader)#",),
    "value reads and syncs": ("aten::_local_scalar_dense", "aten::nonzero", "cudaStreamSynchronize",
                              "cudaDeviceSynchronize", "cudaEventSynchronize"),
}  # fmt: skip
CPU_AS_GPU = ["lite.buckets=on", "train.batch_context=on"]
COUNTS = (("backbone_calls_per_task", "backbone calls"), ("set_encoder_calls_per_task", "set encoder calls"),
          ("host_syncs_per_task", "host-device syncs"), ("aten_calls_per_task", "aten calls dispatched"))  # fmt: skip


class _Finished(Exception):
    """Raised from the monitor once every window is done: the rest of the epoch is not needed."""


def _labelled(fn: Callable, label: Callable[[], str]) -> Callable:
    def run(*args: Any, **kwargs: Any) -> Any:
        with torch.profiler.record_function(label()):
            return fn(*args, **kwargs)

    return run


def _ranged(module: torch.nn.Module, label: Callable[[], str]) -> None:
    """A profiler range around every call of ``module`` (opened by a pre-hook, closed by a hook)."""
    open_ranges: list[Any] = []

    def enter(_module: Any, _args: tuple) -> None:
        open_ranges.append(torch.profiler.record_function(label()))
        open_ranges[-1].__enter__()

    def leave(_module: Any, _args: tuple, _out: Any) -> None:
        open_ranges.pop().__exit__(None, None, None)

    module.register_forward_pre_hook(enter)
    module.register_forward_hook(leave)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class Windows(Monitor):
    """Opens and closes the profiler and the counters between tasks; the loop itself is the real one."""

    def __init__(self, sizes: tuple[int, int, int, int], step: int, device: torch.device, trace: Path | None,
                 save: Callable[[dict], None] = lambda _result: None) -> None:  # fmt: skip
        # A step's losses are read (and its tasks reported) together at its end: windows hold whole steps.
        whole = [math.ceil(n / step) * step for n in sizes]
        self.plan = list(zip(("first", "warm-up", "steady", "counts"), whole, strict=True))
        self.device, self.trace, self.save = device, trace, save
        self.done = 0
        self.window = -1
        self.result: dict[str, Any] = {}
        self.shapes: dict[tuple, int] = {}  # (input shape, dtype, grad) -> calls, over the whole run
        self.backbone_calls = 0
        self.set_encoder_calls = 0
        self._active: Any = None
        self._started = 0.0
        self._calls_before = (0, 0)
        self._shapes_before = 0
        self.learner: Any = None

    def model_ready(self, learner: torch.nn.Module) -> None:
        self.learner = learner
        grad = lambda: WITH_GRAPH if torch.is_grad_enabled() else NO_GRAPH  # noqa: E731
        _ranged(learner.backbone, grad)
        learner.backbone.net.register_forward_pre_hook(self._seen)  # after bucketing; replayed graphs run no hooks
        learner.head.fit = _labelled(learner.head.fit, lambda: HEADS)
        learner.head.logits = _labelled(learner.head.logits, lambda: HEADS)
        if learner.set_encoder is not None:
            learner.set_encoder.register_forward_pre_hook(self._set_encoder_seen)
            _ranged(learner.set_encoder, lambda: SET_ENCODER)
        self._open(0)  # the first window starts with the model built: a warm-up over the buckets counts in it

    def _seen(self, _module: Any, args: tuple) -> None:
        x = args[0]
        key = (tuple(x.shape), str(x.dtype), torch.is_grad_enabled(), str(torch.get_autocast_dtype(x.device.type))
               if torch.is_autocast_enabled(x.device.type) else "")  # fmt: skip
        self.shapes[key] = self.shapes.get(key, 0) + 1
        self.backbone_calls += 1

    def _set_encoder_seen(self, _module: Any, _args: tuple) -> None:
        self.set_encoder_calls += 1

    def start_epoch(self, epoch: int, epochs: int, tasks: int) -> None:
        if self.window < 0:
            self._open(0)

    def task_done(self, loss: float, accuracy: float, memory_mb: float) -> None:
        self.done += 1
        if self.done < sum(n for _, n in self.plan[: self.window + 1]):
            return
        self._close()
        nxt = self.window + 1
        while nxt < len(self.plan) and self.plan[nxt][1] == 0:
            nxt += 1
        if nxt >= len(self.plan):
            raise _Finished
        self._open(nxt)

    def _open(self, index: int) -> None:
        self.window = index
        name = self.plan[index][0]
        _sync(self.device)
        if name in ("first", "steady"):
            activities = [torch.profiler.ProfilerActivity.CPU]
            if self.device.type == "cuda":
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self._active = torch.profiler.profile(activities=activities, record_shapes=False)
            self._active.start()
        elif name == "counts":
            on_device = [*self.learner.parameters(), *self.learner.buffers()]
            self._active = (SyncCounter(on_device, self.device), AtenCounter())
            self._active[0].__enter__()
            self._active[1].__enter__()
        self._calls_before = (self.backbone_calls, self.set_encoder_calls)
        self._shapes_before = len(self.shapes)
        self._started = time.perf_counter()

    def _close(self) -> None:
        name, tasks = self.plan[self.window]
        _sync(self.device)
        wall = time.perf_counter() - self._started
        record: dict[str, Any] = {"tasks": tasks, "wall_s": round(wall, 3), "s_per_task": round(wall / tasks, 4),
                                  "backbone_calls_per_task": (self.backbone_calls - self._calls_before[0]) / tasks,
                                  "new_input_shapes": len(self.shapes) - self._shapes_before}  # fmt: skip
        if self.learner.set_encoder is not None:
            record["set_encoder_calls_per_task"] = (self.set_encoder_calls - self._calls_before[1]) / tasks
        if name in ("first", "steady"):
            self._active.stop()
            record.update(breakdown(self._active, tasks, wall, self.device))
            if self.trace is not None:
                path = self.trace / f"trace_{name}.json"
                self._active.export_chrome_trace(str(path))
                record["trace"] = str(path)
        elif name == "counts":
            syncs, aten = self._active
            aten.__exit__(None, None, None)
            syncs.__exit__(None, None, None)
            record.update(host_syncs_per_task=syncs.total / tasks, aten_calls_per_task=aten.total / tasks,
                          syncs=dict(syncs.counts.most_common()))  # fmt: skip
        self._active = None
        self.result[name] = record
        self.save(self.result)  # after every window: a run cut short by its time limit keeps what it measured


def _top_level(events: list, prefixes: tuple[str, ...]) -> list:
    """Events whose name starts with one of ``prefixes`` and that are not inside another such event."""
    chosen = []
    for event in events:
        if not event.name.startswith(prefixes):
            continue
        parent, inside = event.cpu_parent, False
        while parent is not None:
            if parent.name.startswith(prefixes):
                inside = True
                break
            parent = parent.cpu_parent
        if not inside:
            chosen.append(event)
    return chosen


def breakdown(prof: torch.profiler.profile, tasks: int, wall: float, device: torch.device) -> dict[str, Any]:
    """Per task: host milliseconds (and on CUDA, device milliseconds) of each category; the GPU's idle share."""
    events = list(prof.events())
    per_task: dict[str, dict[str, float]] = {}
    for category, prefixes in CATEGORIES.items():
        chosen = _top_level(events, prefixes)
        row = {"calls": len(chosen) / tasks, "host_ms": sum(e.cpu_time_total for e in chosen) / 1e3 / tasks}
        if device.type == "cuda":
            row["device_ms"] = sum(e.device_time_total for e in chosen) / 1e3 / tasks
        per_task[category] = {k: round(v, 3) for k, v in row.items()}
    out: dict[str, Any] = {"per_task": per_task}
    if device.type == "cuda":
        out["gpu_busy_share"] = gpu_busy_share(prof, wall)
        out["gpu_idle_share"] = None if out["gpu_busy_share"] is None else round(1 - out["gpu_busy_share"], 3)
    return out


def gpu_busy_share(prof: torch.profiler.profile, wall: float) -> float | None:
    """The share of the window's wall time in which some GPU kernel or copy ran (intervals merged)."""
    try:
        spans = sorted((e.start_ns(), e.start_ns() + e.duration_ns()) for e in prof.profiler.kineto_results.events()
                       if e.device_type() == torch.autograd.DeviceType.CUDA)  # fmt: skip
    except (AttributeError, RuntimeError):  # the profiler's internals moved: report nothing rather than a guess
        return None
    busy, end = 0, -math.inf
    for start, stop in spans:
        if stop <= end:
            continue
        busy += stop - max(start, end)
        end = stop
    return round(min(busy / 1e9 / wall, 1.0), 3)


def table(report: dict[str, Any]) -> str:
    """Markdown tables: the counts per task, then where the time goes in the profiled windows."""
    counts = report["windows"].get("counts", {})
    lines = ["| per training task | count |", "|---|---|"]
    lines += [f"| {label} | {counts[key]:g} |" for key, label in COUNTS if key in counts]
    lines.append(f"| distinct backbone input shapes, {report['tasks_run']} tasks | {report['distinct_shapes']} |")
    if counts.get("syncs"):
        calls = ", ".join(f"{k} {v / counts['tasks']:g}" for k, v in counts["syncs"].items())
        lines.append(f"| syncs by call | {calls} |")
    cuda = report["device"] != "cpu"
    for name in ("first", "steady"):
        window = report["windows"].get(name)
        if window is None:
            continue
        head = "| " + name + f" ({window['tasks']} tasks, {window['s_per_task']} s each) | calls | host ms |"
        lines += ["", head + (" device ms |" if cuda else ""), "|---|---|---|" + ("---|" if cuda else "")]
        for category, row in window["per_task"].items():
            device_ms = f" {row['device_ms']:g} |" if cuda else ""
            lines.append(f"| {category} | {row['calls']:g} | {row['host_ms']:g} |{device_ms}")
        if cuda:
            lines.append(f"| GPU idle share | | {window.get('gpu_idle_share')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="An ORBIT tree (default: write the small preset).")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "protonets_lite_224.yaml")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--frame-size", type=int, default=224)
    parser.add_argument("--first", type=int, default=3, help="Tasks profiled right after the model is built.")
    parser.add_argument("--warm", type=int, default=20, help="Tasks run, unprofiled, before the steady window.")
    parser.add_argument("--steady", type=int, default=20, help="Tasks profiled after the warm-up.")
    parser.add_argument("--counted", type=int, default=10, help="Tasks under the sync and aten counters.")
    # each window is rounded up to whole optimizer steps (train.tasks_per_batch tasks)
    parser.add_argument("--workers", type=int, default=8, help="Loader processes.")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="Extra config overrides.")
    parser.add_argument("--trace", type=Path, help="Folder for the Chrome traces (default: none saved).")
    parser.add_argument("--json", action="store_true", help="Print only the JSON object.")
    parser.add_argument("--save", type=Path, help="Also write the JSON here.")
    args = parser.parse_args()
    device = select_device(args.device)
    base = [f"data.frame_size={args.frame_size}", f"data.num_workers={args.workers}", "model.weights=none",
            "train_sampling.subsample_factor=1", f"train.device={device.type}", "train.tensorboard=off"]  # fmt: skip
    base += (CPU_AS_GPU if device.type == "cpu" else []) + args.overrides
    tasks = args.first + args.warm + args.steady + args.counted
    report: dict[str, Any] = {"device": torch.cuda.get_device_name() if device.type == "cuda" else device.type,
                              "torch": torch.__version__, "config": args.config.name, "overrides": base}  # fmt: skip
    if args.trace is not None:
        args.trace.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="orbit-profile-") as tmp:
        data = args.data or synthesize(Path(tmp) / "data", "small", frame_size=args.frame_size, seed=0).root
        users = len(index_tree(data).users("train"))
        cfg = load_config([str(args.config)], base)
        tasks = (math.ceil(tasks / cfg.train.tasks_per_batch) + 4) * cfg.train.tasks_per_batch
        cfg = load_config([str(args.config)], [*base, "train.epochs=1", f"train.tasks_per_user={tasks // users + 1}"])

        def save(result: dict) -> None:
            report.update(windows=result, tasks_run=windows.done, distinct_shapes=len(windows.shapes))
            if args.save is not None:
                args.save.write_text(json.dumps(report, indent=2))

        sizes = (args.first, args.warm, args.steady, args.counted)
        windows = Windows(sizes, cfg.train.tasks_per_batch, device, args.trace, save)
        with contextlib.suppress(_Finished):  # raised once every window is done
            train(cfg, data, Path(tmp) / "run", monitor=windows)
    save(windows.result)
    text = json.dumps(report, indent=None if args.json else 2)
    if not args.json:
        print(table(report), file=sys.stderr)
    print(text)


if __name__ == "__main__":
    main()
