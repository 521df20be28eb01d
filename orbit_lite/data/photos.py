"""Real pixels offline: ORBIT-style videos made from the photos that scikit-image bundles (``--preset photos``).

Each object is one photo's subject (a cat, a coffee cup, a rocket, a motorcycle, ...). A **clean video** is a smooth
camera path over the photo lying on a surface: zoom, pan, a small rotation, changing exposure, some blurred frames and
JPEG noise. A **clutter video** shows the object smaller, among patches of the other photos on a texture background
(grass, gravel or brick), sometimes partly covered by one of them, while the camera sways far enough to lose it for
some frames: those are annotated ``object_not_present_issue`` with no box, as ORBIT annotates them. The motorcycle is
photographed from two viewpoints: the left view teaches (clean), the right view is what the clutter videos show.

Two clutter styles (:data:`STYLES`), chosen by the preset's content: ``photos`` shows the object at 38-50% of the frame
side among 5-7 photos; ``photos-clutter`` shows it at ORBIT's scale, small in a busy frame, and splits the objects
between the training and the test users (see :data:`SMALL_CLUTTER`).

scikit-image is imported only here, and only when the preset is used; without it the error says what to install.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np

from orbit_lite.errors import OrbitLiteError
from orbit_lite.tags import ISSUES

PACKAGE = "scikit-image"
ORIGINAL_SIZE = 1080  # annotation boxes are in the coordinates of ORBIT's 1080x1080 originals
BACKGROUNDS = ("grass.png", "gravel.png", "brick.png")


@dataclass(frozen=True)
class PhotoObject:
    """An object: the photo that teaches it, the photo clutter videos show, and the subject's crop (fractions)."""

    name: str
    teach: str
    clutter: str
    crop: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)  # x0, y0, x1, y1


OBJECTS = (
    PhotoObject("cat", "chelsea.png", "chelsea.png", (0.1, 0.0, 0.9, 1.0)),
    PhotoObject("coffee cup", "coffee.png", "coffee.png", (0.1, 0.0, 0.85, 1.0)),
    PhotoObject("rocket", "rocket.jpg", "rocket.jpg", (0.3, 0.05, 0.8, 1.0)),
    PhotoObject("motorcycle", "motorcycle_left.png", "motorcycle_right.png", (0.0, 0.25, 1.0, 1.0)),
    PhotoObject("astronaut", "astronaut.png", "astronaut.png"),
    PhotoObject("galaxy picture", "hubble_deep_field.jpg", "hubble_deep_field.jpg"),
    PhotoObject("retina scan", "retina.jpg", "retina.jpg"),
    PhotoObject("tissue slide", "ihc.png", "ihc.png"),
    PhotoObject("cameraman print", "camera.png", "camera.png"),
    PhotoObject("coin tray", "coins.png", "coins.png"),
    PhotoObject("logo sticker", "logo.png", "logo.png"),
    PhotoObject("colour wheel", "color.png", "color.png"),
)
BY_NAME = {obj.name: obj for obj in OBJECTS}
MAX_PHOTO_SIDE = 1024  # photos are read at 4x the frame side, up to this (scikit-image's photos are about 512 px)


@dataclass(frozen=True)
class ClutterStyle:
    """How a clutter video looks: the object's and the distractors' longest sides as fractions of the frame side,
    how many distractor photos lie around, how often one covers a corner of the object, and which objects each split's
    users own (None: every split draws from all of them)."""

    object_side: tuple[float, float]
    distractors: tuple[int, int]  # low inclusive, high exclusive (rng.integers)
    distractor_side: tuple[float, float]
    occluded: float
    pools: dict[str, tuple[str, ...]] | None = None
    extras: tuple[str, ...] = ()  # photos that only ever lie around (never an object anyone owns)


