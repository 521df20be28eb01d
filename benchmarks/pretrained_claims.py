"""The paper's accuracy claims on real pixels with ImageNet weights: parts ``pretrained_sizes`` and
``pretrained_lite`` of benchmarks/paper_claims.py, on ``orbit-lite data synth --preset photos-clutter`` (the object
small in a busy 448 px frame; the training users' objects are not the test users').

``pretrained_sizes``: ProtoNets (cosine head) and the FineTuner over ImageNet ``efficientnet_lite0``, no
meta-training, at each frame size, every test user (ORBIT 2022 protocol). Both learners use the frozen backbone the
same way at test time, so at each size they share one :class:`FeatureMemo`: every frame is encoded once and both
learners read the same features (the FineTuner's head steps run on features, never on the backbone).

``pretrained_lite``: ProtoNets meta-trained with LITE from those weights on the training users, at a small and a
large frame size (the same tasks, the time stated), against no meta-training at the same size; and at the large size
full tasks with LITE against the small-task baseline (full back-propagation on tasks cut to about LITE's memory).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
PRESET = "photos-clutter"
RECIPE = ROOT / "configs" / "photos_pretrained.yaml"
LEARNER_OVERRIDES = {"protonets": (), "finetuner": ("model.head=linear",)}


class FeatureMemo:
    """A backbone's frame features remembered by the frame's bytes: a frame seen before is not encoded again.

    Exact where the backbone is a fixed function of one frame (eval mode, no FiLM): the same frame gives the same
    features whichever learner asks. Installed as the backbone's ``forward``, so every caller goes through it.
    """

    def __init__(self, backbone: torch.nn.Module) -> None:
        self.forward = backbone.forward
        self.store: dict[bytes, torch.Tensor] = {}
        self.encoded = 0
        backbone.forward = self  # nn.Module.__call__ looks the instance attribute up first

    def __call__(self, frames: torch.Tensor, film: Any = None) -> torch.Tensor:
        if film is not None:
            raise ValueError("FeatureMemo holds features without FiLM only")
        keys = [hashlib.sha1(f.numpy().tobytes()).digest() for f in frames.detach().cpu()]
        missing = list(dict.fromkeys(k for k in keys if k not in self.store))
        if missing:
            first = {k: i for i, k in reversed(list(enumerate(keys)))}
            rows = torch.tensor([first[k] for k in missing])
            with torch.inference_mode():
                features = self.forward(frames[rows])
            self.store.update(zip(missing, features.float().unbind(0), strict=True))
            self.encoded += len(missing)
        return torch.stack([self.store[k] for k in keys])  # outside inference mode this is an ordinary tensor


def make_data(path: Path, quick: bool) -> Path:
    """The photos-clutter tree at ``path`` (written once; an existing tree is reused)."""
    from orbit_lite.data.synth import synthesize

    if not path.exists():
        synthesize(path, PRESET, frame_size=64 if quick else None, seed=0)
    return path


def object_split(data: Path) -> dict[str, Any]:
    """Which objects each split's users own: the claim needs the test objects unseen in training."""
    from orbit_lite.data.layout import index_tree

    index = index_tree(data)
    owned = {s: sorted({o for u in index.users(s) for o in u.object_names}) for s in ("train", "validation", "test")}
    users = {f"{s}_users": len(index.users(s)) for s in owned}
    return {**owned, **users, "shared_train_test": sorted(set(owned["train"]) & set(owned["test"]))}


def _evaluate(data: Path, learner: str, size: int, memo_of: dict, overrides: tuple[str, ...],
              checkpoint: Path | None = None) -> dict[str, Any]:  # fmt: skip
    """One learner at one frame size on every test user, ORBIT 2022 protocol (one task per user: see the report)."""
    from photo_personalize import evaluate

    if checkpoint is not None:
        return evaluate_checkpoint(data, checkpoint, size, overrides)

    def share(model: torch.nn.Module) -> None:  # one backbone, and its memo, per size
        if size in memo_of:
            model.backbone = memo_of[size][0]
        else:
            memo_of[size] = (model.backbone, FeatureMemo(model.backbone))

    start = time.perf_counter()
    run = evaluate(data, "pretrained", size, learner, overrides=(*LEARNER_OVERRIDES[learner], *overrides),
                   prepare=share)  # fmt: skip
    return {**run, "seconds": round(time.perf_counter() - start, 1), "frames_encoded_new": memo_of[size][1].encoded}


