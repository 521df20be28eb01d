"""Contract tests over the learner registry (meta-dataset's learners/base_test.py idea)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from orbit_lite.checkpoint import load_checkpoint, save_checkpoint
from orbit_lite.config import LiteConfig, ModelConfig
from orbit_lite.errors import OrbitLiteError
from orbit_lite.learners import LEARNERS, create_learner

SIZE = 32
NAMES = sorted(name for name, spec in LEARNERS.items() if spec.meta_trained)  # FineTuners: tests/test_finetuner.py


def model_config(name: str, **kw) -> ModelConfig:
    return ModelConfig(learner=name, backbone="tiny_cnn", weights="none", **kw)


def coloured_task(way: int, shots: int, queries: int, seed: int, length: int = 1) -> tuple:
    """Clips whose class sets the mean colour (plus noise): learnable, but not trivially separated at init."""
    g = torch.Generator().manual_seed(seed)
    colours = torch.randint(60, 200, (way, 3), generator=g).float()

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(n) % way
        noise = torch.randn(n, length, 3, SIZE, SIZE, generator=g) * 50
        clips = (colours[labels][:, None, :, None, None] + noise).clamp(0, 255).to(torch.uint8)
        return clips, labels

    return (*draw(way * shots), *draw(queries), way)


def noise_task(way: int, n: int, seed: int) -> tuple:
    g = torch.Generator().manual_seed(seed)
    clips = torch.randint(0, 256, (n, 1, 3, SIZE, SIZE), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, way, (n,), generator=g)
    labels[:way] = torch.arange(way)
    return clips, labels


def test_unknown_learner_lists_the_available_ones() -> None:
    with pytest.raises(OrbitLiteError, match="unknown learner 'maml'; available: protonets"):
        create_learner(ModelConfig(learner="maml", backbone="tiny_cnn", weights="none"), SIZE)


def test_nothing_to_train_is_an_error() -> None:
    with pytest.raises(OrbitLiteError, match="nothing to train"):
        create_learner(model_config("protonets", learn_backbone=False, film=False), SIZE)


@pytest.mark.parametrize("name", NAMES)
def test_at_chance_at_init_on_signal_free_data(name: str) -> None:
    torch.manual_seed(0)
    learner = create_learner(model_config(name), SIZE).eval()
    way, correct, total = 4, 0, 0
    for seed in range(6):
        context, labels = noise_task(way, 24, seed)
        query, query_labels = noise_task(way, 100, 100 + seed)
        logits = learner.personalize(context, labels, way).predict(query)
        assert logits.shape == (100, way) and torch.isfinite(logits).all()
        correct += int((logits.argmax(1) == query_labels).sum())
        total += 100
    assert abs(correct / total - 1 / way) < 0.08  # 600 queries: 4.5 standard deviations of a 25% binomial


@pytest.mark.parametrize("name", NAMES)
def test_lowers_its_loss_on_a_tiny_task(name: str) -> None:
    torch.manual_seed(0)
    learner = create_learner(model_config(name), SIZE)
    optimizer = torch.optim.Adam([p for p in learner.parameters() if p.requires_grad], lr=1e-2)
    context, labels, query, query_labels, way = coloured_task(3, 6, 30, seed=1)
    lite = LiteConfig(h=4, chunk_size=8, query_chunk=16)
    losses = []
    for step in range(25):
        stats = learner.train_task(context, labels, query, query_labels, way, lite, torch.Generator().manual_seed(step))
        optimizer.step()
        optimizer.zero_grad()
        losses.append(stats.loss)
    assert min(losses[-10:]) < 0.5 * losses[0], losses
    assert sorted(losses[-10:])[5] < losses[0], losses  # the median of the last steps is below the start, too


@pytest.mark.parametrize("name", NAMES)
def test_save_and_load_give_identical_predictions(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    learner = create_learner(model_config(name), SIZE).eval()
    torch.manual_seed(1)
    other = create_learner(model_config(name), SIZE).eval()
    context, labels, query, _, way = coloured_task(3, 4, 20, seed=2, length=2)
    save_checkpoint(tmp_path / "m.pt", {"model": learner.state_dict()}, "test")
    other.load_state_dict(load_checkpoint(tmp_path / "m.pt", "test")["model"])
    expected = learner.personalize(context, labels, way).predict(query)
    torch.testing.assert_close(other.personalize(context, labels, way).predict(query), expected, rtol=0, atol=0)


def naive_task_loss(learner, context, labels, query, query_labels, way) -> torch.Tensor:
    """The whole task in one graph, no LITE, no chunks: what train_task's gradient must equal when h >= N."""
    film = learner.film(learner.set_reps(context).mean(0)) if learner.film is not None else None
    state = learner.head.fit(learner.clip_features(context, film), labels, way)
    loss = F.cross_entropy(learner.head.logits(learner.clip_features(query, film), state), query_labels)
    if learner.film is not None:
        loss = loss + learner.film_reg_weight * learner.film.regularizer()
    return loss


