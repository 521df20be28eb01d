"""Fuzz orbit-lite's loaders and commands with random and mutated inputs: training checkpoints, personal files,
configs, annotation JSON and frames.

The property, for every case: the command (or loader) succeeds or stops with one ``OrbitLiteError`` line; never
another exception, never a file written outside the intended output. Inputs are valid seeds (a tiny synthetic tree,
a checkpoint, a personal file, a recipe, an annotation file, a frame) mutated at random: bit flips, cuts,
insertions, spliced and random bytes, and structured changes (a field of a checkpoint or a key of a config replaced
by a value of another type, out of range, NaN, a tensor of another shape, or removed). 30% of the cases go through the
commands (``personalize``, ``recognize``, ``train``) in-process with typer's runner; the rest call the loaders.

    nice -n 19 python benchmarks/fuzz.py --cases 10000 --seconds 1800 --json   # what the README reports
    python benchmarks/fuzz.py --cases 300 --json                                # a quick look

Prints one JSON object: cases run, seconds, outcomes per target (ok, error, crash, stray) and the first crashes
(target, seed, exception) so that any of them can be replayed with ``--replay TARGET:SEED``.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import random
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

TARGETS = ("checkpoint", "personal", "config", "annotation", "frame")
FRAME_SIZE = 32
COMMAND_SHARE = 0.3  # of the cases run through a command (recognize, personalize, train); the rest call loaders
RECIPE = {
    "data": {"frame_size": FRAME_SIZE, "num_workers": 0},
    "model": {"learner": "protonets", "backbone": "tiny_cnn", "weights": "none"},
    "lite": {"h": 2, "chunk_size": 8, "query_chunk": 16},
    "train": {"epochs": 0, "tasks_per_user": 1, "tasks_per_batch": 1, "val_tasks_per_user": 1, "seed": 0,
              "warmup_epochs": 0, "scheduler": "constant"},
    "train_sampling": {"subsample_factor": 4, "clip_cap": 10},
    "test_sampling": {"subsample_factor": 4, "clip_cap": 20},
}  # fmt: skip


@dataclass
class Seeds:
    """The valid inputs every case starts from (read-only: a case that changed one of them fails as stray)."""

    tree: Path  # a tiny ORBIT tree of JPEG frames
    checkpoint: Path  # a training checkpoint of RECIPE
    personal: Path  # a personal recognizer personalized from it
    frame: Path  # one frame of the tree
    annotation: Path  # one annotation file of the tree

    def bytes_of(self, target: str) -> bytes:
        path = {"checkpoint": self.checkpoint, "personal": self.personal, "annotation": self.annotation,
                "frame": self.frame}.get(target)  # fmt: skip
        return yaml.safe_dump(RECIPE).encode() if path is None else path.read_bytes()


def make_seeds(folder: Path) -> Seeds:
    """Synthesize the tiny tree, build RECIPE's checkpoint (no meta-training) and personalize one test user."""
    from orbit_lite.config import Config, from_dict
    from orbit_lite.data.layout import index_tree
    from orbit_lite.data.synth import synthesize
    from orbit_lite.engine.model import open_model, parse_source
    from orbit_lite.engine.personalize import personalize_user
    from orbit_lite.engine.train import train
    from orbit_lite.personal import save_personal

    tree = synthesize(folder / "tree", "tiny", fmt="frames", seed=0).root
    train(from_dict(Config, RECIPE), tree, folder / "run")
    checkpoint = folder / "run" / "checkpoints" / "best.pt"
    user = index_tree(tree).users("test")[0]
    learner, cfg = open_model(parse_source(checkpoint, [], []), torch.device("cpu"))
    model, _ = personalize_user(learner, user, cfg)
    save_personal(folder / "personal.pt", model)
    return from_files(tree, checkpoint, folder / "personal.pt")


def from_files(tree: Path, checkpoint: Path, personal: Path) -> Seeds:
    frame = sorted(tree.rglob("*.jpg"))[0]
    annotation = sorted((tree / "annotations").rglob("*.json"))[0]
    return Seeds(tree, checkpoint, personal, frame, annotation)


