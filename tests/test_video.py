from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from orbit_lite.data.decoders import probe_frame_count
from orbit_lite.data.layout import index_tree
from orbit_lite.data.video import FrameReader, fit_square, jpeg_side, read_image, read_video_file
from orbit_lite.errors import CorruptMediaError


def test_fit_square_crops_the_centre_then_resizes() -> None:
    image = np.zeros((40, 80, 3), np.uint8)
    image[:, 20:60] = 255  # the central 40x40 square is white, the sides black
    out = fit_square(image, 20)
    assert out.shape == (20, 20, 3) and out.min() == 255


def test_already_sized_frames_pass_untouched() -> None:
    image = np.random.default_rng(0).integers(0, 255, (24, 24, 3), dtype=np.uint8)
    assert fit_square(image, 24) is image


@pytest.mark.parametrize("kind", ["gray", "rgba", "wide"])
def test_any_image_becomes_rgb_square(tmp_path: Path, kind: str) -> None:
    if kind == "gray":
        image = np.full((30, 30), 200, np.uint8)
    elif kind == "rgba":
        image = np.zeros((30, 30, 4), np.uint8)
        image[..., 2] = 255  # red in BGR(A) order
        image[..., 3] = 255
    else:
        image = np.zeros((30, 90, 3), np.uint8)
        image[..., 0] = 255  # blue
    path = tmp_path / "img.png"
    cv2.imwrite(str(path), image)
    out = read_image(path, 16)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    if kind == "gray":
        assert (out == 200).all()
    elif kind == "rgba":
        assert (out[..., 0] == 255).all() and (out[..., 1:] == 0).all()
    else:
        assert (out[..., 2] == 255).all() and (out[..., :2] == 0).all()


def test_reader_returns_requested_positions_in_order(tiny_frames: Path) -> None:
    video = next(v for v in index_tree(tiny_frames).videos() if v.video_type == "clutter")
    reader = FrameReader(32)
    frames = reader.read(video, [5, 0, 5, 2])
    assert frames.shape == (4, 3, 32, 32) and frames.dtype == torch.uint8
    assert frames.permute(0, 2, 3, 1).is_contiguous()  # a channels-last view of the decoded pixels
    torch.testing.assert_close(frames[0], frames[2])
    one = reader.read(video, [2])
    torch.testing.assert_close(frames[3], one[0])
    direct = cv2.cvtColor(cv2.imread(str(video.frames.path(0))), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(frames[1].permute(1, 2, 0).numpy(), direct)  # 32 px: decoded untouched


def test_reader_resizes_on_the_fly(tiny_frames: Path) -> None:
    video = next(index_tree(tiny_frames).videos())
    small = FrameReader(16).read(video, [0, 1])
    big = FrameReader(64).read(video, [0, 1])
    assert small.shape == (2, 3, 16, 16) and big.shape == (2, 3, 64, 64)
    down = torch.nn.functional.interpolate(big.float(), size=16, mode="area")
    assert (down - small.float()).abs().mean() < 8


@pytest.mark.video
def test_video_files_decode_like_frame_folders(tiny_frames: Path, tiny_videos: Path) -> None:
    frames_videos = list(index_tree(tiny_frames).videos())
    file_videos = list(index_tree(tiny_videos).videos())
    reader = FrameReader(32)

    def gap(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x - y).abs().mean((1, 2, 3))

    compared = 0
    for a, b in list(zip(frames_videos, file_videos, strict=True))[:6]:
        positions = np.arange(1, a.num_frames - 1, 3)
        fa, fb = reader.read(a, positions).float(), reader.read(b, positions).float()
        assert fa.shape == fb.shape
        assert (gap(fa, fb) < 12).all()  # JPEG q95 vs mpeg4: same content within codec tolerance
        # ... and the same frame, not a neighbour: frame i of the file is closer to frame i of the folder than frames
        # i - 1 and i + 1 are, wherever the neighbours differ from it (the camera moves between them).
        for step in (-1, 1):
            neighbour = reader.read(b, positions + step).float()
            moved = gap(reader.read(a, positions + step).float(), fa) > 2
            assert (gap(fa, fb)[moved] < gap(fa, neighbour)[moved]).all()
            compared += int(moved.sum())
    assert compared > 20


def _write_mp4(path: Path, side: int, n: int) -> np.ndarray:
    frames = np.random.default_rng(0).integers(0, 255, (n, 8, 8, 3), dtype=np.uint8)
    frames = np.stack([cv2.resize(f, (side, side), interpolation=cv2.INTER_NEAREST) for f in frames])
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (side, side))
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return frames


