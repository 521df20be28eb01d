"""Personalization's progress reports: every learner says what it does in the order it declares, each count runs from
0 to its total, and a callback changes nothing of the recognizer it makes."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from orbit_lite.config import Config, FinetuneConfig, ModelConfig, from_dict
from orbit_lite.data.layout import index_tree
from orbit_lite.engine.personalize import personalize_user, progress_kinds
from orbit_lite.learners import LEARNERS, create_learner
from orbit_lite.progress import Step

SIZE, LENGTH, CHUNK, STEPS = 32, 2, 4, 3


def clips_and_labels(way: int = 3, per_class: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(way * per_class) % way
    clips = torch.randint(0, 256, (len(labels), LENGTH, 3, SIZE, SIZE), generator=g, dtype=torch.uint8)
    return clips, labels


def learner_of(name: str):
    torch.manual_seed(0)
    model = ModelConfig(learner=name, backbone="tiny_cnn", weights="none")
    # finetuner_film with h < N: the LITE path, whose draws the callback must not disturb either
    return create_learner(model, SIZE, FinetuneConfig(steps=STEPS, h=4)).eval()


@pytest.mark.parametrize("name", list(LEARNERS))
def test_each_learner_reports_its_kinds_and_the_callback_changes_nothing(name: str) -> None:
    clips, labels = clips_and_labels()
    learner = learner_of(name)
    heard: list[Step] = []
    quiet = learner.personalize(clips, labels, 3, CHUNK)
    told = learner.personalize(clips, labels, 3, CHUNK, progress=heard.append)

    kinds = learner.progress_kinds()
    assert [k for k, _ in itertools.groupby(s.kind for s in heard)] == list(kinds)
    frames = len(clips) * LENGTH
    totals = {"adapt": frames, "encode": frames, "tune": STEPS}
    for kind, group in itertools.groupby(heard, key=lambda s: s.kind):
        done = [s.done for s in group]
        assert {s.total for s in heard if s.kind == kind} == {totals[kind]}
        if kind == "tune":
            assert done == list(range(STEPS + 1))  # every step
        else:  # every chunk of CHUNK clips
            assert done == [*range(0, frames, CHUNK * LENGTH), frames]

    for a, b in zip(quiet.state, told.state, strict=True):
        assert torch.equal(a, b)
    for key, pair in (quiet.film or {}).items():
        assert all(torch.equal(a, b) for a, b in zip(pair, told.film[key], strict=True))
    query = clips[:4]
    assert torch.equal(quiet.predict(query), told.predict(query))
    assert quiet.tuned_values == told.tuned_values


def test_personalize_user_reads_each_video_then_encodes(tiny_frames: Path) -> None:
    recipe = {
        "data": {"frame_size": SIZE, "num_workers": 0},
        "model": {"learner": "protonets", "backbone": "tiny_cnn", "weights": "none"},
        "lite": {"chunk_size": 8},
        "test_sampling": {"subsample_factor": 4, "clip_cap": 20},
    }
    cfg = from_dict(Config, recipe)
    torch.manual_seed(0)
    learner = create_learner(cfg.model, SIZE).eval()
    user = index_tree(tiny_frames).users("test")[0]
    videos = sum(len(o.clean) for o in user.objects)
    heard: list[Step] = []
    quiet, _ = personalize_user(learner, user, cfg)
    told, task = personalize_user(learner, user, cfg, progress=heard.append)

    assert progress_kinds(learner) == ("read", "encode")
    reads = [(s.done, s.total) for s in heard if s.kind == "read"]
    assert reads == [(k, videos) for k in range(videos + 1)]  # video 0 of n (starting), 1 of n, ..., n of n
    assert [k for k, _ in itertools.groupby(s.kind for s in heard)] == ["read", "encode"]
    frames = task.context_clips.shape[0] * task.clip_length
    assert heard[-1] == Step("encode", frames, frames)
    for a, b in zip(quiet.recognizer.state, told.recognizer.state, strict=True):
        assert torch.equal(a, b)
