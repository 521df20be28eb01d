from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from orbit_lite.errors import OrbitLiteError
from orbit_lite.models.heads import (
    HEADS,
    CosineProtoHead,
    MahalanobisHead,
    ProtoHead,
    VersaHead,
    class_means,
    create_head,
)


def random_task(dim: int, counts: list[int], n_query: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Context features with well separated class centres, their labels, and query features with labels."""
    g = torch.Generator().manual_seed(seed)
    way = len(counts)
    centres = 3 * torch.randn(way, dim, generator=g)
    labels = torch.repeat_interleave(torch.arange(way), torch.tensor(counts))
    context = centres[labels] + torch.randn(len(labels), dim, generator=g)
    query_labels = torch.arange(n_query) % way
    query = centres[query_labels] + torch.randn(n_query, dim, generator=g)
    return context, labels, query, query_labels


def mahalanobis_reference(context: torch.Tensor, labels: torch.Tensor, way: int, query: torch.Tensor) -> torch.Tensor:
    """Slow float64 Simple CNAPs logits: one explicit inverse per class; a one-example class has zero covariance."""
    x, q = context.double(), query.double()
    dim = x.shape[1]
    task_cov = torch.cov(x.T, correction=1) if len(x) > 1 else torch.zeros(dim, dim, dtype=torch.float64)
    out = []
    for c in range(way):
        xc = x[labels == c]
        n = len(xc)
        cov = torch.cov(xc.T, correction=1).reshape(dim, dim) if n > 1 else torch.zeros(dim, dim, dtype=torch.float64)
        lam = n / (n + 1)
        precision = torch.linalg.inv(lam * cov + (1 - lam) * task_cov + torch.eye(dim, dtype=torch.float64))
        d = q - xc.mean(0)
        out.append(-torch.einsum("md,de,me->m", d, precision, d))
    return torch.stack(out, 1)


def test_class_means_by_hand() -> None:
    features = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [0.0, 0.0]])
    means = class_means(features, torch.tensor([0, 1, 0, 1]), 2)
    assert torch.equal(means, torch.tensor([[3.0, 4.0], [1.5, 2.0]]))


def test_class_means_rejects_a_missing_class_and_bad_labels() -> None:
    features = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="class 1 has no context example"):
        class_means(features, torch.tensor([0, 2, 2]), 3)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        class_means(features, torch.tensor([0, 1, 2]), 2)


# Context for the hand-computed proto/cosine cases: class 0 = {(0,0), (2,0)} -> mean (1,0); class 1 = {(0,3)}.
HAND_CONTEXT = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
HAND_LABELS = torch.tensor([0, 0, 1])


def test_proto_logits_are_scaled_negative_squared_distances() -> None:
    head = ProtoHead(2, scale=0.5)
    state = head.fit(HAND_CONTEXT, HAND_LABELS, 2)
    assert torch.equal(state[0], torch.tensor([[1.0, 0.0], [0.0, 3.0]]))
    # (1,1): distances^2 1 and 5; (0,2): 5 and 1; times -0.5.
    logits = head.logits(torch.tensor([[1.0, 1.0], [0.0, 2.0]]), state)
    assert torch.allclose(logits, torch.tensor([[-0.5, -2.5], [-2.5, -0.5]]))
    assert logits.argmax(1).tolist() == [0, 1]
    # A query sitting on a prototype has distance exactly 0 there, not a rounding error below it.
    assert head.logits(torch.tensor([[1.0, 0.0]]), state)[0, 0] == 0


def test_cosine_logits_are_scaled_cosines() -> None:
    head = CosineProtoHead(2, scale=10.0)
    state = head.fit(HAND_CONTEXT, HAND_LABELS, 2)
    # (1,1) against (1,0) and (0,3): both 1/sqrt(2); (3,4): 3/5 and 12/15 = 4/5.
    logits = head.logits(torch.tensor([[1.0, 1.0], [3.0, 4.0]]), state)
    r = 10 / math.sqrt(2)
    assert torch.allclose(logits, torch.tensor([[r, r], [6.0, 8.0]]))
    assert CosineProtoHead(2).temperature().item() == 32.0


def test_mahalanobis_by_hand_in_one_dimension() -> None:
    # Context 0, 2 (class 0) and 4 (class 1). Task variance: mean 2, (4 + 0 + 4) / 2 = 4.
    # Class 0: mean 1, variance (1 + 1) / 1 = 2, lambda 2/3 -> sigma 2/3 * 2 + 1/3 * 4 + 1 = 11/3.
    # Class 1: one example, variance 0, lambda 1/2 -> sigma 1/2 * 4 + 1 = 3.
    # Query 3: -(3 - 1)^2 / (11/3) = -12/11 and -(3 - 4)^2 / 3 = -1/3; times scale 2.
    head = MahalanobisHead(1, scale=2.0)
    state = head.fit(torch.tensor([[0.0], [2.0], [4.0]]), torch.tensor([0, 0, 1]), 2)
    assert torch.allclose(state[1].squeeze(), torch.tensor([11 / 3, 3.0]).sqrt())
    logits = head.logits(torch.tensor([[3.0]]), state)
    assert torch.allclose(logits, torch.tensor([[-24 / 11, -2 / 3]]))


@pytest.mark.parametrize("dim", [3, 5])
def test_mahalanobis_matches_a_float64_inverse(dim: int) -> None:
    context, labels, query, _ = random_task(dim, [1, 2, 4], 6, seed=dim)
    head = MahalanobisHead(dim)
    logits = head.logits(query, head.fit(context, labels, 3))
    expected = mahalanobis_reference(context, labels, 3, query)
    assert logits.dtype == torch.float32
    assert torch.allclose(logits.double(), expected, rtol=1e-4, atol=1e-4)
    # The one-example class really uses 0.5 * Sigma_task + I (not the reference code's broadcast scalar variance).
    x = context.double()
    d = query.double() - x[0]
    sigma0 = 0.5 * torch.cov(x.T) + torch.eye(dim, dtype=torch.float64)
    assert torch.allclose(logits[:, 0].double(), -(d @ torch.linalg.inv(sigma0) * d).sum(1), rtol=1e-4)


def test_mahalanobis_under_bf16_autocast_returns_float32() -> None:
    context, labels, query, _ = random_task(8, [3, 4, 5], 10)
    head = MahalanobisHead(8)
    reference = head.logits(query, head.fit(context, labels, 3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        state = head.fit(context, labels, 3)
        logits = head.logits(query, state)
        # bf16 inputs, as an autocast backbone would produce, are upcast rather than computed in bf16.
        bf16_logits = head.logits(query.bfloat16(), head.fit(context.bfloat16(), labels, 3))
    assert all(t.dtype == torch.float32 for t in state)
    assert logits.dtype == torch.float32 and bf16_logits.dtype == torch.float32
    assert torch.allclose(logits, reference, rtol=1e-5, atol=1e-5)
    assert torch.allclose(bf16_logits, reference, rtol=2e-2, atol=0.3)
    assert torch.equal(bf16_logits.argmax(1), reference.argmax(1))


@pytest.mark.parametrize("name", sorted(set(HEADS) - {"linear"}))  # linear: tuned by steps, not fitted
def test_gradients_reach_context_features_and_scale(name: str) -> None:
    context, labels, query, query_labels = random_task(6, [2, 3, 4], 9)
    context.requires_grad_(True)
    head = create_head(name, 6, learn_scale=True)
    loss = F.cross_entropy(head.logits(query, head.fit(context, labels, 3)), query_labels)
    loss.backward()
    assert context.grad is not None and torch.isfinite(context.grad).all()
    assert context.grad.abs().sum() > 0
    assert head.log_scale.grad is not None and head.log_scale.grad != 0


def test_versa_shapes_and_hypernetwork_gradients() -> None:
    context, labels, query, query_labels = random_task(16, [2, 3, 1, 4], 7)
    head = VersaHead(16)
    weight, bias = head.fit(context, labels, 4)
    assert weight.shape == (4, 16) and bias.shape == (4,)
    logits = head.logits(query, (weight, bias))
    assert logits.shape == (7, 4)
    means = class_means(context, labels, 4)
    assert torch.allclose(logits, query @ (means + head.f_w(means)).T + head.f_b(means).T, atol=1e-5)
    F.cross_entropy(logits, query_labels).backward()
    for prefix in ("f_w", "f_b"):
        grads = [p.grad for n, p in head.named_parameters() if n.startswith(prefix)]
        assert len(grads) == 6 and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_create_head_registry() -> None:
    assert set(HEADS) == {"proto", "proto_cosine", "mahalanobis", "versa", "linear"}
    with pytest.raises(OrbitLiteError, match="unknown head 'knn'; available: proto, proto_cosine, mahalanobis, versa"):
        create_head("knn", 4)
    with pytest.raises(OrbitLiteError, match="positive"):
        create_head("proto", 4, scale=0.0)
    assert isinstance(create_head("mahalanobis", 4), MahalanobisHead)
    assert create_head("proto_cosine", 4).temperature().item() == 32.0
    assert create_head("proto", 4, scale=3.0).temperature().item() == 3.0


def test_linear_head_starts_at_zero_and_scores_linearly() -> None:
    context, labels, query, _ = random_task(6, [2, 3, 4], 5)
    head = create_head("linear", 6, scale=2.0)
    weight, bias = head.fit(context, labels, 3)
    assert weight.shape == (3, 6) and bias.shape == (3,) and not weight.any() and not bias.any()
    w, b = torch.randn(3, 6), torch.randn(3)
    torch.testing.assert_close(head.logits(query, (w, b)), 2.0 * (query @ w.T + b))


def test_learn_scale_makes_a_log_space_parameter() -> None:
    learned = create_head("proto", 4, scale=5.0, learn_scale=True)
    assert [n for n, _ in learned.named_parameters()] == ["log_scale"]
    assert learned.log_scale.item() == pytest.approx(math.log(5.0))
    assert learned.temperature().item() == pytest.approx(5.0)
    fixed = create_head("proto", 4, scale=5.0)
    assert list(fixed.parameters()) == []
    assert list(fixed.state_dict()) == ["scale"] and fixed.state_dict()["scale"].item() == 5.0


def test_mahalanobis_at_backbone_size_matches_the_per_class_reference() -> None:
    dim, way, n_query = 1280, 10, 300
    g = torch.Generator().manual_seed(0)
    counts = [8, 12, 10, 9, 11, 10, 10, 10, 1, 19]  # N = 100, including a one-example class
    labels = torch.repeat_interleave(torch.arange(way), torch.tensor(counts))
    centres = torch.randn(way, dim, generator=g)
    context = centres[labels] + 0.5 * torch.randn(len(labels), dim, generator=g)
    query = centres[torch.arange(n_query) % way] + 0.5 * torch.randn(n_query, dim, generator=g)
    head = MahalanobisHead(dim)
    means, chol = head.fit(context, labels, way)
    assert chol.shape == (way, dim, dim)
    logits = head.logits(query, (means, chol))
    assert logits.shape == (n_query, way) and torch.isfinite(logits).all()
    picked = torch.tensor([0, 8, 57, 299])
    expected = mahalanobis_reference(context, labels, way, query[picked])
    assert torch.allclose(logits[picked].double(), expected, rtol=1e-3)
    assert (logits.argmax(1) == torch.arange(n_query) % way).float().mean() > 0.9


def test_reference_mahalanobis_spreads_a_one_example_class_over_the_whole_matrix() -> None:
    torch.manual_seed(0)
    features, query = torch.randn(5, 6, dtype=torch.float64), torch.randn(3, 6, dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 2, 2])  # class 1 has one example
    eye = torch.eye(6, dtype=torch.float64)
    expected = []
    for c in range(3):  # the reference's maths, with its scalar "covariance" of one vector
        rows = features[labels == c]
        cov = torch.cov(rows.T) if len(rows) > 1 else rows[0].var() * torch.ones_like(eye)
        lam = len(rows) / (len(rows) + 1)
        precision = torch.linalg.inv(lam * cov + (1 - lam) * torch.cov(features.T) + eye)
        diff = query - rows.mean(0)
        expected.append(-((diff @ precision) * diff).sum(1))
    head = create_head("mahalanobis", 6, style="reference")
    torch.testing.assert_close(head.logits(query, head.fit(features, labels, 3)), torch.stack(expected, 1))
    ours = create_head("mahalanobis", 6)
    assert not torch.allclose(ours.logits(query, ours.fit(features, labels, 3)), torch.stack(expected, 1))


def test_reference_versa_bias_network_is_one_wide() -> None:
    head = create_head("versa", 16, style="reference")
    shapes = {k: tuple(v.shape) for k, v in head.state_dict().items() if k.startswith("f_b.")}
    assert shapes == {"f_b.0.weight": (1, 16), "f_b.0.bias": (1,), "f_b.2.weight": (1, 1), "f_b.2.bias": (1,),
                      "f_b.4.weight": (1, 1), "f_b.4.bias": (1,)}  # fmt: skip
    assert create_head("versa", 16).f_b[0].weight.shape == (16, 16)
    with pytest.raises(OrbitLiteError, match="unknown head style"):
        create_head("proto", 16, style="mine")