def part_pretrained_sizes(quick: bool, tmp: Path, data: Path | None = None,
                          save: Callable[[dict], None] | None = None) -> dict[str, Any]:  # fmt: skip
    """ProtoNets and the FineTuner over ImageNet Lite0, no meta-training, at each frame size. ``save`` receives the
    part as it stands after each size (marked ``partial``), so that a run cut short keeps what it measured."""
    from photo_personalize import chance

    data = data or make_data(tmp / PRESET, quick)
    sizes = (32, 48) if quick else (84, 128, 224, 320)
    order = sorted(sizes, key=lambda s: (s not in (sizes[0], 224), s not in (sizes[-1],), s))  # the paper's pair first
    fewer = ("test_sampling.clip_cap=8",) if quick else ()
    out = {"sizes": [], "learners": list(LEARNER_OVERRIDES), "chance": chance(data), "runs": [], "preset": PRESET,
           "written_at": _frame_side(data), "objects": object_split(data), "tasks_per_user": 1}  # fmt: skip
    for size in order:
        memo_of: dict = {}
        for learner in LEARNER_OVERRIDES:
            out["runs"].append(_evaluate(data, learner, size, memo_of, fewer))
            print(f"[pretrained_sizes] {learner} {size} px: {out['runs'][-1]['frame_accuracy']['mean']:.3f} "
                  f"({out['runs'][-1]['seconds']} s)", flush=True)  # fmt: skip
        memo_of.clear()
        out["sizes"] = sorted([*out["sizes"], size])
        if save is not None and size != order[-1]:
            save({**out, "partial": True})
    return out


def _frame_side(data: Path) -> int:
    import cv2

    frame = next(p for p in sorted((data / "test").rglob("*.jpg")))
    return int(cv2.imread(str(frame)).shape[0])


