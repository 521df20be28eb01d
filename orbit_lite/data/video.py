"""Frame sources to uint8 tensors: JPEG folders and video files, resized on the fly.

Every reader returns ``[T, 3, S, S]`` uint8 RGB for the requested frame positions (0-based, temporal order). Frames
are centre-cropped to a square and resized to ``S``; frames already ``S x S`` are passed through untouched. Only the
distinct positions asked for are decoded, once each, however often they repeat (clip padding, frame history).

JPEGs are decoded with OpenCV's libjpeg-turbo, using DCT-domain downscaling (``IMREAD_REDUCED_COLOR_k``) when the
source is at least twice the target size: a 1080x1080 original decodes at 270x270 for 224 frames. Video files go
through decord when it is importable and opens the file, else OpenCV's FFmpeg backend.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch

from orbit_lite.data.decoders import decord, decord_reader
from orbit_lite.data.layout import Video
from orbit_lite.errors import CorruptMediaError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "decord", "opencv")
_REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))


def fit_square(image: np.ndarray, size: int, out: np.ndarray | None = None) -> np.ndarray:
    """Centre-crop ``[H, W, 3]`` to a square and resize it to ``[size, size, 3]`` (same channel order).

    Area interpolation when shrinking (no aliasing), bilinear when enlarging; untouched when already square at size.
    """
    h, w = image.shape[:2]
    if h != w:
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        image = image[top : top + side, left : left + side]
    if image.shape[0] == size:
        if out is None:
            return image
        out[...] = image
        return out
    interp = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), dst=out, interpolation=interp)


def jpeg_side(data: bytes) -> int | None:
    """The short side of a JPEG read from its frame header (SOFn marker), or None when it is not a JPEG."""
    if data[:2] != b"\xff\xd8":
        return None
    i, n = 2, len(data)
    while i + 9 < n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame: height, width follow
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            return min(height, width)
        i += 2 + length
    return None


def _decode_flag(source_side: int | None, size: int) -> int:
    if source_side is not None:
        for k, flag in _REDUCED:
            if source_side // k >= size:
                return flag
    return cv2.IMREAD_COLOR


def _jpeg_truncated(data: bytes) -> bool:
    # libjpeg fills a truncated scan with grey and only warns, so a cut-off file would decode "successfully".
    return data[:2] == b"\xff\xd8" and data.rstrip(b"\x00")[-2:] != b"\xff\xd9"


def _decode(data: bytes, flag: int, source: object) -> np.ndarray:
    """Encoded bytes to ``[H, W, 3]`` uint8 RGB at the stored size (or 1/k of it with a reduced flag)."""
    if not data:
        raise CorruptMediaError(source, "empty file")
    if _jpeg_truncated(data):
        raise CorruptMediaError(source, "truncated JPEG (no end-of-image marker)")
    buffer = np.frombuffer(data, dtype=np.uint8)
    try:
        bgr = cv2.imdecode(buffer, flag)
    except cv2.error:  # a reduced decode of a non-JPEG resizes inside OpenCV: an image 1 px thin asserts there
        try:
            bgr = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
        except cv2.error as e:
            raise CorruptMediaError(source, f"not a decodable image ({str(e).strip().splitlines()[-1][:80]})") from None
    if bgr is None:
        raise CorruptMediaError(source, "not a decodable image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def decode_image_bytes(data: bytes, size: int, source: object, source_side: int | None = None) -> np.ndarray:
    """Decode one encoded image (JPEG, PNG, ...) to ``[size, size, 3]`` uint8 RGB.

    Args:
        data: the encoded file.
        size: output side.
        source: what to name in an error (usually the path).
        source_side: the short side of the stored image when known, to decode JPEGs at a reduced scale.
    """
    return fit_square(_decode(data, _decode_flag(source_side, size), source), size)


def read_image(path: Path | str, size: int) -> np.ndarray:
    """One image file to ``[size, size, 3]`` uint8 RGB."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise CorruptMediaError(path, f"unreadable ({e.strerror or e})") from None
    return decode_image_bytes(data, size, path)


def as_frames(array: np.ndarray) -> torch.Tensor:
    """``[..., S, S, 3]`` uint8 -> ``[..., 3, S, S]`` without copying: a channels-last view.

    Decoders produce HWC pixels; permuting them to CHW in memory would cost as much as decoding. Convolutions take
    channels-last tensors as they are, and the device transfer keeps the layout.
    """
    tensor = torch.from_numpy(array)
    dims = list(range(tensor.dim()))
    return tensor.permute(*dims[:-3], dims[-1], dims[-3], dims[-2])


_PARALLEL_FROM = 8  # frames per read below which threads cost more than they save
_pools: dict[int, ThreadPoolExecutor] = {}


def _decode_threads(threads: int) -> int:
    """0 means: one thread inside a DataLoader worker (the workers already use the cores), else up to 8."""
    if threads > 0:
        return threads
    if torch.utils.data.get_worker_info() is not None:
        return 1
    return max(1, min(8, os.cpu_count() or 1))


def _decode_pool(threads: int) -> ThreadPoolExecutor | None:
    n = _decode_threads(threads)
    if n == 1:
        return None
    if n not in _pools:
        _pools[n] = ThreadPoolExecutor(n, thread_name_prefix="orbit-lite-decode")
    return _pools[n]


# A forked child (a DataLoader worker) inherits the pools but not their threads: start afresh there.
os.register_at_fork(after_in_child=_pools.clear)


