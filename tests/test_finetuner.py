"""FineTuner and FineTuner + FiLM: reference-exact personalization, one backbone pass per frame, unbiased LITE."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from orbit_lite.config import FinetuneConfig, ModelConfig
from orbit_lite.errors import OrbitLiteError
from orbit_lite.learners import LEARNERS, FewShotLearner, Learner, create_learner

SIZE = 32


def coloured(way: int, per_class: int, seed: int, size: int = SIZE, length: int = 1) -> tuple:
    """Clips whose class shifts the mean colour: a learnable task, far from chance after a few steps."""
    g = torch.Generator().manual_seed(seed)
    colours = torch.randint(40, 220, (way, 3), generator=g).float()
    labels = torch.arange(way * per_class) % way
    noise = torch.randn(len(labels), length, 3, size, size, generator=g) * 40
    clips = (colours[labels][:, None, :, None, None] + noise).clamp(0, 255).to(torch.uint8)
    return clips, labels


# ---- an independent implementation of the reference's MultiStepFewShotRecogniser.personalise --------------------


def reference_probabilities(net: nn.Module, tuned_names: set[str], mean, std, clips, labels, query, batch_size: int):
    """The reference's per-task loop, written from the reference's behaviour: frozen extractor except the named
    parameters (``unfreeze_film``), zero linear head, Adam (0.9, 0.999, eps 1e-8, no decay) at 1e-3 over two groups
    (head; extractor with an ``lr_scale`` key), 50 steps, each the sum over chunks of CE x chunk/N; BN in eval."""
    net.eval()
    for name, p in net.named_parameters():
        p.requires_grad_(name in tuned_names)
    mean, std = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)

    def features(x: torch.Tensor) -> torch.Tensor:  # clips [n, L, 3, S, S] uint8 -> [n, D]
        n, length = x.shape[:2]
        frames = (x.flatten(0, 1).float() / 255.0 - mean) / std
        return net(frames).view(n, length, -1).mean(1)

    way = int(labels.max()) + 1
    weight = nn.Parameter(torch.zeros(way, net.num_features))
    bias = nn.Parameter(torch.zeros(way))
    optimizer = torch.optim.Adam(
        [{"params": [weight, bias]}, {"params": net.parameters(), "lr_scale": 0.1}],
        lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
    )  # fmt: skip
    n = len(labels)
    for _ in range(50):
        for start in range(0, n, batch_size):
            x, y = clips[start : start + batch_size], labels[start : start + batch_size]
            loss = F.cross_entropy(F.linear(features(x), weight, bias), y) * (len(y) / n)
            loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    with torch.no_grad():
        return F.linear(features(query), weight, bias).softmax(1)


def timm_net(tag: str, size: int, seed: int, frames: torch.Tensor, norm: tuple) -> nn.Module:
    """A random-weight timm network whose BatchNorm statistics are those of ``frames`` ``[n, 3, S, S]`` (uint8):
    with timm's initial statistics (0, 1) the signal dies out with depth and every frame gets the same features."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(seed)
    options = {"img_size": size} if tag.startswith("vit_") else {}
    net = timm.create_model(tag, pretrained=False, num_classes=0, drop_rate=0.0, drop_path_rate=0.0, **options)
    with torch.no_grad():
        for m in net.modules():  # random affines, so that the norm layers are not the identity
            if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
            if isinstance(m, nn.BatchNorm2d):  # statistics of real inputs: without them the signal dies out
                m.reset_running_stats()
                m.momentum = None
        net.train()
        mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in norm)
        net((frames.float() / 255.0 - mean) / std)
    return net.eval()


def film_names(tag: str, net: nn.Module) -> set[str]:
    """The reference's FiLM tags, from the reference's rule, not from orbit-lite's code."""
    if tag.startswith("vit_"):
        layers = [f"blocks.{i}.{k}" for i in range(len(net.blocks)) for k in ("norm1", "norm2")] + ["norm"]
    else:
        kinds = {"InvertedResidual", "CondConvResidual"}
        layers = ["bn1", "bn2"] + [f"{n}.bn2" for n, m in net.named_modules() if type(m).__name__ in kinds]
    return {f"{layer}.{p}" for layer in layers for p in ("weight", "bias")}


CASES = [
    ("tf_efficientnet_b0", "tf_efficientnet_b0", 64, ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), 34),
    ("vit_b_32_clip_laion2b", "vit_base_patch32_clip_224", 64,
     ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)), 50),
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.heavy  # minutes on a 2-core CPU: `make test-all`
@pytest.mark.parametrize(("backbone", "tag", "size", "norm", "tensors"), CASES)
def test_reference_exact_probabilities(backbone, tag, size, norm, tensors, tmp_path: Path) -> None:
    context, labels = coloured(3, 2, seed=1, size=size, length=2)
    query, _ = coloured(3, 3, seed=2, size=size)
    frames = torch.cat([context.flatten(0, 1), query.flatten(0, 1)])
    net = timm_net(tag, size, 0, frames, norm)
    weights = tmp_path / "backbone.pt"
    torch.save(net.state_dict(), weights)  # a plain timm state_dict, as model.weights takes it
    names = film_names(tag, net)
    assert len(names) == tensors  # B0: 17 layers; ViT-B/32: 25
    finetune = FinetuneConfig(batch_size=4)  # the reference's defaults; chunks of 4 of the 6 clips
    got, want = {}, {}
    for learner in ("finetuner", "finetuner_film"):
        model = ModelConfig(learner=learner, backbone=backbone, weights=str(weights), style="reference")
        ours = create_learner(model, size, finetune).eval()
        if learner == "finetuner_film":
            assert set(ours.tuned_names()) == names
        got[learner] = ours.personalize(context, labels, 3).predict(query).softmax(1)
        tuned = names if learner == "finetuner_film" else set()
        fresh = timm_net(tag, size, 0, frames, norm)
        want[learner] = reference_probabilities(fresh, tuned, *norm, context, labels, query, 4)
        torch.testing.assert_close(got[learner], want[learner], rtol=0, atol=2e-3)
        assert (want[learner] - 1 / 3).abs().max() > 0.05  # the steps moved the predictions: a real comparison
    # Tuning the norm layers changes the answer, by more than the tolerance: the FiLM path is really compared.
    assert (want["finetuner_film"] - want["finetuner"]).abs().max() > 5e-3