# ORBIT's clutter videos film the object where it lives, among the other things on a table, a shelf or the floor,
# from a standing person's distance, on a 1080 px phone frame: the object is one of many things in view and covers a
# small share of it. Here its longest side is 12-36% of the frame side (about 1-13% of the area), so at the 84 px
# input it spans 10-30 pixels and at 224 px 27-81: the regime where the frame size decides what the network sees.
# The twelve photos are split: the test users own TEST_OBJECTS, the training and validation users the other six, so
# that meta-training never sees a test object. The things lying around are, as in ORBIT, not the user's other
# objects (which would make "which one is meant" a guess at any frame size): the pool's objects the user does not own
# and scikit-image's other photos (a page of text, the moon, a clock, cells, ...), which nobody owns.
EXTRAS = ("page.png", "text.png", "moon.png", "clock_motion.png", "cell.png", "microaneurysms.png", "horse.png")
TEST_OBJECTS = ("cat", "coffee cup", "rocket", "motorcycle", "astronaut", "colour wheel")
SMALL_CLUTTER = ClutterStyle(
    object_side=(0.12, 0.36),
    distractors=(8, 11),
    distractor_side=(0.12, 0.4),
    occluded=0.5,
    pools={
        "test": TEST_OBJECTS,
        "train": tuple(o.name for o in OBJECTS if o.name not in TEST_OBJECTS),
        "validation": tuple(o.name for o in OBJECTS if o.name not in TEST_OBJECTS),
    },
    extras=EXTRAS,
)
STYLES = {
    "photos": ClutterStyle(object_side=(0.38, 0.5), distractors=(5, 8), distractor_side=(0.25, 0.42), occluded=0.6),
    "photos-clutter": SMALL_CLUTTER,
}


def data_dir() -> Path:
    """scikit-image's folder of bundled photos.

    Raises:
        OrbitLiteError: scikit-image is not installed (one line naming the package).
    """
    try:
        import skimage.data
    except ImportError:
        raise OrbitLiteError(
            f"--preset photos needs the Python package {PACKAGE} (its bundled photos), which is not installed; "
            f"fix: pip install '{PACKAGE}' (or install orbit-lite with its 'photos' extra: pip install -e '.[photos]')"
        ) from None
    return Path(skimage.data.data_dir)