# ---- mutations ----


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """One to four byte-level changes: bit flips, a cut, inserted, deleted, duplicated or random bytes."""
    if rng.random() < 0.05:
        return rng.randbytes(rng.choice([0, 1, 7, 64, 512, 4096]))
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        n = len(out)
        op = rng.choice(("flip", "flip", "cut", "insert", "delete", "duplicate", "overwrite"))
        at = rng.randrange(n + 1) if n else 0
        if op == "flip" and n:
            i = rng.randrange(n)
            out[i] ^= 1 << rng.randrange(8)
        elif op == "cut":
            del out[at:]
        elif op == "insert":
            out[at:at] = rng.randbytes(rng.randint(1, 16))
        elif op == "delete":
            del out[at : at + rng.randint(1, 64)]
        elif op == "duplicate" and n:
            end = min(n, at + rng.randint(1, 256))
            out[at:at] = out[at:end]
        elif op == "overwrite" and n:
            chunk = rng.randbytes(rng.randint(1, 8))
            out[at : at + len(chunk)] = chunk
    return bytes(out)


def random_value(rng: random.Random, depth: int = 0) -> Any:
    """A value of any kind a file might hold instead of the right one."""
    kind = rng.choice(("none", "bool", "int", "huge", "float", "odd", "str", "list", "dict", "tensor"))
    if kind == "none":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "int":
        return rng.choice([0, 1, -1, 2, 3, 7, 64, 1024, 10**6])
    if kind == "huge":
        return rng.choice([2**31, 2**63, -(2**63) - 1, 10**20, 1e20, -1e30])
    if kind == "float":
        return rng.choice([0.0, 0.5, -0.5, 1e-30, 1e30, 3.5])
    if kind == "odd":
        return rng.choice([math.nan, math.inf, -math.inf])
    if kind == "str":
        return rng.choice(["", "x", "tiny_cnn", "../../etc/passwd", "a" * 300, "auto", "on", "1e3", "\x00", "é"])
    if kind == "list" and depth < 2:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if kind == "dict" and depth < 2:
        return {rng.choice(["a", "w", "0"]): random_value(rng, depth + 1) for _ in range(rng.randint(0, 2))}
    shape = [rng.choice([0, 1, 2, 3, 5]) for _ in range(rng.randint(0, 4))]
    dtype = rng.choice([torch.float32, torch.float16, torch.int64, torch.uint8, torch.bool])
    return (
        torch.zeros(shape, dtype=dtype)
        if rng.random() < 0.5 or not dtype.is_floating_point
        else torch.full(shape, math.nan, dtype=dtype)
    )


def mutate_record(record: Any, rng: random.Random) -> Any:
    """A copy of a nested record with one to three entries replaced by another value, or removed."""
    import copy

    record = copy.deepcopy(record)
    for _ in range(rng.randint(1, 3)):
        node, key = record, None
        for _ in range(rng.randint(1, 4)):  # walk down to a random entry: node[key]
            keys = list(node) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []
            if not keys:
                break
            key = rng.choice(keys)
            if not isinstance(node[key], (dict, list)) or not node[key] or rng.random() < 0.4:
                break
            node, key = node[key], None
        if key is None:
            continue
        if isinstance(node, dict) and rng.random() < 0.2:
            del node[key]
        elif isinstance(node[key], torch.Tensor) and rng.random() < 0.5:  # same kind, another shape or NaN
            t = node[key]
            nan = torch.full_like(t, math.nan) if t.is_floating_point() else torch.full_like(t, 255)
            node[key] = t.flatten()[: max(0, t.numel() - 1)] if rng.random() < 0.5 else nan
        else:
            node[key] = random_value(rng)
    return record


def make_input(target: str, seeds: Seeds, rng: random.Random) -> bytes:
    """A random or mutated input for ``target``: raw bytes, byte-mutated seed, or a structurally changed seed."""
    seed = seeds.bytes_of(target)
    if rng.random() < 0.1:
        return rng.randbytes(rng.randint(0, 2048))
    structured = rng.random() < 0.5
    if not structured or target == "frame":
        return mutate_bytes(seed, rng)
    if target in ("checkpoint", "personal"):
        record = torch.load(io.BytesIO(seed), weights_only=True)
        buffer = io.BytesIO()
        torch.save(mutate_record(record, rng), buffer)
        return buffer.getvalue()
    if target == "config":
        text = yaml.safe_dump(_plain(mutate_record(RECIPE, rng)), allow_unicode=True)
        return text.encode() if rng.random() < 0.7 else mutate_bytes(text.encode(), rng)
    record = json.loads(seed)
    return json.dumps(_plain(mutate_record(record, rng))).encode()