@pytest.mark.parametrize("name", NAMES)
def test_chunked_staged_backward_equals_one_big_graph(name: str) -> None:
    torch.manual_seed(0)
    learner = create_learner(model_config(name), SIZE)
    context, labels, query, query_labels, way = coloured_task(3, 3, 23, seed=3, length=2)
    naive_task_loss(learner, context, labels, query, query_labels, way).backward()
    expected = {n: p.grad.clone() for n, p in learner.named_parameters() if p.grad is not None}
    learner.zero_grad()
    lite = LiteConfig(h=100, chunk_size=4, query_chunk=5)  # h >= N: exact; queries in 5 chunks
    learner.train_task(context, labels, query, query_labels, way, lite)
    got = {n: p.grad for n, p in learner.named_parameters() if p.grad is not None}
    assert got.keys() == expected.keys() and len(got) > 0
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-3, atol=1e-6, msg=key)


@pytest.mark.parametrize("name", NAMES)
def test_lite_reports_the_exact_task_loss(name: str) -> None:
    torch.manual_seed(0)
    learner = create_learner(model_config(name), SIZE)
    context, labels, query, query_labels, way = coloured_task(3, 5, 12, seed=4)
    with torch.no_grad():
        film = learner.film(learner.set_reps(context).mean(0)) if learner.film is not None else None
        state = learner.head.fit(learner.clip_features(context, film), labels, way)
        expected = F.cross_entropy(learner.head.logits(learner.clip_features(query, film), state), query_labels)
    stats = learner.train_task(context, labels, query, query_labels, way, LiteConfig(h=2, chunk_size=3, query_chunk=5))
    assert stats.loss == pytest.approx(float(expected), rel=1e-4)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in learner.parameters())


def test_frozen_backbone_learners_leave_the_backbone_alone() -> None:
    learner = create_learner(model_config("simple_cnaps"), SIZE)
    assert not any(p.requires_grad for p in learner.backbone.parameters())
    assert learner.film is not None and learner.set_encoder is not None
    protonets = create_learner(model_config("protonets"), SIZE)
    assert all(p.requires_grad for p in protonets.backbone.parameters()) and protonets.film is None


def test_whole_task_lite_gradient_is_unbiased() -> None:
    # Through set encoder -> FiLM -> backbone -> Mahalanobis head: the mean of LITE task gradients (H=2 of N=8)
    # matches the full gradient within 4.5 standard errors on every coordinate checked.
    torch.manual_seed(0)
    learner = create_learner(model_config("simple_cnaps"), 16)
    with torch.no_grad():
        for gate in [*learner.film.r_gamma.values(), *learner.film.r_beta.values()]:
            gate.fill_(0.3)  # wide-open gates, so the support path carries real gradient
    g = torch.Generator().manual_seed(5)
    context = torch.randint(0, 256, (8, 1, 3, 16, 16), generator=g, dtype=torch.uint8)
    query = torch.randint(0, 256, (6, 1, 3, 16, 16), generator=g, dtype=torch.uint8)
    labels, query_labels = torch.arange(8) % 2, torch.arange(6) % 2
    watched = [learner.set_encoder.net[0].weight, learner.film.gamma[learner.film._keys[0]][0].weight]

    def gradient(lite: LiteConfig, seed: int) -> torch.Tensor:
        learner.zero_grad()
        learner.train_task(context, labels, query, query_labels, 2, lite, torch.Generator().manual_seed(seed))
        return torch.cat([p.grad.flatten() for p in watched]).double()

    truth = gradient(LiteConfig(h=8, chunk_size=8, query_chunk=6), 0)
    draws = torch.stack([gradient(LiteConfig(h=2, chunk_size=8, query_chunk=6), s) for s in range(300)])
    stderr = draws.std(0) / len(draws) ** 0.5
    assert (draws.std(0) > 0).any()
    assert ((draws.mean(0) - truth).abs() <= 4.5 * stderr + 1e-7 * truth.abs().max()).all()
