"""Deterministic synthetic ORBIT data: the tests' fixture and ``make demo``'s dataset.

Writes the benchmark layout exactly (``<out>/<split>/<user>/<object>/<clean|clutter>/<video>``, frames
``<video>-00001.jpg``, ``<out>/annotations/<split>/<video>.json``), as JPEG frame folders, video files, or both.

The objects are learnable: they differ in shape, colour and texture. Each user owns a pair of *twins* that differ
only in a fine pattern (stripes or checks, period 1/32 of the object), which survives at 224 px and is averaged
away at 84 px, so larger frames help. Clean videos show one object under camera motion (a few frames
blurred or before the object comes into view); clutter videos show it among the same user's other objects while the
camera pans, so it is out of view in some frames (annotated ``object_not_present_issue``).
"""

from __future__ import annotations

import base64
import glob
import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch

from orbit_lite.checkpoint import umask_mode, write_failure
from orbit_lite.data.annotations import ISSUES
from orbit_lite.data.presets import PRESETS, Preset
from orbit_lite.errors import OrbitLiteError

if TYPE_CHECKING:
    from orbit_lite.data.photos import PhotoContent

log = logging.getLogger(__name__)

SHAPES = ("circle", "square", "triangle", "star", "hexagon", "cross", "diamond", "ring")
COLOURS = {
    "red": (200, 40, 40), "green": (40, 160, 60), "blue": (40, 70, 200), "yellow": (225, 200, 40),
    "purple": (130, 50, 170), "orange": (235, 130, 30), "teal": (30, 150, 150), "pink": (230, 120, 170),
    "white": (235, 235, 235), "black": (30, 30, 30), "brown": (120, 75, 40), "grey": (128, 128, 128),
}  # fmt: skip
TEXTURES = ("solid", "stripes", "dots", "checker")
KINDS = ("mug", "keys", "wallet", "remote", "bottle", "headphones", "cane", "phone", "glasses", "bag", "book", "hat")
ORIGINAL_SIZE = 1080  # annotation boxes are in the coordinates of ORBIT's 1080x1080 originals
FORMATS = ("frames", "videos", "mixed")
_SPRITE = 192  # sprite resolution: fine enough for the twins' detail at 224 px


@dataclass(frozen=True)
class ObjectLook:
    name: str
    shape: str
    colour: tuple[int, int, int]
    texture: str
    fine: str | None  # None, "stripes" or "checks": the fine detail that alone tells twins apart


@dataclass(frozen=True)
class SynthSummary:
    root: Path
    users: dict[str, int]
    videos: int
    frames: int


def _shape_mask(shape: str, side: int) -> np.ndarray:
    """Binary ``[side, side]`` mask of a shape filling most of the square."""
    mask = np.zeros((side, side), np.uint8)
    c, r = side / 2, side * 0.45
    if shape == "circle":
        cv2.circle(mask, (int(c), int(c)), int(r), 255, -1)
    elif shape == "ring":
        cv2.circle(mask, (int(c), int(c)), int(r), 255, -1)
        cv2.circle(mask, (int(c), int(c)), int(r * 0.5), 0, -1)
    elif shape == "square":
        mask[int(c - r * 0.85) : int(c + r * 0.85), int(c - r * 0.85) : int(c + r * 0.85)] = 255
    elif shape == "cross":
        w = r * 0.35
        mask[int(c - w) : int(c + w), int(c - r) : int(c + r)] = 255
        mask[int(c - r) : int(c + r), int(c - w) : int(c + w)] = 255
    else:
        n, inner = {"triangle": (3, 1.0), "hexagon": (6, 1.0), "diamond": (4, 1.0), "star": (5, 0.45)}[shape]
        points = []
        for i in range(n * (2 if inner < 1 else 1)):
            angle = -np.pi / 2 + i * np.pi / (n if inner < 1 else n / 2)
            rad = r if (inner >= 1 or i % 2 == 0) else r * inner
            points.append((c + rad * np.cos(angle), c + rad * np.sin(angle)))
        cv2.fillPoly(mask, [np.round(np.array(points)).astype(np.int32)], 255)
    return mask