def _plain(value: Any) -> Any:
    """Tensors as lists: what a YAML or JSON file can hold."""
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# ---- running one case ----


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _cli(args: list[str]) -> str:
    """Run a command in-process: "ok", "error" (exit 1 with one `error:` line) or raise what escaped it."""
    from typer.testing import CliRunner

    from orbit_lite.cli.main import app

    result = CliRunner().invoke(app, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    if result.exit_code == 0:
        return "ok"
    lines = result.stderr.strip().splitlines()
    if result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: "):
        return "error"
    raise AssertionError(f"exit {result.exit_code} without one error line: {result.stderr[-300:]!r}")


def run_case(target: str, data: bytes, seeds: Seeds, work: Path, command: bool) -> str:
    """Feed ``data`` to ``target``'s loader (or, with ``command``, its command); "ok" or "error", or it raises."""
    from orbit_lite.errors import OrbitLiteError

    try:
        if target == "checkpoint":
            path = work / "in.pt"
            path.write_bytes(data)
            if command:
                from orbit_lite.data.layout import index_tree

                user = index_tree(seeds.tree).users("test")[0].user_id
                return _cli(["personalize", "--checkpoint", str(path), "--data", str(seeds.tree), "--user", user,
                             "--out", str(work / "me.pt"), "--device", "cpu"])  # fmt: skip
            from orbit_lite.engine.model import open_model, parse_source

            open_model(parse_source(path, [], []), torch.device("cpu"))
        elif target == "personal":
            path = work / "in.pt"
            path.write_bytes(data)
            if command:
                return _cli(["recognize", "--model", str(path), str(seeds.frame), "--device", "cpu", "--csv",
                             str(work / "out.csv")])  # fmt: skip
            from orbit_lite.engine.model import open_personal

            open_personal(path)
        elif target == "config":
            path = work / "in.yaml"
            path.write_bytes(data)
            if command:  # no data: train stops after reading the config, before anything is written
                return _cli(["train", "--config", str(path), "--data", str(work / "none"), "--out", str(work / "run")])
            from orbit_lite.config import load_config

            load_config([str(path)])
        elif target == "annotation":
            return _annotation_case(data, seeds, work)
        else:
            path = work / "in.jpg"
            path.write_bytes(data)
            if command:
                return _cli(["recognize", "--model", str(seeds.personal), str(path), "--device", "cpu"])
            from orbit_lite.data.video import decode_image_bytes, jpeg_side, read_image

            for side in (jpeg_side(data), 1 << 16):  # as the loaders read frames, and as `data check` does
                image = decode_image_bytes(data, FRAME_SIZE, path, side)
                assert image.shape == (FRAME_SIZE, FRAME_SIZE, 3), image.shape
            read_image(path, FRAME_SIZE)
    except OrbitLiteError as e:
        assert "\n" not in str(e).strip(), f"a message of several lines: {str(e)[:200]!r}"
        return "error"
    return "ok"


def _annotation_case(data: bytes, seeds: Seeds, work: Path) -> str:
    """One video's annotation file replaced by ``data`` (in a private copy of its annotation folder), read as
    evaluate and data check read it."""
    import dataclasses

    from orbit_lite.data import annotations
    from orbit_lite.data.check import _check_annotations
    from orbit_lite.errors import OrbitLiteError

    path = work / seeds.annotation.name
    path.write_bytes(data)
    video = dataclasses.replace(_annotated_video(seeds), annotation_path=path)
    annotations._load_cached.cache_clear()
    _check_annotations(video, work)  # data check: a list of problems, never raises
    try:
        annotations.load_annotations(video)
    except OrbitLiteError:
        return "error"
    return "ok"


_VIDEOS: dict[Path, Any] = {}


def _annotated_video(seeds: Seeds) -> Any:
    """The seed annotation file's video (indexed once)."""
    if seeds.annotation not in _VIDEOS:
        from orbit_lite.data.layout import index_tree

        _VIDEOS[seeds.annotation] = next(v for v in index_tree(seeds.tree).videos()
                                         if v.annotation_path == seeds.annotation)  # fmt: skip
    return _VIDEOS[seeds.annotation]


def one_case(target: str, seed: int, seeds: Seeds, scratch: Path) -> tuple[str, str | None]:
    """Run case (``target``, ``seed``) in a fresh folder; the outcome and, for a crash or stray file, why."""
    rng = random.Random(f"{target}:{seed}")
    data = make_input(target, seeds, rng)
    command = rng.random() < COMMAND_SHARE
    work = Path(tempfile.mkdtemp(dir=scratch))
    before = _files(scratch)
    try:
        outcome = run_case(target, data, seeds, work, command)
    except Exception as e:  # the property's failure: anything but an OrbitLiteError
        frames = traceback.extract_tb(e.__traceback__)
        where = f"{frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else "?"
        return "crash", f"{type(e).__name__} at {where}: {str(e)[:160]}"
    finally:
        stray = sorted(p for p in _files(scratch) - before if p.split("/")[0] != work.name)
        shutil.rmtree(work, ignore_errors=True)
    if stray:
        return "stray", f"files outside the case's folder: {stray[:3]}"
    return outcome, None


def fuzz(seeds: Seeds, cases: int, seconds: float, scratch: Path, progress: Callable[[int], None]) -> dict[str, Any]:
    counts: dict[str, Counter] = {t: Counter() for t in (*TARGETS, "seeds")}
    failures: list[dict[str, Any]] = []
    started = time.perf_counter()
    done = 0
    seed_files = {p: p.stat().st_mtime_ns for p in seeds.tree.parent.rglob("*")}  # every seed, as it was
    for i in range(cases):
        if time.perf_counter() - started > seconds:
            break
        target = TARGETS[i % len(TARGETS)]
        outcome, why = one_case(target, i, seeds, scratch)
        counts[target][outcome] += 1
        if why is not None and len(failures) < 20:
            failures.append({"target": target, "seed": i, "outcome": outcome, "why": why})
        done += 1
        progress(done)
    if {p: p.stat().st_mtime_ns for p in seeds.tree.parent.rglob("*")} != seed_files:
        counts["seeds"]["stray"] += 1
        failures.append({"target": "seeds", "outcome": "stray", "why": "a seed file was changed, added or removed"})
    return {
        "cases": done,
        "seconds": round(time.perf_counter() - started, 1),
        "stopped_by_time": done < cases,
        "outcomes": {t: dict(c) for t, c in counts.items()},
        "crashes": sum(c["crash"] for c in counts.values()),
        "stray": sum(c["stray"] for c in counts.values()),
        "failures": failures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=1800.0, help="stop after this long, whatever is left")
    parser.add_argument("--replay", default=None, help="TARGET:SEED: run one case and show its traceback")
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    args = parser.parse_args()
    import logging

    logging.disable(logging.WARNING)  # skipped corrupt frames warn; the outcome is what is counted
    with tempfile.TemporaryDirectory(prefix="orbit-lite-fuzz.") as tmp:
        root = Path(tmp)
        seeds = make_seeds(root / "seeds")
        scratch = root / "cases"
        scratch.mkdir()
        if args.replay:
            target, seed = args.replay.split(":")
            rng = random.Random(f"{target}:{int(seed)}")
            data = make_input(target, seeds, rng)
            print(run_case(target, data, seeds, Path(tempfile.mkdtemp(dir=scratch)), rng.random() < COMMAND_SHARE))
            return

        def progress(done: int) -> None:
            if done % 500 == 0:  # also when stderr is not a terminal: a long run says where it is
                print(f"{done} cases", file=sys.stderr, flush=True)

        report = fuzz(seeds, args.cases, args.seconds, scratch, progress)
    print(json.dumps(report, indent=None if args.json else 1))
    sys.exit(1 if report["crashes"] or report["stray"] else 0)


if __name__ == "__main__":
    main()
