"""A teach job's progress: a stage text per video read and per chunk of frames encoded, a number that never goes back
and ends at 1, and store writes a few times a second at most however fast the steps come."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

pytest.importorskip("fastapi", reason="pip install 'orbit-lite[serve]'")
from fastapi.testclient import TestClient
from serve_media import COLOURS, video_bytes, write_recipe

from orbit_lite.progress import Step
from orbit_lite.serve import progress as job_progress
from orbit_lite.serve.app import create_app
from orbit_lite.serve.model import parse_source
from orbit_lite.serve.progress import SAVE, JobProgress
from orbit_lite.serve.service import Service, Settings
from orbit_lite.serve.store import Store


def test_a_teach_job_reports_each_video_and_chunk_and_ends_at_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(job_progress, "WRITE_INTERVAL", 0.0)  # every step written: the whole sequence is seen
    writes: list[tuple[float, str]] = []
    update_job = Store.update_job

    def spy(self: Store, job: str, **fields) -> None:
        if "stage" in fields:
            writes.append((fields["progress"], fields["stage"]))
        update_job(self, job, **fields)

    monkeypatch.setattr(Store, "update_job", spy)
    torch.manual_seed(0)
    service = Service(Settings(tmp_path / "store", parse_source(None, [write_recipe(tmp_path)], []), "cpu"))
    with TestClient(create_app(service)) as c:
        body = c.post("/api/collections").json()
        cid, auth = body["id"], {"Authorization": f"Bearer {body['token']}"}
        for name, colour in COLOURS.items():
            for seed in range(2):
                files = {"file": ("clip.mp4", video_bytes(tmp_path, colour, seed=seed))}
                assert c.post(f"/api/collections/{cid}/objects/{name}/videos", headers=auth, files=files).is_success
        job = c.post(f"/api/collections/{cid}/teach", headers=auth).json()["job"]
        service.teacher.wait()
        final = c.get(f"/api/jobs/{job}", headers=auth).json()
    service.close()

    stages = [s for _, s in writes]
    assert stages[:8] == ["reading the videos"] + [f"reading the videos: {k} of 6" for k in range(7)]
    assert stages[-1] == "saving the recognizer"
    encoded = [re.fullmatch(r"learning your objects: (\d+) of (\d+) frames", s) for s in stages[8:-1]]
    assert all(encoded) and len(encoded) >= 3, stages  # the tiny recipe's chunk of 8 clips: several chunks
    done = [int(m[1]) for m in encoded]
    assert done[0] == 0 and done == sorted(set(done)) and done[-1] == int(encoded[0][2])
    values = [v for v, _ in writes]
    assert values == sorted(values) and values[0] > 0 and values[-1] == SAVE
    phases = [s.split(":")[0] for s in stages]
    moved = [values[i] > values[i - 1] for i in range(2, len(values)) if phases[i] == phases[i - 1]]
    assert all(moved) and len(moved) == 6 + len(encoded) - 1  # each video and chunk done moves the bar
    assert (final["status"], final["progress"], final["stage"]) == ("done", 1, "ready")


def fake_clock() -> tuple[list[float], JobProgress, list[tuple[float, float, str]]]:
    now = [0.0]
    writes: list[tuple[float, float, str]] = []
    progress = JobProgress(
        lambda v, s: writes.append((now[0], v, s)), ["read", "encode", "tune"], interval=25, clock=lambda: now[0]
    )
    return now, progress, writes


def test_store_writes_are_rate_limited_within_a_kind_of_work() -> None:
    now, progress, writes = fake_clock()
    for k in range(101):  # a step every unit of time, the interval 25 units
        now[0] = k
        progress(Step("read", k, 100))
    assert [t for t, _, _ in writes] == [0, 25, 50, 75, 100]
    assert writes[-1][2] == "reading the videos: 100 of 100"
    now[0] = 100.5
    progress(Step("encode", 0, 40))  # a new kind of work is said at once
    progress(Step("encode", 8, 40))  # ... and then waits its turn
    assert [s for _, _, s in writes[-1:]] == ["learning your objects: 0 of 40 frames"] and len(writes) == 6


def test_progress_never_goes_back_and_fills_the_bar_in_order() -> None:
    now, progress, writes = fake_clock()
    for t, step in enumerate([Step("read", 3, 6), Step("read", 1, 5), Step("encode", 40, 80), Step("tune", 2, 4)]):
        now[0] = 100 * t
        progress(step)
    progress.saving()
    values = [v for _, v, _ in writes]
    # a corrupt video found while reading: the engine reads the others again from the first, the bar stays
    assert values[1] == values[0] and writes[1][2] == "reading the videos: 1 of 5"
    assert values == sorted(values) and values[-1] == SAVE
    # bands in proportion to the weights: read 3, encode 3, tune 4 between 0.02 and 0.95
    assert values[0] == pytest.approx(0.02 + 0.93 * 0.3 * 0.5)
    assert values[2] == pytest.approx(0.02 + 0.93 * (0.3 + 0.3 * 0.5))
    assert values[3] == pytest.approx(0.02 + 0.93 * (0.6 + 0.4 * 0.5))
    assert [s for _, _, s in writes][2:] == [
        "learning your objects: 40 of 80 frames",
        "fine-tuning: step 2 of 4",
        "saving the recognizer",
    ]
