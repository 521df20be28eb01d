"""Frame folders decode on several threads with the same pixels, and the first corrupt frame is the one named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from orbit_lite.data.layout import index_tree
from orbit_lite.data.video import FrameReader
from orbit_lite.errors import CorruptMediaError


def test_threads_decode_the_same_frames_in_the_same_order(tiny_frames: Path) -> None:
    video = next(v for v in index_tree(tiny_frames).videos() if v.video_type == "clutter")
    positions = np.array([40, 3, 3, 77, 12, 0, 65, 21, 8, 50, 33, 79])
    one = FrameReader(32, threads=1).read(video, positions)
    four = FrameReader(32, threads=4).read(video, positions)
    assert torch.equal(one, four)
    assert torch.equal(four[1], four[2])  # a repeated position is decoded once and copied


def test_the_first_corrupt_frame_by_position_is_reported(tiny_copy: Path) -> None:
    video = next(v for v in index_tree(tiny_copy).videos() if v.video_type == "clutter")
    for position in (30, 9):
        video.frames.path(position).write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(CorruptMediaError) as caught:
        FrameReader(32, threads=4).read(video, np.arange(0, 40))
    assert str(video.frames.path(9)) in str(caught.value)