# ---- fast properties on a tiny backbone ----------------------------------------------------------------------------


def tiny(learner: str, **finetune) -> torch.nn.Module:
    torch.manual_seed(0)
    model = ModelConfig(learner=learner, backbone="tiny_cnn", weights="none")
    return create_learner(model, SIZE, FinetuneConfig(**finetune)).eval()


def test_registry_entries_and_nothing_to_meta_train() -> None:
    for name in ("finetuner", "finetuner_film"):
        assert not LEARNERS[name].meta_trained and LEARNERS[name].from_pretrained
    learner = tiny("finetuner")
    assert not any(p.requires_grad for p in learner.parameters())
    assert isinstance(learner, Learner) and not isinstance(learner, FewShotLearner)  # it personalizes, never trains
    assert not hasattr(learner, "train_task")
    with pytest.raises(OrbitLiteError, match="linear head"):
        create_learner(ModelConfig(learner="protonets", backbone="tiny_cnn", weights="none", head="linear"), SIZE)


def test_finetuner_runs_the_backbone_once_per_context_frame() -> None:
    learner = tiny("finetuner", steps=40, lr=0.05)
    clips, all_labels = coloured(3, 14, seed=0, length=2)
    context, labels = clips[:12], all_labels[:12]  # 12 clips of 2 frames
    frames = []
    hook = learner.backbone.net.register_forward_hook(lambda m, args, out: frames.append(args[0].shape[0]))
    personal = learner.personalize(context, labels, 3, chunk_size=5)
    hook.remove()
    assert sum(frames) == 24  # every frame once, whatever the number of steps
    query, query_labels = clips[12:], all_labels[12:]
    assert (personal.predict(query).argmax(1) == query_labels).float().mean() > 0.6  # it learned the task


def test_finetuner_film_tunes_its_own_copy_and_leaves_the_learner_alone() -> None:
    learner = tiny("finetuner_film", steps=5)
    before = {k: v.clone() for k, v in learner.backbone.state_dict().items()}
    context, labels = coloured(2, 3, seed=0)
    personal = learner.personalize(context, labels, 2)
    after = learner.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # restored for every task: never changed
    tuned = set(learner.tuned_names())
    mine = personal.backbone.net.state_dict()
    changed = {k for k, v in mine.items() if not torch.equal(v, before[f"net.{k}"])}
    assert changed and changed <= tuned  # only the FiLM layers' weight and bias moved


@pytest.mark.slow
def test_finetuner_film_lite_gradient_is_unbiased_and_exact_when_n_fits() -> None:
    # At a head with non-zero weights (at W = 0 no gradient reaches the norm layers), the mean of many LITE gradients
    # (H=2 of N=6 clips) approaches the full gradient, coordinate by coordinate; with N <= H it is the full one.
    learner = tiny("finetuner_film", h=2)
    context, labels = coloured(2, 3, seed=3, size=16)
    g = torch.Generator().manual_seed(0)
    head = (torch.randn(2, 64, generator=g).requires_grad_(), torch.zeros(2).requires_grad_())
    net = learner.backbone.net
    tuned = {name: net.get_parameter(name).detach().clone().requires_grad_() for name in learner.tuned_names()}

    def gradient(generator: torch.Generator | None) -> torch.Tensor:
        for t in (*head, *tuned.values()):
            t.grad = None
        learner.film_step_gradient(context, labels, head, tuned, chunk=4, generator=generator)
        return torch.cat([t.grad.flatten() for t in tuned.values()]).double()

    learner.finetune = FinetuneConfig(h=6)
    full = gradient(None)
    assert full.abs().max() > 0
    learner.finetune = FinetuneConfig(h=100, batch_size=4)  # N <= H: exact, in chunks of 4 clips
    torch.testing.assert_close(gradient(None), full, rtol=1e-4, atol=1e-7)
    learner.finetune = FinetuneConfig(h=2)
    draws = torch.stack([gradient(torch.Generator().manual_seed(s)) for s in range(200)])
    assert (draws.std(0) > 0).any()  # the draws really differ
    stderr = draws.std(0) / len(draws) ** 0.5
    assert ((draws.mean(0) - full).abs() <= 4.5 * stderr + 1e-6 * full.abs().max()).all()