# ---- LITE meta-training from ImageNet weights ------------------------------------------------------------------------
def lite_recipe(size: int, lite: bool, small_tasks: bool, tasks: int, h: int, users: int) -> dict[str, Any]:
    """ProtoNets from ImageNet Lite0 meta-trained on ``tasks`` tasks at ``size`` px over ORBIT's 10 epochs with its
    optimizer for a pretrained extractor (Adam, lr 1e-4, the backbone's scaled by 0.1), validated after each epoch.

    ``small_tasks`` cuts each task's context to one clean video per object and at most 3 of its clips, and
    back-propagates all of it: 15 frames, the largest cut whose resident memory at 224 px stayed within LITE's with
    H = 8 (3.2 GB against 3.2-3.4 GB on the CPU; one clip per video used 2.1 GB)."""
    recipe = yaml.safe_load(RECIPE.read_text())
    recipe["data"] = {"frame_size": size, "num_workers": 1}
    recipe["lite"] = {"enabled": lite, "h": h, "chunk_size": 64, "query_chunk": 16}
    epochs = 10 if tasks >= 10 * users else 1
    full = tasks >= 10 * users * 50  # the GPU run: ORBIT's 50 tasks per user and 16 tasks per step
    recipe["train"] = {"epochs": epochs, "tasks_per_user": max(1, tasks // (epochs * users)),
                       "tasks_per_batch": 16 if full else 4, "lr": 1e-4, "backbone_lr_scale": 0.1,
                       "warmup_epochs": 0, "weight_decay": 0.0, "val_every": 1, "seed": 0,
                       "scheduler": "constant", "val_tasks_per_user": 1}  # fmt: skip
    # one task per validation user keeps the per-epoch validation short (the learning curve, not a selection)
    recipe["train_sampling"] = {"subsample_factor": 4, "context_shot": 2, "target_shot": 1, "clip_cap": 8}
    if small_tasks:
        recipe["train_sampling"].update(context_shot_method="fixed", context_shot=1, clip_cap=3)
    return recipe


def evaluate_checkpoint(data: Path, checkpoint: Path, size: int, overrides: tuple[str, ...]) -> dict[str, Any]:
    """A meta-trained checkpoint on every test user, as :func:`photo_personalize.evaluate` scores the others."""
    from photo_personalize import evaluate

    start = time.perf_counter()
    run = evaluate(data, "pretrained", size, "protonets", overrides=overrides, checkpoint=checkpoint)
    return {**run, "seconds": round(time.perf_counter() - start, 1)}


def _train(name: str, recipe: dict, data: Path, tmp: Path, device: str) -> dict[str, Any]:
    from paper_claims import _cli

    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    run = tmp / name
    start = time.perf_counter()
    _cli("train", "--data", str(data), "--config", str(path), "--out", str(run), "--device", device)
    seconds = time.perf_counter() - start
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["type"] == "train"]
    return {"checkpoint": run / "checkpoints" / "last.pt", "train_seconds": round(seconds, 1),
            "tasks": int(sum(r["tasks"] for r in train)), "peak_train_memory_mb": max(r["memory_mb"] for r in train),
            "first_loss": train[0].get("loss"), "last_loss": train[-1].get("loss"),
            "validation": [round(r["frame_accuracy"], 4) for r in records if r["type"] == "validation"]}  # fmt: skip


def part_pretrained_lite(quick: bool, tmp: Path, data: Path | None = None, device: str = "cpu",
                         no_meta_training: Callable[[], dict | None] = dict,
                         save: Callable[[dict], None] | None = None) -> dict[str, Any]:  # fmt: skip
    """LITE meta-training from ImageNet Lite0 at a small and a large size, against none; small tasks against full."""
    from photo_personalize import chance

    from orbit_lite.data.layout import index_tree

    data = data or make_data(tmp / PRESET, quick)
    small, large = (32, 48) if quick else (84, 224)
    # 960 on the CPU: 10 epochs of 16 tasks per training user, about 45 minutes; 3000: ORBIT's 10 epochs of 50
    tasks = 4 if quick else (960 if device == "cpu" else 3000)
    h = 4 if quick else 8
    fewer = ("test_sampling.clip_cap=8",) if quick else ()
    runs: dict[str, Any] = {}
    head = {"small_size": small, "large_size": large, "h": h, "tasks": tasks, "device": device,
            "chance": chance(data), "objects": object_split(data)}  # fmt: skip
    for name, size, lite, cut in (("lite_small", small, True, False), ("lite_large", large, True, False),
                                  ("small_tasks_large", large, False, True)):  # fmt: skip
        print(f"[pretrained_lite] training {name} at {size} px ...", flush=True)
        recipe = lite_recipe(size, lite, cut, tasks, h, len(index_tree(data).users("train")))
        trained = _train(name, recipe, data, tmp, device)
        scored = evaluate_checkpoint(data, trained.pop("checkpoint"), size, fewer)
        runs[name] = {**trained, **scored, "frame_size": size}
        if save is not None:
            save({**head, "runs": runs, "partial": True})
    # no meta-training at the same sizes: the pretrained_sizes runs when they were made on this data, else made here
    earlier = no_meta_training() or {}
    same = earlier.get("preset") == PRESET and small in earlier.get("sizes", []) and large in earlier["sizes"]
    before = {r["frame_size"]: r for r in earlier.get("runs", []) if r["learner"] == "protonets" and same}
    for key, size in (("none_small", small), ("none_large", large)):
        runs[key] = before.get(size) or _evaluate(data, "protonets", size, {}, fewer)
    return {**head, "runs": runs}
