from __future__ import annotations

import torch

from orbit_lite.config import LiteConfig, ModelConfig
from orbit_lite.learners import create_learner
from orbit_lite.lite import lite_forward
from orbit_lite.models.film import FilmGenerator
from orbit_lite.models.set_encoder import SetEncoder


def frames(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_set_encoder_rows_do_not_depend_on_their_batch() -> None:
    torch.manual_seed(0)
    encoder = SetEncoder().train()  # even in train mode: GroupNorm has no batch statistics
    x = frames(6)
    together = encoder(x)
    alone = torch.cat([encoder(x[i : i + 1]) for i in range(6)])
    assert together.shape == (6, 64)
    # float32 convolutions pick different kernels for a batch of 6 and of 1 (differences of a few 1e-6 after five
    # layers, depending on the CPU's threads); batch statistics would differ by orders of magnitude more
    assert together.std() > 1e-2
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)


def test_task_embedding_is_the_same_however_the_context_is_chunked() -> None:
    torch.manual_seed(0)
    encoder = SetEncoder()
    x = frames(10)
    embeddings = [lite_forward(encoder, x, h=3, chunk_size=c, generator=torch.Generator().manual_seed(c)).mean(0)
                  for c in (1, 4, 10)]  # fmt: skip
    for e in embeddings[1:]:
        torch.testing.assert_close(e, embeddings[0], rtol=1e-5, atol=1e-6)


def test_set_encoder_handles_small_frames() -> None:
    assert SetEncoder()(frames(2, size=16)).shape == (2, 64)


def test_film_starts_near_the_identity_and_regularizes_its_gates() -> None:
    torch.manual_seed(0)
    layers = [("a.bn", 4), ("b.bn", 3)]
    film = FilmGenerator(layers, embed_dim=8)
    params = film(torch.randn(8))
    assert list(params) == ["a.bn", "b.bn"]
    gamma, beta = params["a.bn"]
    assert gamma.shape == beta.shape == (4,)
    assert (gamma - 1).abs().max() < 0.05 and beta.abs().max() < 0.05  # gates start at N(0, 0.001^2)
    gates = [*film.r_gamma.values(), *film.r_beta.values()]
    torch.testing.assert_close(film.regularizer(), sum(g.pow(2).sum() for g in gates))


def test_film_adapted_features_differ_by_task() -> None:
    # After the gates grow, two different context sets give two different FiLM parameters and features.
    torch.manual_seed(0)
    learner = create_learner(ModelConfig(learner="simple_cnaps", backbone="tiny_cnn", weights="none"), 32)
    with torch.no_grad():
        for gate in [*learner.film.r_gamma.values(), *learner.film.r_beta.values()]:
            gate.fill_(0.5)
    clips = frames(4)[:, None]
    a = learner.film(learner.set_reps(frames(8, seed=1)[:, None]).mean(0))
    b = learner.film(learner.set_reps(frames(8, seed=2)[:, None]).mean(0))
    fa, fb = learner.clip_features(clips, a), learner.clip_features(clips, b)
    assert not torch.allclose(fa, fb)


def test_bf16_autocast_trains_on_cpu() -> None:
    torch.manual_seed(0)
    learner = create_learner(ModelConfig(learner="protonets", backbone="tiny_cnn", weights="none"), 32)
    learner.bf16 = True
    dtypes: set[torch.dtype] = set()
    conv = next(m for m in learner.backbone.net.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda _m, _a, out: dtypes.add(out.dtype))
    context, query = frames(6)[:, None], frames(9, seed=3)[:, None]
    labels, query_labels = torch.arange(6) % 3, torch.arange(9) % 3
    stats = learner.train_task(context, labels, query, query_labels, 3, LiteConfig(h=2, chunk_size=4, query_chunk=4))
    assert dtypes == {torch.bfloat16}  # the backbone really ran under bf16 autocast, every call
    assert 0 < stats.loss < 10 and stats.queries == 9
    grads = [p.grad for p in learner.backbone.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_reference_set_encoder_uses_stored_statistics_and_the_given_normalization() -> None:
    torch.manual_seed(0)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    encoder = SetEncoder(style="reference", mean=mean, std=std).train()
    assert not any(m.training for m in encoder.modules() if isinstance(m, torch.nn.BatchNorm2d))
    x = frames(3, size=64)
    together = encoder(x)
    torch.testing.assert_close(together, torch.cat([encoder(x[i : i + 1]) for i in range(3)]), rtol=1e-5, atol=1e-6)
    normalized = (x.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(encoder.net(normalized), together)  # the backbone's normalization, not [-1, 1]
    torch.testing.assert_close(encoder(x.float() / 255), together)  # float frames in [0, 1] alike
    assert encoder.net[3].ceil_mode is False  # floor pooling: 224 -> 7 after five poolings, as the reference


def test_set_encoder_input_follows_the_style_not_the_backbone() -> None:
    from orbit_lite.config import ModelConfig
    from orbit_lite.learners import create_learner

    def shift(style: str) -> torch.Tensor:  # resnet18 normalizes with ImageNet's mean and std
        model = ModelConfig(learner="simple_cnaps", backbone="resnet18", weights="none", style=style)
        return create_learner(model, 32).set_encoder.input_shift.flatten()

    assert torch.equal(shift("orbit_lite"), torch.full((3,), -1.0))  # [-1, 1], as before styles existed
    imagenet = -torch.tensor([0.485, 0.456, 0.406]) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(shift("reference"), imagenet)