class FrameReader:
    """Decodes frames of indexed videos. Stateless apart from remembering which files decord cannot read.

    Args:
        size: output frame side S.
        backend: "auto" (decord, then OpenCV), "decord" or "opencv" for video files.
    """

    def __init__(self, size: int, backend: str = "auto", threads: int = 0) -> None:
        if size <= 0:
            raise ValueError(f"frame size must be positive, got {size}")
        if backend not in BACKENDS:
            raise ValueError(f"unknown video backend {backend!r}; expected one of {', '.join(BACKENDS)}")
        self.size = size
        self.backend = backend
        self._decord_failed: set[Path] = set()  # files decord cannot read (some frame sizes): go straight to OpenCV
        self.threads = threads  # JPEG decoding threads for frame folders; 0: automatic (see _decode_threads)

    def read(self, video: Video, positions: np.ndarray | list[int]) -> torch.Tensor:
        """Frames at 0-based ``positions`` of ``video`` as ``[T, 3, S, S]`` uint8 (channels-last storage)."""
        positions = np.asarray(positions, dtype=np.int64).reshape(-1)
        out = np.empty((len(positions), self.size, self.size, 3), dtype=np.uint8)
        self.read_into(video, positions, out)
        return as_frames(out)

    def read_into(self, video: Video, positions: np.ndarray, out: np.ndarray, rows: np.ndarray | None = None) -> None:
        """Decode the frames at ``positions`` straight into ``out[rows]`` (``[*, S, S, 3]`` uint8).

        Each distinct position is decoded once; repeats are copied. Raises CorruptMediaError naming the file.
        """
        positions = np.asarray(positions, dtype=np.int64).reshape(-1)
        rows = np.arange(len(positions)) if rows is None else np.asarray(rows, dtype=np.int64).reshape(-1)
        if not len(positions):
            return
        n = video.num_frames
        if positions.min() < 0 or positions.max() >= n:
            lo, hi = positions.min(), positions.max()
            raise IndexError(f"{video.path}: frame positions must lie in [0, {n}), got {lo}..{hi}")
        unique, first, inverse = np.unique(positions, return_index=True, return_inverse=True)
        targets = rows[first]  # each distinct frame is decoded into the first row that wants it
        if video.frames is None:
            self._read_file(video.path, unique, out, targets)
        else:
            self._read_folder(video, unique, out, targets)
        copies = rows != targets[inverse]
        if copies.any():
            out[rows[copies]] = out[targets[inverse[copies]]]

    def _read_folder(self, video: Video, positions: np.ndarray, out: np.ndarray, targets: np.ndarray) -> None:
        frames = video.frames
        assert frames is not None

        def one(pos: int, row: int) -> None:
            path = frames.path(int(pos))
            try:
                data = path.read_bytes()
            except OSError as e:
                raise CorruptMediaError(path, f"unreadable ({e.strerror or e})") from None
            # The scale comes from each file's own header, so a frame decodes the same whatever was read before it.
            image = _decode(data, _decode_flag(jpeg_side(data), self.size), path)
            fit_square(image, self.size, out[row])

        pool = _decode_pool(self.threads) if len(positions) >= _PARALLEL_FROM else None
        if pool is None:
            for pos, row in zip(positions, targets, strict=True):
                one(pos, row)
            return
        # File reads and libjpeg-turbo release the GIL, so threads decode on every core; each frame has its own row
        # of ``out``. Results are collected in order, so the first corrupt frame (by position) is the one reported.
        for future in [pool.submit(one, pos, row) for pos, row in zip(positions, targets, strict=True)]:
            future.result()

    def _read_file(self, path: Path, positions: np.ndarray, out: np.ndarray, targets: np.ndarray) -> None:
        if self.backend in ("auto", "decord") and decord is not None and path not in self._decord_failed:
            try:
                return self._read_decord(path, positions, out, targets)
            except CorruptMediaError as e:
                if self.backend == "decord":
                    raise
                self._decord_failed.add(path)
                log.debug("decord could not read %s (%s); using OpenCV", path, e.reason)
        return self._read_opencv(path, positions, out, targets)

    def _read_decord(self, path: Path, positions: np.ndarray, out: np.ndarray, targets: np.ndarray) -> None:
        try:
            reader = decord_reader(path)
            batch = reader.get_batch([int(p) for p in positions]).asnumpy()
        except Exception as e:  # decord raises its own error types for every failure
            raise CorruptMediaError(path, f"decord: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        for frame, row in zip(batch, targets, strict=True):
            fit_square(frame, self.size, out[row])

    def _read_opencv(self, path: Path, positions: np.ndarray, out: np.ndarray, targets: np.ndarray) -> None:
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise CorruptMediaError(path, "OpenCV cannot open it as a video")
        try:
            wanted = iter(zip(targets, positions, strict=True))
            i, target = next(wanted, (None, None))
            current = 0
            while target is not None:
                # Sequential grab is exact where CAP_PROP_POS_FRAMES seeking is not for many codecs.
                if not cap.grab():
                    raise CorruptMediaError(path, f"ends before frame {int(target) + 1}")
                if current == target:
                    ok, bgr = cap.retrieve()
                    if not ok:
                        raise CorruptMediaError(path, f"frame {current + 1} does not decode")
                    fit_square(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self.size, out[i])
                    i, target = next(wanted, (None, None))
                current += 1
        finally:
            cap.release()


def read_video_file(path: Path | str, size: int, positions: np.ndarray | list[int] | None = None) -> torch.Tensor:
    """Frames of a video file not in any index (``None`` positions = all frames), ``[T, 3, S, S]`` uint8."""
    video = Video(Path(path).stem, "", "", "clean", Path(path))
    return FrameReader(size).read(video, np.arange(video.num_frames) if positions is None else positions)
