"""Drawing the synthetic objects and scenes: each object's look (shape, colour, texture, and the twins' fine
pattern), its clean frames under camera motion and its clutter frames among the user's other objects, with the
annotations of each frame (:mod:`orbit_lite.data.synth` writes them as an ORBIT tree)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch

from orbit_lite.tags import ISSUES

if TYPE_CHECKING:
    pass

SHAPES = ("circle", "square", "triangle", "star", "hexagon", "cross", "diamond", "ring")
COLOURS = {
    "red": (200, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 70, 200),
    "yellow": (225, 200, 40),
    "purple": (130, 50, 170),
    "orange": (235, 130, 30),
    "teal": (30, 150, 150),
    "pink": (230, 120, 170),
    "white": (235, 235, 235),
    "black": (30, 30, 30),
    "brown": (120, 75, 40),
    "grey": (128, 128, 128),
}
TEXTURES = ("solid", "stripes", "dots", "checker")
KINDS = ("mug", "keys", "wallet", "remote", "bottle", "headphones", "cane", "phone", "glasses", "bag", "book", "hat")
ORIGINAL_SIZE = 1080  # annotation boxes are in the coordinates of ORBIT's 1080x1080 originals
_SPRITE = 192  # sprite resolution: fine enough for the twins' detail at 224 px


@dataclass(frozen=True)
class ObjectLook:
    name: str
    shape: str
    colour: tuple[int, int, int]
    texture: str
    fine: str | None  # None, "stripes" or "checks": the fine detail that alone tells twins apart


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
    looks = user_looks(rng, max(1, (n + 1) // 2))
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
        (
            _sprite(others[i], _SPRITE),
            rng.uniform(0.1, 0.9) * width,
            side * rng.uniform(0.2, 0.8),
            side * rng.uniform(0.2, 0.32),
            rng.uniform(-30, 30),
        )
        for i in picks
    ]
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


def user_looks(rng: np.random.Generator, k: int) -> list[ObjectLook]:
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
