"""The synthetic datasets' sizes, by name: what ``orbit-lite data synth --preset`` offers.

Kept apart from synth.py (OpenCV, NumPy) so that the command line lists the presets without importing either.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    """Shape of a synthetic dataset: users per split, objects per user, videos per object, frames per video.

    ``per_split`` overrides (objects, clean videos, clutter videos) ranges for some splits.
    """

    users: dict[str, int]
    objects: tuple[int, int]  # min, max per user
    clean_videos: tuple[int, int]
    clutter_videos: tuple[int, int]
    clean_frames: int
    clutter_frames: int
    frame_size: int
    per_split: dict[str, tuple[tuple[int, int], tuple[int, int], tuple[int, int]]] | None = None
    # "shapes": drawn objects; "photos", "photos-clutter": scikit-image's bundled photos in that clutter style
    # (orbit_lite.data.photos.STYLES)
    content: str = "shapes"

    def ranges(self, split: str) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        if self.per_split and split in self.per_split:
            return self.per_split[split]
        return self.objects, self.clean_videos, self.clutter_videos


PRESETS = {
    "tiny": Preset({"train": 2, "validation": 1, "test": 1}, (3, 3), (2, 2), (1, 1), 12, 80, 32),
    "small": Preset({"train": 4, "validation": 2, "test": 2}, (3, 5), (2, 3), (1, 2), 24, 72, 64),
    # clean videos of 50 frames: long enough to be scored as queries by `evaluate --mode clean` (min_target_frames)
    "demo": Preset({"train": 10, "validation": 3, "test": 4}, (4, 6), (3, 4), (1, 2), 50, 75, 96),
    # clutter videos longer than the protocol's 200 sampled frames, so tasks sample different frames
    "long": Preset({"train": 2, "validation": 1, "test": 2}, (4, 4), (2, 2), (1, 1), 60, 320, 64),
    # ORBIT's shape: 44/6/17 users, ~486 objects, ~3,800 videos with ORBIT's clean/clutter mix
    # per object; short, small videos so that it fits on a laptop's disk (clutter videos keep the 50 frames that
    # the evaluation protocol needs).
    "orbit-scale": Preset(
        {"train": 44, "validation": 6, "test": 17},
        (3, 10),
        (2, 11),
        (1, 2),
        8,
        64,
        32,
        per_split={"validation": ((5, 11), (3, 8), (1, 2)), "test": ((5, 13), (2, 9), (1, 3))},
    ),
    # Real photos (needs scikit-image): 224 px frames for pretrained backbones; clutter videos keep over 50 frames
    # with the object in view, as the evaluation protocol needs.
    "photos": Preset({"train": 4, "validation": 2, "test": 4}, (3, 5), (2, 3), (1, 1), 24, 64, 224, content="photos"),
    # The same photos at ORBIT's object scale: the object small in a busy clutter frame (orbit_lite.data.photos
    # .SMALL_CLUTTER), written at 448 px, above the largest frame size compared (320), for the pipeline to downscale
    # as it downscales ORBIT's 1080 px originals; the training users' objects are not the test users'. Two clutter
    # videos for most test objects: more scored videos, narrower intervals.
    "photos-clutter": Preset(
        {"train": 6, "validation": 2, "test": 4},
        (3, 5),
        (2, 3),
        (1, 1),
        24,
        64,
        448,
        per_split={"test": ((3, 5), (2, 3), (1, 2))},
        content="photos-clutter",
    ),
}