def _read(path: Path, longest: int) -> np.ndarray:
    """``[H, W, 3]`` float32 RGB with its longest side resized to ``longest`` (grey photos become three channels)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise OrbitLiteError(f"cannot read {path}; fix: reinstall {PACKAGE}")
    scale = longest / max(bgr.shape[:2])
    size = (max(1, round(bgr.shape[1] * scale)), max(1, round(bgr.shape[0] * scale)))
    return cv2.cvtColor(cv2.resize(bgr, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB).astype(np.float32)


def _smooth(rng: np.random.Generator, n: int, lo: float, hi: float) -> np.ndarray:
    """A smooth random curve of ``n`` values in [lo, hi]: two slow sinusoids with random phases."""
    t = np.linspace(0.0, 1.0, n)
    f, phase, mix = rng.uniform(0.3, 1.2, 2), rng.uniform(0, 2 * np.pi, 2), rng.uniform(0.3, 0.7)
    curve = mix * np.sin(2 * np.pi * f[0] * t + phase[0]) + (1 - mix) * np.sin(2 * np.pi * f[1] * t + phase[1])
    return lo + (hi - lo) * (curve + 1) / 2


def _camera(center: tuple[float, float], zoom: float, angle: float, side: int) -> np.ndarray:
    """The 2x3 affine taking a scene point ``center`` to the middle of a ``side`` frame, zoomed and rotated."""
    m = cv2.getRotationMatrix2D((float(center[0]), float(center[1])), float(angle), float(zoom))
    m[:, 2] += (side / 2 - center[0], side / 2 - center[1])
    return m


def _finish(frame: np.ndarray, rng: np.random.Generator, gain: float, blur: bool, quality: int) -> np.ndarray:
    """Exposure, optional motion blur, sensor noise and JPEG compression of one frame: ``[S, S, 3]`` uint8."""
    frame = frame * gain
    if blur:
        k = max(3, frame.shape[0] // 24) | 1
        kernel = np.zeros((k, k), np.float32)
        kernel[k // 2] = 1.0 / k
        kernel = cv2.warpAffine(kernel, cv2.getRotationMatrix2D((k / 2, k / 2), float(rng.uniform(0, 180)), 1), (k, k))
        frame = cv2.filter2D(frame, -1, kernel / max(kernel.sum(), 1e-6))
    frame = frame + rng.normal(0, 2.0, frame.shape).astype(np.float32)
    rgb = np.clip(frame, 0, 255).astype(np.uint8)
    _, buf = cv2.imencode(".jpg", rgb, [cv2.IMWRITE_JPEG_QUALITY, quality])  # channel order is irrelevant here
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)


class PhotoContent:
    """The photo objects and their videos at frame side ``side`` in clutter style ``style`` (photos are read once,
    on first use)."""

    def __init__(self, side: int, style: str = "photos") -> None:
        self.side = side
        self.style = STYLES[style]
        self.folder = data_dir()

    @cached_property
    def _photos(self) -> dict[str, np.ndarray]:
        files = {obj.teach for obj in OBJECTS} | {obj.clutter for obj in OBJECTS} | set(self.style.extras)
        photos = {}
        for file in sorted(files):
            crop = next((o.crop for o in OBJECTS if file in (o.teach, o.clutter)), (0.0, 0.0, 1.0, 1.0))
            image = _read(self.folder / file, min(4 * self.side, MAX_PHOTO_SIDE))
            h, w = image.shape[:2]
            x0, y0, x1, y1 = crop
            photos[file] = np.ascontiguousarray(image[int(y0 * h) : int(y1 * h), int(x0 * w) : int(x1 * w)])
        return photos

    @cached_property
    def _textures(self) -> list[np.ndarray]:
        return [_read(self.folder / name, 512) for name in BACKGROUNDS]

    def user_objects(self, rng: np.random.Generator, k: int, split: str = "train") -> list[str]:
        """``k`` distinct objects of the split's pool; different users draw from the same few photos, so objects repeat
        across users."""
        pool = self.style.pools[split] if self.style.pools else tuple(o.name for o in OBJECTS)
        return [pool[i] for i in sorted(rng.choice(len(pool), size=min(k, len(pool)), replace=False))]

    def _surface(self, rng: np.random.Generator, width: int, height: int, texture: int, contrast: float) -> np.ndarray:
        """A tinted texture (grass, gravel or brick) covering ``[height, width, 3]``."""
        grey = self._textures[texture]
        scale = rng.uniform(0.5, 1.0) * max(width, height) / 512
        tile = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        reps = (height // tile.shape[0] + 1, width // tile.shape[1] + 1, 1)
        surface = np.tile(tile, reps)[:height, :width]
        mean = surface.mean()
        tint = rng.uniform(0.6, 1.2, 3).astype(np.float32) * rng.uniform(90, 160) / max(mean, 1.0)
        return np.clip(mean + (surface - mean) * contrast, 0, 255) * tint

    @staticmethod
    def _paste(canvas: np.ndarray, photo: np.ndarray, cx: float, cy: float, longest: float, mask: np.ndarray | None):
        """Draw ``photo`` (longest side ``longest``) centred at (cx, cy) with a thin white border; mark ``mask``."""
        scale = longest / max(photo.shape[:2])
        w, h = max(2, round(photo.shape[1] * scale)), max(2, round(photo.shape[0] * scale))
        patch = cv2.copyMakeBorder(
            cv2.resize(photo, (w, h), interpolation=cv2.INTER_AREA),
            2,
            2,
            2,
            2,
            cv2.BORDER_CONSTANT,
            value=(235, 235, 230),
        )
        x0, y0 = round(cx - patch.shape[1] / 2), round(cy - patch.shape[0] / 2)
        H, W = canvas.shape[:2]
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + patch.shape[1], W), min(y0 + patch.shape[0], H)
        if cx1 <= cx0 or cy1 <= cy0:
            return
        canvas[cy0:cy1, cx0:cx1] = patch[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
        if mask is not None:
            mask[cy0:cy1, cx0:cx1] = 1.0

    def clean(self, name: str, rng: np.random.Generator, n: int) -> Iterator[tuple[np.ndarray, dict]]:
        """A clean video of ``name``: the teaching photo on a plain surface under a smooth camera path."""
        side = self.side
        scene = self._surface(rng, 2 * side, 2 * side, int(rng.integers(len(BACKGROUNDS))), rng.uniform(0.15, 0.35))
        self._paste(scene, self._photos[BY_NAME[name].teach], side, side, side * rng.uniform(1.0, 1.3), None)
        zoom, angle = _smooth(rng, n, 0.8, 1.35), _smooth(rng, n, -8, 8)
        pan_x, pan_y = _smooth(rng, n, -0.12, 0.12) * side, _smooth(rng, n, -0.12, 0.12) * side
        gain, quality = _smooth(rng, n, rng.uniform(0.65, 0.95), rng.uniform(1.05, 1.35)), int(rng.integers(35, 80))
        for t in range(n):
            m = _camera((side + pan_x[t], side + pan_y[t]), zoom[t], angle[t], side)
            view = cv2.warpAffine(scene, m, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            blur = bool(rng.random() < 0.12)
            note = dict.fromkeys(ISSUES, False)
            note.update(
                blur_issue=blur, overexposed_issue=bool(gain[t] > 1.25), underexposed_issue=bool(gain[t] < 0.75)
            )
            yield _finish(view, rng, gain[t], blur, quality), note

    def distractors(self, name: str, owned: list[str]) -> list[str]:
        """The photos (file names) that may lie around ``name`` in a clutter video of a user owning ``owned``."""
        if self.style.pools is None:  # the photos preset: any other object, the user's own included
            return [o.clutter for o in OBJECTS if o.name != name]
        pool = next(p for p in self.style.pools.values() if name in p)
        return [BY_NAME[n].clutter for n in pool if n not in owned and n != name] + list(self.style.extras)

    def clutter(
        self, name: str, owned: list[str], rng: np.random.Generator, n: int
    ) -> Iterator[tuple[np.ndarray, dict]]:
        """A clutter video: ``name`` smaller, among patches of other photos, partly occluded at times, lost from view
        for some frames while the camera sways."""
        side = self.side
        width, height = int(2.8 * side), int(1.3 * side)
        scene = self._surface(rng, width, height, int(rng.integers(len(BACKGROUNDS))), rng.uniform(0.6, 1.0))
        others = self.distractors(name, owned)
        tx, ty = width / 2 + rng.uniform(-0.15, 0.15) * side, height / 2 + rng.uniform(-0.1, 0.1) * side
        style = self.style
        size = side * rng.uniform(*style.object_side)
        for i in rng.permutation(len(others))[: int(rng.integers(*style.distractors))]:  # some far from the target
            x = rng.choice([rng.uniform(0.1, 0.35), rng.uniform(0.65, 0.9), rng.uniform(0.3, 0.7)]) * width
            self._paste(
                scene,
                self._photos[others[i]],
                x,
                rng.uniform(0.2, 0.8) * height,
                side * rng.uniform(*style.distractor_side),
                None,
            )
        mask = np.zeros(scene.shape[:2], np.float32)
        self._paste(scene, self._photos[BY_NAME[name].clutter], tx, ty, size, mask)
        if rng.random() < style.occluded:  # another photo lies over a corner of the object
            corner = rng.choice([-1, 1], 2) * size * rng.uniform(0.45, 0.6)
            cover = others[int(rng.integers(len(others)))]
            self._paste(scene, self._photos[cover], tx + corner[0], ty + corner[1], size * 0.6, None)
        total = float(mask.sum())
        # the camera sways around the object and, once, pans away far enough to lose it for a few frames
        start, span = int(rng.integers(n // 4, n // 2)), int(rng.integers(12, 20))
        away = np.zeros(n)
        steps = np.arange(span)
        away[start : start + span] = np.sin(np.pi * steps / (span - 1))[: len(away[start : start + span])]
        direction = rng.choice([-1.0, 1.0])
        sway_x, sway_y = _smooth(rng, n, -0.15, 0.15) * side, _smooth(rng, n, -0.06, 0.06) * side
        zoom, angle = _smooth(rng, n, 0.9, 1.15), _smooth(rng, n, -5, 5)
        gain, quality = _smooth(rng, n, 0.75, 1.2), int(rng.integers(35, 80))
        for t in range(n):
            cx = tx + sway_x[t] + direction * away[t] * 0.95 * side
            m = _camera((cx, ty + sway_y[t]), zoom[t], angle[t], side)
            view = cv2.warpAffine(scene, m, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            seen = cv2.warpAffine(mask, m, (side, side), flags=cv2.INTER_NEAREST)
            present = float(seen.sum()) >= 0.25 * total * zoom[t] ** 2
            note = {"object_bounding_box": _box(seen) if present else None, "object_not_present_issue": not present}
            yield _finish(view, rng, gain[t], bool(rng.random() < 0.08), quality), note


def _box(seen: np.ndarray) -> dict:
    """The visible object's box in ORBIT's 1080x1080 coordinates."""
    ys, xs = np.nonzero(seen)
    k = ORIGINAL_SIZE / seen.shape[0]
    x0, y0 = int(xs.min() * k), int(ys.min() * k)
    return {"x": x0, "y": y0, "w": max(1, int((xs.max() + 1) * k) - x0), "h": max(1, int((ys.max() + 1) * k) - y0)}
