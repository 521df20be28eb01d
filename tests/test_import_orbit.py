"""`orbit-lite import-orbit`: reference checkpoints in the published layout give the reference model's probabilities.

The reference side is written here from the reference's published layout, not from orbit-lite's modules: the file
is built from timm and hand-made tensors under the reference's key names, and its predictions are computed with
torch.nn.functional (set encoder, FiLM generators and formula, heads) around timm's own forward.
"""

from __future__ import annotations

import math
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from orbit_lite.checkpoint import load_checkpoint
from orbit_lite.cli.main import app
from orbit_lite.engine.model import Checkpoint, open_model

TAGS = {
    "efficientnet_b0": "tf_efficientnet_b0",
    "efficientnet_v2_s": "tf_efficientnetv2_s.in21k",
    "vit_b_32": "vit_base_patch32_224.augreg_in21k",
    "vit_b_32_clip": "vit_base_patch32_clip_224.laion2b",
}
NORMS = {
    "efficientnet_b0": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "efficientnet_v2_s": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "vit_b_32": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "vit_b_32_clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
}
SIZE = 224
runner = CliRunner()


def _film_layers(backbone: str, net: torch.nn.Module) -> list[str]:
    """The reference's FiLM tags, written out from the reference's list."""
    if backbone.startswith("vit"):  # the CLIP ViT's norm_pre is left out
        return [f"blocks.{i}.{n}" for i in range(12) for n in ("norm1", "norm2")] + ["norm"]
    assert backbone == "efficientnet_b0"  # no published FiLM-ed layout has another EfficientNet
    blocks = [f"blocks.{s}.{b}.bn2" for s, depth in enumerate((1, 2, 2, 3, 3, 4, 1)) for b in range(depth) if s > 0]
    return ["bn1", "bn2", *blocks]


def _randomize(net: torch.nn.Module, gen: torch.Generator, backbone: str, spread: float) -> None:
    """Every norm layer's affine and statistics away from their defaults, with features that differ between frames.

    A randomly initialised EfficientNet's signal fades through its blocks, so the BN statistics are first measured on
    a few frames (as a trained network's would be), then jittered. The final norm layer is then scaled so that
    features lie about ``spread`` from their mean: probabilities neither uniform nor all 0 and 1.
    """
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NORMS[backbone])
    calibration = (_frames(6, seed=99).float() / 255 - mean) / std
    norms = [m for m in net.modules() if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.LayerNorm))]
    with torch.no_grad():
        for module in norms:
            module.weight.copy_(1 + 0.2 * torch.randn(module.weight.shape, generator=gen))
            module.bias.copy_(0.2 * torch.randn(module.bias.shape, generator=gen))
        batch_norms = [m for m in norms if isinstance(m, torch.nn.BatchNorm2d)]
        if batch_norms:
            for module in batch_norms:
                module.reset_running_stats()
                module.momentum = None  # a plain average over the calibration batch
            net.train()(calibration)
            net.eval()
            for module in batch_norms:
                module.running_var.mul_(torch.empty_like(module.running_var).uniform_(0.8, 1.2, generator=gen))
                module.running_mean.add_(0.05 * torch.randn(module.running_mean.shape, generator=gen))
        final = net.bn2 if hasattr(net, "bn2") else net.norm
        for _ in range(2):  # the B0 head's SiLU makes the scaling only nearly linear: a second pass settles it
            features = net.eval()(calibration)
            factor = spread / (features - features.mean(0)).norm(dim=1).mean()
            final.weight.mul_(factor)
            final.bias.mul_(factor)