def _sprite(look: ObjectLook, side: int) -> np.ndarray:
    """RGBA ``[side, side, 4]`` float32 sprite of an object."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    base = np.array(look.colour, np.float32)
    dark = base * 0.45 + 20
    if look.texture == "stripes":
        on = (xx + yy) % (side / 5) < side / 10
    elif look.texture == "dots":
        cell = side / 6
        on = ((xx % cell - cell / 2) ** 2 + (yy % cell - cell / 2) ** 2) < (cell / 4) ** 2
    elif look.texture == "checker":
        on = ((xx // (side / 4)) + (yy // (side / 4))) % 2 == 0
    else:
        on = np.zeros_like(xx, bool)
    rgb = np.where(on[..., None], dark, base)
    if look.fine is not None:  # period side/32: ~4 px on a 224 frame, under 2 px (averaged away) at 84
        half = side // 64  # both patterns are dark on exactly half the pixels: the twins share their mean colour
        if look.fine == "stripes":
            fine = (xx + yy) // half % 2 == 0
        else:  # a fine checkerboard: rotation cannot turn one twin into the other
            fine = (xx // half + yy // half) % 2 == 0
        rgb = np.where(fine[..., None], rgb * 0.55, np.minimum(rgb * 1.15 + 10, 255))
    alpha = _shape_mask(look.shape, side).astype(np.float32) / 255.0
    return np.dstack([rgb, alpha])


def _place(canvas: np.ndarray, sprite: np.ndarray, cx: float, cy: float, size: float, angle: float) -> float:
    """Alpha-composite ``sprite`` centred at (cx, cy) with side ``size`` and rotation; returns visible fraction."""
    s = sprite.shape[0]
    m = cv2.getRotationMatrix2D((s / 2, s / 2), angle, size / s)
    m[:, 2] += (cx - s / 2, cy - s / 2)
    h, w = canvas.shape[:2]
    warped = cv2.warpAffine(sprite, m, (w, h), flags=cv2.INTER_AREA if size < s else cv2.INTER_LINEAR)
    alpha = warped[..., 3:4]
    canvas[...] = canvas * (1 - alpha) + warped[..., :3] * alpha
    total = float(sprite[..., 3].sum()) * (size / s) ** 2
    return float(alpha.sum()) / total if total > 0 else 0.0


def _background(rng: np.random.Generator, side: int, busy: bool) -> np.ndarray:
    """A muted surface (grey with a slight tint, a gradient and soft noise); with ``busy``, muted furniture too.

    Backgrounds are low in saturation and contrast next to the objects, as a table or floor is next to the things a
    person films, so a recognizer can learn to look at the object rather than memorize each video's backdrop.
    """
    grey = rng.uniform(95, 165)
    c0, c1 = grey + rng.uniform(-14, 14, 3), grey + rng.uniform(-14, 14, 3)
    t = np.linspace(0, 1, side, dtype=np.float32)[:, None, None]
    bg = np.broadcast_to(c0 * (1 - t) + c1 * t, (side, side, 3)).astype(np.float32)
    noise = cv2.resize(rng.normal(0, 6, (8, 8, 3)).astype(np.float32), (side, side), interpolation=cv2.INTER_CUBIC)
    bg = bg + noise
    if busy:
        for _ in range(int(rng.integers(3, 7))):
            x0, y0 = rng.integers(0, side, 2)
            w, h = rng.integers(side // 8, side // 2, 2)
            shade = (rng.uniform(70, 190) + rng.uniform(-12, 12, 3)).tolist()
            cv2.rectangle(bg, (int(x0), int(y0)), (int(x0 + w), int(y0 + h)), shade, -1)
    return bg


def _box(cx: float, cy: float, size: float, side: int) -> dict | None:
    """The visible part of an object's square box, in 1080x1080 coordinates; None when nothing is in view."""
    x0, y0 = max(cx - size / 2, 0), max(cy - size / 2, 0)
    x1, y1 = min(cx + size / 2, side), min(cy + size / 2, side)
    if x1 <= x0 or y1 <= y0:
        return None
    k = ORIGINAL_SIZE / side
    x, y = min(int(x0 * k), ORIGINAL_SIZE - 1), min(int(y0 * k), ORIGINAL_SIZE - 1)
    return {"x": x, "y": y, "w": max(1, int((x1 - x0) * k)), "h": max(1, int((y1 - y0) * k))}


