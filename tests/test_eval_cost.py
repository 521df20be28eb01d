"""Evaluation's cost keys without paying for them per video: the query encoding's MACs are counted once per chunk
shape (equal to counting every call), the next video is decoded while this one is encoded (one ahead, in order), and
the seconds are taken without waiting for the device per video."""

from __future__ import annotations

import threading
from functools import partial
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from orbit_lite import cost
from orbit_lite.config import Config, DataConfig, LiteConfig, ModelConfig
from orbit_lite.cost import ChunkMacs, DeviceClock
from orbit_lite.data.layout import index_tree
from orbit_lite.data.read_ahead import read_ahead
from orbit_lite.engine.evaluate import evaluate_users, make_protocol
from orbit_lite.learners import create_learner
from orbit_lite.results import Inference
from orbit_lite.shapes import Buckets

CPU = torch.device("cpu")
SIZE = 16  # tiny_cnn's smallest frames: these tests count, they do not time


def _personal(learner_name: str, buckets: Buckets = Buckets()):
    torch.manual_seed(0)
    model = ModelConfig(learner=learner_name, backbone="tiny_cnn", weights="none")
    learner = create_learner(model, SIZE, buckets=buckets).eval()
    clips = torch.randint(0, 256, (4, 1, 3, SIZE, SIZE), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    return learner.personalize(clips, torch.tensor([0, 1, 0, 1]), 2)


@pytest.mark.parametrize("learner_name", ["protonets", "simple_cnaps"])  # without and with FiLM
def test_macs_counted_once_per_chunk_shape_equal_counting_every_call(learner_name: str) -> None:
    personal = _personal(learner_name)
    chunk, macs = 4, ChunkMacs()
    g = torch.Generator().manual_seed(2)
    for frames in (9, 8, 3, 9, 13, 1, 8):  # multiples of the chunk and not; lengths seen again
        video = torch.randint(0, 256, (frames, 3, SIZE, SIZE), dtype=torch.uint8, generator=g)
        with FlopCounterMode(display=False) as direct:  # the old way: the whole call under the counter
            want = personal.frame_features(video, chunk)
        got, counted = macs.encode(lambda f: personal.frame_features(f, chunk), video, chunk)
        assert counted == int(direct.get_total_flops()) // 2 > 0, frames
        assert torch.equal(got, want), frames  # split into chunks on a first sight or not: the same features
    assert macs.counted == 3  # chunks of 4, 1 and 3 frames: each shape counted once


def test_macs_counted_once_per_bucket_the_network_runs_on() -> None:
    buckets = Buckets("on", step=4, largest=8)  # batches of 1, 2, 4 or 8 rows, padded up (CUDA's way)
    personal = _personal("protonets", buckets)
    chunk, macs = 12, ChunkMacs()
    rows = partial(buckets.seen, device=CPU)
    g = torch.Generator().manual_seed(3)
    for frames in (7, 6, 5, 15, 19, 3, 12):  # 12-frame chunks run as 8 + 4; 7, 6, 5 as 8; 3 as 4
        video = torch.randint(0, 256, (frames, 3, SIZE, SIZE), dtype=torch.uint8, generator=g)
        with FlopCounterMode(display=False) as direct:
            want = personal.frame_features(video, chunk)
        got, counted = macs.encode(lambda f: personal.frame_features(f, chunk), video, chunk, rows=rows)
        assert counted == int(direct.get_total_flops()) // 2 > 0, frames
        assert torch.equal(got, want), frames
    assert macs.counted == 3  # the network ran on (8,), (8, 4) and (4,) rows: three counts for seven videos


class _CountedFlops(FlopCounterMode):
    """FlopCounterMode that counts how often it is switched on (each time costs a Python hook around every op)."""

    entered = 0

    def __enter__(self):
        type(self).entered += 1
        return super().__enter__()


def test_evaluation_counts_macs_once_per_shape_not_once_per_video(tiny_frames: Path, monkeypatch) -> None:
    monkeypatch.setattr(cost, "FlopCounterMode", _CountedFlops)
    _CountedFlops.entered = 0
    cfg = Config(
        data=DataConfig(frame_size=SIZE, num_workers=0),
        model=ModelConfig(learner="protonets", backbone="tiny_cnn", weights="none"),
        lite=LiteConfig(chunk_size=16),  # the tiny preset's clutter videos: 80 frames, five chunks of 16
    )
    torch.manual_seed(0)
    learner = create_learner(cfg.model, SIZE).eval()
    protocol = make_protocol(cfg, "orbit2021", "clutter", tasks=4)  # every frame, a context of its own per task
    results, _ = evaluate_users(learner, index_tree(tiny_frames).users("test"), protocol, cfg)
    videos = sum(len(t.videos) for r in results for t in r.tasks)
    personalizations = sum(r.personalizations for r in results)
    assert videos == 12 and personalizations == 4  # 3 clutter videos encoded for each of the 4 tasks
    # Personalizing is still counted per task; the 12 query encodings share one count (every chunk has 16 frames).
    assert _CountedFlops.entered - personalizations == 1
    inference = sum((r.inference for r in results), Inference())
    assert inference.frames == 12 * 80 and inference.macs > 0
    assert inference.macs % inference.frames == 0  # every frame costs the same: the count was reused, not lost


def test_read_ahead_reads_the_next_item_while_the_caller_works_and_never_further() -> None:
    started: list[int] = []
    reading = {i: threading.Event() for i in range(5)}
    threads: set[str] = set()

    def read(i: int) -> int:
        started.append(i)
        threads.add(threading.current_thread().name)
        reading[i].set()
        if i == 3:
            raise OSError("unreadable")
        return i * 10

    seen = []
    with pytest.raises(OSError, match="unreadable"):
        for i, value in read_ahead(read, list(range(5))):
            assert value == i * 10 and max(started) <= i + 1  # one ahead at most
            if i + 1 < 5:
                assert reading[i + 1].wait(10)  # the next read runs while the caller holds this item
            seen.append(i)
    assert seen == [0, 1, 2] and started == [0, 1, 2, 3]  # in order; the error surfaces at its own item
    assert threading.current_thread().name not in threads
    assert list(read_ahead(read, [])) == []


class _FakeEvent:
    """A CUDA timing event on a fake clock: what DeviceClock does with events, without a GPU."""

    now = 0.0
    waits = 0

    def __init__(self, enable_timing: bool = False) -> None:
        assert enable_timing
        self.at: float | None = None

    def record(self) -> None:
        _FakeEvent.now += 1.5
        self.at = _FakeEvent.now

    def synchronize(self) -> None:
        _FakeEvent.waits += 1

    def elapsed_time(self, end: _FakeEvent) -> float:  # milliseconds, as torch's
        return end.at - self.at


def test_device_clock_waits_once_for_all_calls_on_cuda(monkeypatch) -> None:
    def no_sync(*_args) -> None:
        raise AssertionError("a device-wide sync per call")

    monkeypatch.setattr(torch.cuda, "Event", _FakeEvent)
    monkeypatch.setattr(torch.cuda, "synchronize", no_sync)
    _FakeEvent.waits = 0
    clock = DeviceClock(torch.device("cuda"))
    assert [clock.time(lambda i=i: i) for i in range(3)] == [0, 1, 2]
    assert _FakeEvent.waits == 0  # nothing waited while the calls were queued
    assert clock.seconds() == [0.0015] * 3 and _FakeEvent.waits == 1
    cpu = DeviceClock(torch.device("cpu"))
    cpu.time(lambda: None)
    assert len(cpu.seconds()) == 1 and cpu.seconds()[0] >= 0