@pytest.mark.video
def test_opencv_fallback_matches_decord(tmp_path: Path) -> None:
    path = tmp_path / "me" / "mug" / "clip.mp4"
    path.parent.mkdir(parents=True)
    truth = torch.from_numpy(_write_mp4(path, 64, 12)).permute(0, 3, 1, 2).float()
    video = index_tree(tmp_path / "me").users()[0].objects[0].clean[0]
    assert video.is_file and video.num_frames == 12
    positions = [0, 3, 7, 11]
    a = FrameReader(64, "decord").read(video, positions).float()
    b = FrameReader(64, "opencv").read(video, positions).float()
    assert (a - b).abs().mean() < 3
    assert (b - truth[positions]).abs().mean() < 12


@pytest.mark.video
def test_auto_backend_falls_back_where_decord_fails(tmp_path: Path) -> None:
    # decord cannot copy out some small frame sizes (48x48 here); "auto" must still read them through OpenCV.
    path = tmp_path / "odd.mp4"
    truth = torch.from_numpy(_write_mp4(path, 48, 6)).permute(0, 3, 1, 2).float()
    frames = read_video_file(path, 48)
    assert frames.shape == (6, 3, 48, 48)
    assert (frames.float() - truth).abs().mean() < 12


def test_truncated_and_garbage_frames_raise_naming_the_file(tiny_copy: Path) -> None:
    video = next(index_tree(tiny_copy).videos())
    path = video.frames.path(1)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptMediaError, match="truncated JPEG") as info:
        FrameReader(32).read(video, [1])
    assert info.value.path == path
    path.write_bytes(b"not an image at all")
    with pytest.raises(CorruptMediaError, match="not a decodable image"):
        FrameReader(32).read(video, [0, 1])


@pytest.mark.video
def test_corrupt_video_file_raises(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(CorruptMediaError) as info:
        probe_frame_count(bad)
    assert info.value.path == bad


def test_positions_out_of_range_are_rejected(tiny_frames: Path) -> None:
    video = next(index_tree(tiny_frames).videos())
    with pytest.raises(IndexError):
        FrameReader(32).read(video, [video.num_frames])


def test_jpeg_header_gives_the_short_side() -> None:
    for shape in ((90, 60), (40, 130)):
        _, data = cv2.imencode(".jpg", np.zeros((*shape, 3), np.uint8))
        assert jpeg_side(data.tobytes()) == min(shape)
    _, png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    assert jpeg_side(png.tobytes()) is None


def test_a_frame_decodes_the_same_whatever_was_read_before(tmp_path: Path) -> None:
    # Large frames decode at a reduced DCT scale; the scale must not depend on the reader's history.
    folder = tmp_path / "me" / "mug" / "v"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in (1, 2):
        image = cv2.resize(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8), (200, 200))
        cv2.imwrite(str(folder / f"v-{i:05d}.jpg"), image)
    video = index_tree(tmp_path / "me").users()[0].objects[0].clean[0]
    first = FrameReader(48).read(video, [1])
    warmed = FrameReader(48)
    warmed.read(video, [0])
    torch.testing.assert_close(warmed.read(video, [1]), first, rtol=0, atol=0)


def test_broken_video_files_make_no_native_noise(tmp_path: Path) -> None:
    """FFmpeg and decord print nothing of their own: only the one-line error that names the file is shown."""
    import subprocess
    import sys

    zeros = tmp_path / "zeros.mp4"
    zeros.write_bytes(b"\x00" * 4096)
    code = (
        "from orbit_lite.data.decoders import probe_frame_count\n"
        "from orbit_lite.errors import CorruptMediaError\n"
        "for backend in ('auto', 'decord', 'opencv'):\n"
        "    try:\n"
        f"        probe_frame_count({str(zeros)!r}, backend)\n"
        "    except CorruptMediaError as e:\n"
        "        print(e.reason)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stderr == ""
    assert len(run.stdout.splitlines()) == 3