def render_clean(look: ObjectLook, rng: np.random.Generator, n: int, side: int) -> Iterator[tuple[np.ndarray, dict]]:
    """Frames ``[side, side, 3]`` uint8 RGB of a clean video, with their annotation dicts."""
    sprite = _sprite(look, _SPRITE)
    bg = _background(rng, side, busy=False)
    phase, scale, spin = rng.uniform(0, 2 * np.pi, 2), rng.uniform(0.5, 0.7), rng.uniform(-40, 40)
    absent = int(rng.integers(0, max(1, n // 10) + 1))  # the first frames, before the camera finds the object
    for t in range(n):
        frame = bg.copy()
        u = t / max(n - 1, 1)
        present = t >= absent
        if present:
            cx = side * (0.5 + 0.08 * np.sin(2 * np.pi * u + phase[0]))
            cy = side * (0.5 + 0.08 * np.cos(2 * np.pi * u + phase[1]))
            _place(frame, sprite, cx, cy, side * scale * (1 + 0.15 * np.sin(3 * u + phase[0])), spin * u)
        blur = present and rng.random() < 0.1
        if blur:
            frame = cv2.GaussianBlur(frame, (0, 0), side / 90)
        if present:
            note = dict.fromkeys(ISSUES, False)
            note["blur_issue"] = bool(blur)
        else:
            note = {k: (True if k == "object_not_present_issue" else None) for k in ISSUES}
        yield np.clip(frame, 0, 255).astype(np.uint8), note


def object_frames(n: int, side: int, seed: int = 0) -> torch.Tensor:
    """``n`` uint8 frames ``[n, 3, side, side]`` of rendered objects (a few per object, each on its own background):
    photo-like inputs for checks that random noise would mislead."""
    rng = np.random.default_rng(seed)
    looks = _user_looks(rng, max(1, (n + 1) // 2))
    frames = [f for look in looks for f, _ in render_clean(look, rng, 8, side)][3::4]  # past the empty first frames
    return torch.from_numpy(np.stack(frames[:n])).permute(0, 3, 1, 2).contiguous()


def render_clutter(
    look: ObjectLook, others: list[ObjectLook], rng: np.random.Generator, n: int, side: int
) -> Iterator[tuple[np.ndarray, dict]]:
    """Frames of a clutter video: the object among the user's other objects on a wide scene.

    The camera sways around the object (drawn last, in front of the distractors, as the thing being filmed); a wide
    sway takes it out of view for some frames.
    """
    width = side * 3
    scene = _background(rng, width, busy=True)[:side]
    x = width / 2
    picks = rng.permutation(len(others))[: int(rng.integers(2, 5))] if others else []
    distractors = [
        (_sprite(others[i], _SPRITE), rng.uniform(0.1, 0.9) * width, side * rng.uniform(0.2, 0.8),
         side * rng.uniform(0.2, 0.32), rng.uniform(-30, 30))
        for i in picks
    ]  # fmt: skip
    target = (_sprite(look, _SPRITE), x, side * rng.uniform(0.35, 0.65), side * rng.uniform(0.35, 0.5), 0.0)
    sway, phase = side * rng.uniform(0.15, 0.85), rng.uniform(0, 2 * np.pi)
    for t in range(n):
        offset = x - side / 2 + sway * np.sin(2 * np.pi * t / max(n, 1) + phase)
        frame = scene[:, int(offset) : int(offset) + side].copy()
        for sprite, sx, sy, size, angle in distractors:
            _place(frame, sprite, sx - offset, sy, size, angle + t)
        sprite, sx, sy, size, _ = target
        visible = _place(frame, sprite, sx - offset, sy, size, 0.5 * t)
        present = visible >= 0.25
        note = {
            "object_bounding_box": _box(sx - offset, sy, size, side) if present else None,
            "object_not_present_issue": not present,
        }
        yield np.clip(frame, 0, 255).astype(np.uint8), note


def _video_id(rng: np.random.Generator) -> str:
    """43 base64url characters, like ORBIT ids: some start with '-' or hold '--' (parsers must cope)."""
    raw = base64.urlsafe_b64encode(rng.bytes(33)).decode()[:43]
    roll = rng.random()
    if roll < 0.15:
        raw = "-" + raw[1:]
    elif roll < 0.3:
        raw = raw[:10] + "--" + raw[12:]
    return raw


def _user_looks(rng: np.random.Generator, k: int) -> list[ObjectLook]:
    """k distinct objects, two of them twins that differ only in fine detail (when k >= 3)."""
    looks: list[ObjectLook] = []
    names: set[str] = set()
    colours = list(COLOURS)
    while len(looks) < k:
        if len(looks) == 0 and k >= 3:
            shape, colour, kind = SHAPES[rng.integers(len(SHAPES))], colours[rng.integers(len(colours))], "keys"
            texture = "solid"
            for fine, owner in (("stripes", "house"), ("checks", "car")):
                looks.append(ObjectLook(f"{owner} {kind}", shape, COLOURS[colour], texture, fine))
                names.add(f"{owner} {kind}")
            continue
        colour = colours[rng.integers(len(colours))]
        name = f"{colour} {KINDS[rng.integers(len(KINDS))]}"
        if name in names:
            continue
        names.add(name)
        texture = TEXTURES[rng.integers(len(TEXTURES))]
        looks.append(ObjectLook(name, SHAPES[rng.integers(len(SHAPES))], COLOURS[colour], texture, None))
    return looks


class _Writer:
    """Writes one video as a JPEG frame folder or an mp4 file."""

    def __init__(self, directory: Path, name: str, as_file: bool, side: int) -> None:
        self.as_file = as_file
        self.count = 0
        if as_file:
            self.path = directory / f"{name}.mp4"
            self.out = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (side, side))
            if not self.out.isOpened():
                raise OrbitLiteError(f"{self.path}: OpenCV cannot write mp4 here; use --format frames")
        else:
            self.path = directory / name
            self.path.mkdir(parents=True)
        self.name = name

    def write(self, rgb: np.ndarray) -> None:
        self.count += 1
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        if self.as_file:
            self.out.write(bgr)
        else:
            _, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
            (self.path / f"{self.name}-{self.count:05d}.jpg").write_bytes(buf.tobytes())

    def close(self) -> None:
        if self.as_file:
            self.out.release()


def synthesize(
    out: Path | str,
    preset: str = "demo",
    frame_size: int | None = None,
    fmt: str = "frames",
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> SynthSummary:
    """Write a synthetic ORBIT tree to ``out`` (which must not exist or be empty). Deterministic in all arguments.

    Args:
        out: destination folder.
        preset: one of :data:`PRESETS`.
        frame_size: frame side in pixels (default: the preset's).
        fmt: "frames" (JPEG folders), "videos" (mp4 files) or "mixed" (alternating, per video).
        seed: random seed.
        progress: called with the number of videos written so far.
    """
    if preset not in PRESETS:
        raise OrbitLiteError(f"unknown preset {preset!r}; available: {', '.join(PRESETS)}")
    if fmt not in FORMATS:
        raise OrbitLiteError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    spec = PRESETS[preset]
    side = frame_size or spec.frame_size
    if seed < 0:
        raise OrbitLiteError(f"--seed must be >= 0, got {seed}")
    if side < 16:
        raise OrbitLiteError(f"--frame-size must be at least 16, got {side}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OrbitLiteError(f"{out} already exists and is not an empty folder; choose a new folder")
    # Written beside ``out`` and renamed into place: an interrupted run leaves no tree that looks complete (``make
    # demo`` trusts any tree it finds), only a hidden ``.<out>.partial.*`` folder, removed unless the process is killed.
    for left in sorted(out.parent.glob(f".{glob.escape(out.name)}.partial.*")) if out.parent.is_dir() else ():
        log.warning("%s was left by an interrupted `data synth` (synthetic frames only); remove it when no synth is "
                    "running", left)  # fmt: skip
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial.", dir=out.parent))
    except OSError as e:
        raise write_failure(out, e) from None
    try:
        videos, frames = _write_tree(tmp, spec, side, fmt, seed, progress)
        tmp.chmod(umask_mode(0o777))  # mkdtemp makes it private; the tree is the user's, as mkdir would make it
        tmp.rename(out)
    except OSError as e:
        written = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file())
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_failure(out, e, written, more_than=True) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SynthSummary(out, dict(spec.users), videos, frames)


def _write_tree(
    out: Path, spec: Preset, side: int, fmt: str, seed: int, progress: Callable[[int], None] | None
) -> tuple[int, int]:
    """Every video, frame and annotation file of ``spec`` under ``out``; returns (videos, frames) written."""
    photos = None
    if spec.content != "shapes":
        from orbit_lite.data.photos import PhotoContent  # scikit-image only when its photos are used

        photos = PhotoContent(side, spec.content)
    root_rng = np.random.default_rng(seed)
    user_numbers = root_rng.choice(np.arange(100, 1000), size=sum(spec.users.values()), replace=False)
    videos = frames = 0
    numbers = iter(user_numbers)
    for split, n_users in spec.users.items():
        annotation_dir = out / "annotations" / split
        annotation_dir.mkdir(parents=True)
        for _ in range(n_users):
            user = f"P{next(numbers)}"
            rng = np.random.default_rng([seed, int(user[1:])])
            objects_range, clean_range, clutter_range = spec.ranges(split)
            k = int(rng.integers(objects_range[0], objects_range[1] + 1))
            objects = _user_objects(rng, k, side, photos, split)
            for name, clean, clutter in objects:
                for vtype, (lo, hi), n in (
                    ("clean", clean_range, spec.clean_frames),
                    ("clutter", clutter_range, spec.clutter_frames),
                ):
                    directory = out / split / user / name / vtype
                    directory.mkdir(parents=True, exist_ok=True)
                    for _ in range(int(rng.integers(lo, hi + 1))):
                        video = f"{user}--{name.replace(' ', '-')}--{vtype}--{_video_id(rng)}"
                        as_file = fmt == "videos" or (fmt == "mixed" and videos % 2 == 1)
                        writer = _Writer(directory, video, as_file, side)
                        frames_of = clean(rng, n) if vtype == "clean" else clutter(rng, n)
                        notes = {}
                        for rgb, note in frames_of:
                            writer.write(rgb)
                            notes[f"{video}-{writer.count:05d}.jpg"] = note
                        writer.close()
                        (annotation_dir / f"{video}.json").write_text(json.dumps(notes))
                        videos += 1
                        frames += writer.count
                        if progress is not None:
                            progress(videos)
    return videos, frames


Renderer = Callable[[np.random.Generator, int], Iterator[tuple[np.ndarray, dict]]]


def _user_objects(
    rng: np.random.Generator, k: int, side: int, photos: PhotoContent | None, split: str
) -> list[tuple[str, Renderer, Renderer]]:
    """A user's k objects: (name, clean video renderer, clutter video renderer)."""
    if photos is not None:
        names = photos.user_objects(rng, k, split)
        return [(name, partial(photos.clean, name), partial(photos.clutter, name, names)) for name in names]
    looks = _user_looks(rng, k)
    return [
        (look.name, partial(render_clean, look, side=side),
         partial(render_clutter, look, [other for other in looks if other is not look], side=side))
        for look in looks
    ]  # fmt: skip


def expected_videos(preset: str) -> int:
    """An upper bound on the number of videos a preset writes (for progress bars)."""
    p = PRESETS[preset]
    total = 0
    for split, users in p.users.items():
        objects, clean, clutter = p.ranges(split)
        total += users * objects[1] * (clean[1] + clutter[1])
    return total