def _t(gen: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(shape, generator=gen)


def reference_state(learner: str, backbone: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random checkpoint in the reference's exact layout."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # timm initialises from the global generator: the same file whatever ran before
    net = timm.create_model(TAGS[backbone], pretrained=False, num_classes=0)
    # Versa's logits f.w_c grow with |f|^2 and nothing cancels them (proto subtracts |mu|^2): smaller features
    _randomize(net, gen, backbone, spread=0.6 if learner == "cnaps" else 1.0)
    state = {f"feature_extractor.{k}": v.clone() for k, v in net.state_dict().items()}
    if learner == "protonets":
        return state
    for layer in range(1, 6):
        cin = 3 if layer == 1 else 64
        p = f"set_encoder.encoder.layer{layer}"
        state[f"{p}.0.weight"] = _t(gen, 64, cin, 3, 3, scale=math.sqrt(2 / (9 * cin)))
        state[f"{p}.0.bias"] = _t(gen, 64, scale=0.1)
        state[f"{p}.1.weight"] = 1 + _t(gen, 64, scale=0.1)
        state[f"{p}.1.bias"] = _t(gen, 64, scale=0.1)
        state[f"{p}.1.running_mean"] = _t(gen, 64, scale=0.1)
        state[f"{p}.1.running_var"] = 1 + _t(gen, 64, scale=0.1).abs()
        state[f"{p}.1.num_batches_tracked"] = torch.tensor(0)
    names = sorted(f"{layer}.{w}" for layer in _film_layers(backbone, net) for w in ("weight", "bias"))
    for i, name in enumerate(names):
        channels = net.get_submodule(name.rsplit(".", 1)[0]).weight.numel()
        p = f"film_generator.generators.{i}.block"
        state[f"{p}.0.weight"], state[f"{p}.0.bias"] = _t(gen, 64, 64, scale=0.125), _t(gen, 64, scale=0.1)
        state[f"{p}.1.weight"], state[f"{p}.1.bias"] = 1 + _t(gen, 64, scale=0.1), _t(gen, 64, scale=0.1)
        state[f"{p}.3.weight"], state[f"{p}.3.bias"] = _t(gen, channels, 64, scale=0.125), _t(gen, channels, scale=0.1)
        state[f"film_generator.regularizers.{i}"] = _t(gen, channels, scale=0.05)  # FiLM: changes of ~5% per layer
    if learner == "cnaps":
        dim = 1280 if backbone.startswith("efficientnet") else 768
        for j, (n_in, n_out) in enumerate(((dim, dim), (dim, dim), (dim, dim))):
            state[f"classifier.weight_processor.linear{j + 1}.weight"] = _t(gen, n_out, n_in, scale=0.3 * n_in**-0.5)
            state[f"classifier.weight_processor.linear{j + 1}.bias"] = _t(gen, n_out, scale=0.02)
        for j, (n_in, n_out) in enumerate(((dim, 1), (1, 1), (1, 1))):
            state[f"classifier.bias_processor.linear{j + 1}.weight"] = _t(gen, n_out, n_in, scale=n_in**-0.5)
            state[f"classifier.bias_processor.linear{j + 1}.bias"] = _t(gen, n_out, scale=0.3)
    return state


def _mlp_elu(x: torch.Tensor, state: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
    h = F.elu(F.linear(x, state[f"{prefix}.linear1.weight"], state[f"{prefix}.linear1.bias"]))
    h = F.elu(F.linear(h, state[f"{prefix}.linear2.weight"], state[f"{prefix}.linear2.bias"]))
    out = F.linear(h, state[f"{prefix}.linear3.weight"], state[f"{prefix}.linear3.bias"])
    return out + x if out.shape == x.shape else out


def reference_probabilities(state: dict, learner: str, head: str, backbone: str, context, labels, target):
    """The reference model's personalise + predict, in float64 for the heads."""
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NORMS[backbone])
    ctx, tgt = ((f.float() / 255 - mean) / std for f in (context, target))
    net = timm.create_model(TAGS[backbone], pretrained=False, num_classes=0).eval()
    fe = {k.removeprefix("feature_extractor."): v for k, v in state.items() if k.startswith("feature_extractor.")}
    net.load_state_dict(fe)
    params: dict[str, torch.Tensor] = {}
    if learner != "protonets":
        x = ctx
        for layer in range(1, 6):
            p = f"set_encoder.encoder.layer{layer}"
            x = F.conv2d(x, state[f"{p}.0.weight"], state[f"{p}.0.bias"], padding=1)
            x = F.batch_norm(x, state[f"{p}.1.running_mean"], state[f"{p}.1.running_var"], state[f"{p}.1.weight"],
                             state[f"{p}.1.bias"], training=False, eps=1e-5)  # fmt: skip
            x = F.max_pool2d(F.relu(x), 2)
        z = x.mean((2, 3)).mean(0, keepdim=True)
        names = sorted(f"{layer}.{w}" for layer in _film_layers(backbone, net) for w in ("weight", "bias"))
        for i, name in enumerate(names):
            p = f"film_generator.generators.{i}.block"
            h = F.linear(z, state[f"{p}.0.weight"], state[f"{p}.0.bias"])
            h = F.relu(F.layer_norm(h, (64,), state[f"{p}.1.weight"], state[f"{p}.1.bias"], 1e-5))
            g = F.linear(h, state[f"{p}.3.weight"], state[f"{p}.3.bias"]).squeeze(0)
            r, base = state[f"film_generator.regularizers.{i}"], fe[name]
            params[name] = base * (1 + r * g) if name.endswith("weight") else base + r * g
    with torch.no_grad():
        f_ctx, f_tgt = (torch.func.functional_call(net, params, (x,)).double() for x in (ctx, tgt))
    way = int(labels.max()) + 1
    mus = torch.stack([f_ctx[labels == c].mean(0) for c in range(way)])
    if head == "proto":
        logits = f_tgt @ (2 * mus).T - (mus**2).sum(1)
    elif head == "proto_cosine":
        logits = 32 * F.normalize(f_tgt, dim=1) @ F.normalize(mus, dim=1).T
    elif head == "versa":
        s64 = {k: v.double() for k, v in state.items() if k.startswith("classifier.")}
        weight = _mlp_elu(mus, s64, "classifier.weight_processor")
        bias = _mlp_elu(mus, s64, "classifier.bias_processor").squeeze(1)
        logits = f_tgt @ weight.T + bias
    else:
        task_cov = torch.cov(f_ctx.T)
        eye = torch.eye(f_ctx.shape[1], dtype=torch.float64)
        logits = []
        for c in range(way):
            rows = f_ctx[labels == c]
            n = len(rows)
            cov = torch.cov(rows.T) if n > 1 else rows[0].var() * torch.ones_like(eye)  # the one-frame quirk
            lam = n / (n + 1)
            precision = torch.linalg.inv(lam * cov + (1 - lam) * task_cov + eye)
            diff = f_tgt - mus[c]
            logits.append(-((diff @ precision) * diff).sum(1))
        logits = torch.stack(logits, 1)
    return torch.softmax(logits, 1).float()


def _frames(n: int, seed: int) -> torch.Tensor:
    """Smooth random images (a few colour blobs upsampled), closer to photos than per-pixel noise."""
    gen = torch.Generator().manual_seed(seed)
    small = torch.rand((n, 3, 7, 7), generator=gen)
    return (F.interpolate(small, size=SIZE, mode="bilinear", align_corners=False) * 255).round().to(torch.uint8)


CASES = [
    ("protonets", "", "efficientnet_b0", "proto"),
    ("protonets", "_cosine", "efficientnet_b0", "proto_cosine"),
    ("simple_cnaps", "", "efficientnet_b0", "mahalanobis"),
    ("cnaps", "", "efficientnet_b0", "versa"),
    ("protonets", "", "vit_b_32", "proto"),
    # Of the 12 published layouts, these 8 cover every backbone, every learner and head,
    # and FiLM on both a CNN and a ViT; the larger networks are slow at 224 px on a CPU.
    pytest.param(
        "protonets", "_cosine", "efficientnet_v2_s", "proto_cosine", marks=(pytest.mark.slow, pytest.mark.heavy)
    ),
    pytest.param("simple_cnaps", "", "vit_b_32_clip", "mahalanobis", marks=(pytest.mark.slow, pytest.mark.heavy)),
    pytest.param("cnaps", "", "vit_b_32_clip", "versa", marks=(pytest.mark.slow, pytest.mark.heavy)),
]


@pytest.mark.parametrize(("learner", "cosine", "backbone", "head"), CASES)
def test_imported_checkpoint_gives_the_reference_probabilities(learner, cosine, backbone, head, tmp_path: Path):
    state = reference_state(learner, backbone, seed=len(learner) + len(cosine))
    ref = tmp_path / f"orbit_cluve_{learner}{cosine}_{backbone}_224_lite.pth"
    torch.save(state, ref)
    result = runner.invoke(app, ["import-orbit", str(ref), "--out", str(tmp_path / "ck.pt")])  # flags from the name
    assert result.exit_code == 0, result.output
    record = load_checkpoint(tmp_path / "ck.pt", "training")
    assert record["config"]["model"]["style"] == "reference" and record["config"]["model"]["head"] == head

    context, target = _frames(5, seed=1), _frames(4, seed=2)
    # simple_cnaps: class 1 has a single frame, so the reference's one-frame covariance is exercised
    labels = torch.tensor([0, 0, 1, 2, 2]) if head == "mahalanobis" else torch.tensor([0, 1, 2, 0, 1])
    learner_model, _ = open_model(Checkpoint(tmp_path / "ck.pt"), torch.device("cpu"))
    recognizer = learner_model.personalize(context.unsqueeze(1), labels, 3)
    ours = torch.softmax(recognizer.predict(target.unsqueeze(1)), 1)
    expected = reference_probabilities(state, learner, head, backbone, context, labels, target)
    gap = (ours - expected).abs().max().item()
    print(f"{learner}{cosine} {backbone}: max |dp| = {gap:.2e}; reference p = {expected.tolist()}")
    assert gap < 2e-3
    assert (ours.argmax(1) == expected.argmax(1)).all()
    assert ((expected > 0.02) & (expected < 0.98)).any()  # not a trivially saturated comparison


def test_import_errors_are_one_line_and_write_nothing(tmp_path: Path) -> None:
    good = reference_state("protonets", "efficientnet_b0")
    out = tmp_path / "ck.pt"

    def fails(path: Path, *flags: str) -> str:
        result = runner.invoke(app, ["import-orbit", str(path), "--out", str(out), *flags])
        assert result.exit_code == 1 and not out.exists(), result.output
        lines = result.output.strip().splitlines()
        assert len(" ".join(lines)) < 600 and lines[0].startswith("error:") and "Traceback" not in result.output
        return " ".join(result.output.split())

    named = tmp_path / "orbit_cluve_protonets_efficientnet_b0_224_lite.pth"
    (tmp_path / "notes.pth").write_text("not a checkpoint\n")
    text = fails(tmp_path / "notes.pth", "--learner", "protonets", "--backbone", "efficientnet_b0")
    assert "cannot be read as a reference checkpoint (.pth): not a PyTorch file" in text
    torch.save(good, named)
    named.write_bytes(named.read_bytes()[: named.stat().st_size // 2])
    assert "a PyTorch file that is cut off or damaged" in fails(named)

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(named, "wb") as f:
        pickle.dump({"feature_extractor.bn1.weight": Payload()}, f)
    assert "a pickle that imports posix.system, which would run code when loaded; refused" in fails(named)
    torch.save({"a": [1, 2]}, named)
    assert "holds no state_dict" in fails(named)

    missing = dict(good)
    del missing["feature_extractor.conv_head.weight"]
    missing["feature_extractor.bn2.weight"] = torch.ones(7)
    torch.save(missing, named)
    message = fails(named)
    assert "1 missing keys (feature_extractor.conv_head.weight)" in message
    assert "1 wrong shapes (feature_extractor.bn2.weight [7] (expected [1280]))" in message
    torch.save(good, named)
    message = fails(named, "--backbone", "vit_b_32")  # another architecture than the flags say
    assert "unexpected keys" in message and "looks like --learner protonets --backbone efficientnet_b0" in message
    assert "--head proto_cosine does not go" in fails(named, "--learner", "cnaps", "--head", "proto_cosine")
    anonymous = tmp_path / "weights.pth"
    torch.save(good, anonymous)
    assert "fix: give --learner" in fails(anonymous)


def test_stray_head_state_is_ignored_and_the_reference_wrapper_is_read(tmp_path: Path) -> None:
    state = reference_state("protonets", "efficientnet_b0")
    state["classifier.weight"] = torch.zeros(3, 1280)  # per-task head state a file may carry
    ref = tmp_path / "epoch.pth"
    torch.save({"model_state_dict": state, "epoch": 3}, ref)
    flags = ["--learner", "protonets", "--backbone", "efficientnet_b0", "--head", "proto_cosine"]
    result = runner.invoke(app, ["import-orbit", str(ref), "--out", str(tmp_path / "ck.pt"), *flags])
    assert result.exit_code == 0, result.output
    model = load_checkpoint(tmp_path / "ck.pt", "training")["config"]["model"]
    assert (model["backbone"], model["head"], model["logit_scale"]) == ("tf_efficientnet_b0", "proto_cosine", 32.0)


def test_import_personalize_recognize_from_jpegs(tmp_path: Path) -> None:
    """The end-to-end check: one 224 px JPEG per clean video, `personalize --videos`, `recognize`."""
    from PIL import Image

    state = reference_state("simple_cnaps", "efficientnet_b0", seed=7)
    ref = tmp_path / "orbit_cluve_simple_cnaps_efficientnet_b0_224_lite.pth"
    torch.save(state, ref)
    assert runner.invoke(app, ["import-orbit", str(ref), "--out", str(tmp_path / "ck.pt")]).exit_code == 0

    frames = _frames(8, seed=3)
    videos = {"cup": 2, "keys": 1, "wallet": 2}  # keys: a single context frame (the reference's one-frame covariance)
    context, labels, row = [], [], 0
    for label, (name, count) in enumerate(videos.items()):
        for v in range(count):
            folder = tmp_path / "me" / name / "clean" / f"{name}-{v}"
            folder.mkdir(parents=True)
            Image.fromarray(frames[row].permute(1, 2, 0).numpy()).save(folder / f"{name}-{v}-00001.jpg", quality=95)
            context.append(folder / f"{name}-{v}-00001.jpg")
            labels.append(label)
            row += 1
    target_dir = tmp_path / "walk"
    target_dir.mkdir()
    for i in range(3):
        Image.fromarray(frames[row + i].permute(1, 2, 0).numpy()).save(target_dir / f"walk-{i + 1:05d}.jpg")
    me, csv_path = tmp_path / "me.pt", tmp_path / "walk.csv"
    result = runner.invoke(app, ["personalize", "--checkpoint", str(tmp_path / "ck.pt"), "--videos",
                                 str(tmp_path / "me"), "--out", str(me), "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["recognize", "--model", str(me), str(target_dir), "--csv", str(csv_path), "--json"])
    assert result.exit_code == 0, result.output

    def read(path: Path) -> torch.Tensor:  # the reference reads frames with PIL
        return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)

    targets = sorted(target_dir.iterdir())
    expected = reference_probabilities(state, "simple_cnaps", "mahalanobis", "efficientnet_b0",
                                       torch.stack([read(p) for p in context]), torch.tensor(labels),
                                       torch.stack([read(p) for p in targets]))  # fmt: skip
    rows = csv_path.read_text().splitlines()
    assert rows[0].endswith("p_cup,p_keys,p_wallet")
    ours = torch.tensor([[float(x) for x in line.split(",")[-3:]] for line in rows[1:]])
    gap = (ours - expected).abs().max().item()
    print(f"end to end simple_cnaps efficientnet_b0: max |dp| = {gap:.2e}")
    assert gap < 2e-3
