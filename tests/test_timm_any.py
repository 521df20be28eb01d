"""Any timm image model as a backbone (timm/<model>[.<tag>]): five families, offline, random weights, small frames.

The families are timm's own test-sized nets (ResNet, ConvNeXt, EfficientNet, MaxViT) and, registered here the way timm
registers its own, DINOv2's ViT at test size: class token, four registers without position embeddings, LayerScale,
14 px patches, 518 px default, at width 64 and depth 2. The real ViT-S/14 is checked on the meta device (no memory).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn
from typer.testing import CliRunner

from orbit_lite.config import LiteConfig, ModelConfig
from orbit_lite.errors import OrbitLiteError
from orbit_lite.learners import create_learner
from orbit_lite.models import timm_backbones
from orbit_lite.models.backbones import Backbone, create_backbone
from orbit_lite.models.timm_any import resolve
from orbit_lite.personal import PersonalModel, load_personal, save_personal

# timm finds a model's pretrained config in its module's default_cfgs, and orbit-lite its state_dict filter in the
# module's checkpoint_filter_fn (timm's convention); both are this module's for the test model.
default_cfgs = generate_default_cfgs(
    {"orbit_test_dinov2_reg4": {"input_size": (3, 518, 518), "fixed_input_size": True, "num_classes": 0,
                                "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD, "classifier": "head"}}
)  # fmt: skip
__all__ = ["checkpoint_filter_fn"]


@register_model
def orbit_test_dinov2_reg4(pretrained: bool = False, **kwargs: object) -> VisionTransformer:
    """DINOv2-with-registers' ViT layout (timm's vit_small_patch14_reg4_dinov2) at width 64, depth 2."""
    args = {"img_size": 518, "patch_size": 14, "embed_dim": 64, "depth": 2, "num_heads": 2, "init_values": 1e-5,
            "reg_tokens": 4, "no_embed_class": True}  # fmt: skip
    return build_model_with_cfg(VisionTransformer, "orbit_test_dinov2_reg4", pretrained,
                                pretrained_filter_fn=checkpoint_filter_fn, **{**args, **kwargs})  # fmt: skip


DINO = "timm/vit_small_patch14_reg4_dinov2"
TINY_DINO = "timm/orbit_test_dinov2_reg4"
# family: (name, two frame sizes, FiLM layers by the rule, the learner its LITE step uses)
FAMILIES = {
    # stem conv BNs (2) + stem BN + 2 per BasicBlock (2) + 3 per Bottleneck (2) + 3 downsample BNs = 15
    "resnet": ("timm/test_resnet", (32, 48), 15, "protonets"),
    # stem LN2d + one LN per block (1+2+4+2) + 3 downsample LN2d + head.norm (before the dropped head.fc) = 14
    "convnext": ("timm/test_convnext", (32, 48), 14, "simple_cnaps"),
    # every BatchNormAct2d: stem bn1, 2 or 3 per block (11), head bn2 = 13
    "efficientnet": ("timm/test_efficientnet", (32, 48), 13, "cnaps"),
    # norm1, norm2 of 2 blocks + final norm = 5 (registers and class token have no norm)
    "vit_registers": (TINY_DINO, (28, 42), 5, "simple_cnaps"),
    # per stage 7 (MBConv pre_norm, norm1, norm2; window and grid attention norm1, norm2) x 4 + stem + final = 30
    "maxvit": ("timm/test_maxvit", (32, 64), 30, "cnaps"),
}
CASES = [(family, size) for family, (_, sizes, _, _) in FAMILIES.items() for size in sizes]


def _frames(n: int, size: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=gen)


def _film(bb: Backbone, scale: float, seed: int = 1) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return {n: (1 + scale * torch.randn(c, generator=gen), scale * torch.randn(c, generator=gen)) for n, c in
            bb.film_layers}  # fmt: skip


@pytest.fixture(scope="module")
def backbones() -> dict[tuple[str, int], Backbone]:
    torch.manual_seed(0)
    return {(family, size): create_backbone(FAMILIES[family][0], "none", size) for family, size in CASES}


def test_names_resolve_to_timms_own_config() -> None:
    import timm
    from timm.models import get_pretrained_cfg

    convnext = resolve("timm/convnext_tiny")
    cfg = get_pretrained_cfg("convnext_tiny")  # no tag: timm's default weights, named in full
    assert convnext.name == f"timm/convnext_tiny.{cfg.tag}" and convnext.tag == f"convnext_tiny.{cfg.tag}"
    assert convnext.mean == tuple(cfg.mean) and convnext.std == tuple(cfg.std)
    assert (convnext.feature_dim, convnext.sized, convnext.size_multiple, convnext.min_size) == (768, False, 1, 32)
    assert convnext.classifier == ("head.fc",)
    dino = resolve(f"{DINO}.lvd142m")
    assert (dino.feature_dim, dino.sized, dino.size_multiple, dino.default_size) == (384, True, 14, 518)
    assert dino.mean == tuple(get_pretrained_cfg("vit_small_patch14_reg4_dinov2.lvd142m").mean)
    assert resolve("timm/test_maxvit").tag is None  # timm publishes no weights for it
    assert resolve("timm/test_maxvit").size_multiple == 32  # window partitions: a multiple of the total stride
    assert "timm/convnext_tiny" not in timm.list_models()  # our prefix is ours, not a timm name


def test_a_wrong_name_or_tag_is_one_line_with_the_closest_names() -> None:
    with pytest.raises(OrbitLiteError) as err:
        create_backbone("timm/convnxt_tiny", "none", 64)
    message = str(err.value)
    assert "\n" not in message and "closest: timm/convnext_tiny" in message
    with pytest.raises(OrbitLiteError, match=r"no pretrained tag 'in22' for convnext_tiny; its tags: .*fb_in22k"):
        create_backbone("timm/convnext_tiny.in22", "none", 64)
    with pytest.raises(OrbitLiteError, match=r"unknown backbone 'resnet_18'; .* or any timm image model"):
        create_backbone("resnet_18", "none", 64)


@pytest.mark.parametrize(
    ("name", "size", "expected"),
    [
        (DINO, 100, "it takes a side >= 14 that is a multiple of 14: nearest 98, 112 (default 518)"),
        ("timm/test_maxvit", 100, "it takes a side >= 32 that is a multiple of 32: nearest 96, 128 (default 160)"),
        ("timm/test_convnext", 16, "it takes a side >= 32: nearest 32 (default 160)"),
    ],
)
def test_an_impossible_frame_size_names_the_sizes_it_can_take(name: str, size: int, expected: str) -> None:
    with pytest.raises(OrbitLiteError) as err:
        create_backbone(name, "none", size)
    assert str(err.value).endswith(f"cannot take frame size {size}: {expected}; fix: set data.frame_size")


@pytest.mark.parametrize(("family", "size"), CASES)
def test_features_and_film_at_two_frame_sizes(backbones: dict, family: str, size: int) -> None:
    bb = backbones[family, size]
    frames = _frames(3, size)
    with torch.no_grad():
        plain = bb(frames)
        identity = bb(frames, _film(bb, 0.0))
        adapted = bb(frames, _film(bb, 0.3))
        alone = bb(frames[:1])
    assert plain.shape == (3, bb.feature_dim) and torch.isfinite(plain).all() and plain.std() > 0
    assert bb.feature_dim == bb.net.head_hidden_size  # the pooled pre-classifier width timm reports
    assert len(bb.film_layers) == FAMILIES[family][2]
    assert all(bb.net.get_submodule(n).weight.shape == (c,) for n, c in bb.film_layers)
    assert not any(n == "head.fc" or n.startswith("head.fc.") for n, _ in bb.film_layers)
    assert torch.equal(identity, plain) and (adapted - plain).abs().max() > 1e-3
    # train mode keeps the whole timm network in eval mode: a frame's features do not depend on its batch
    assert bb.training and not any(m.training for m in bb.net.modules())
    torch.testing.assert_close(alone[0], plain[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_lite_step_personalize_and_reload(family: str, tmp_path: Path) -> None:
    name, sizes, _, learner_name = FAMILIES[family]
    size = sizes[0]
    torch.manual_seed(0)
    learner = create_learner(ModelConfig(learner=learner_name, backbone=name, weights="none"), size)
    context, query = _frames(6, size, seed=2)[:, None], _frames(4, size, seed=3)[:, None]
    labels, query_labels = torch.arange(6) % 3, torch.arange(4) % 3
    lite = LiteConfig(h=2, chunk_size=4, query_chunk=2)
    stats = learner.train_task(context, labels, query, query_labels, 3, lite, torch.Generator().manual_seed(0))
    assert stats.queries == 4 and stats.loss > 0 and torch.isfinite(torch.tensor(stats.loss))
    trained = learner.backbone if learner.learn_backbone else learner.film
    assert sum(float(p.grad.abs().sum()) for p in trained.parameters() if p.grad is not None) > 0
    if learner.film is not None:  # the generator is sized from the backbone's FiLM layers
        assert learner.film.names == [n for n, _ in learner.backbone.film_layers]
    recognizer = learner.eval().personalize(context, labels, 3)
    save_personal(tmp_path / "me.pt", PersonalModel(recognizer, ["a", "b", "c"], "me", size, 1, {}))
    loaded = load_personal(tmp_path / "me.pt")
    assert loaded.recognizer.backbone.spec.name == resolve(name).name
    torch.testing.assert_close(loaded.recognizer.predict(query), recognizer.predict(query))


@pytest.mark.slow
@pytest.mark.heavy  # minutes on a 2-core CPU: `make test-all`
@pytest.mark.parametrize("family", list(FAMILIES))
def test_onnx_export_matches_pytorch(family: str, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from orbit_lite.export import export_onnx, onnx_parity

    name, sizes, _, learner_name = FAMILIES[family]
    torch.manual_seed(0)
    learner = create_learner(ModelConfig(learner=learner_name, backbone=name, weights="none"), sizes[0])
    if learner.film is not None:
        with torch.no_grad():
            for gate in [*learner.film.r_gamma.values(), *learner.film.r_beta.values()]:
                gate.normal_(0, 0.5)  # FiLM far from the identity, so that folding it is tested
    recognizer = learner.eval().personalize(_frames(6, sizes[0])[:, None], torch.arange(6) % 3, 3)
    model = PersonalModel(recognizer, ["a", "b", "c"], "me", sizes[0], 1, {})
    path = export_onnx(model, tmp_path / "me.onnx")
    assert onnx_parity(model, path, batch=3) < 1e-4


def test_bias_free_norms_are_scaled_only() -> None:
    from orbit_lite.export import ExportedRecognizer

    torch.manual_seed(0)
    learner = create_learner(ModelConfig(learner="simple_cnaps", backbone="timm/test_vit4", weights="none"), 32)
    bb = learner.backbone  # test_vit4 normalizes with RMSNorm, which has a weight and no bias
    assert len(bb.film_layers) == 19 and bb.film_scale_only == {n for n, _ in bb.film_layers}
    assert len(learner.film.beta) == 0 and len(learner.film.r_beta) == 0  # no shift networks to train
    film = learner.film(torch.randn(learner.film.gamma[learner.film._keys[0]][0].in_features))
    assert all(torch.equal(beta, torch.zeros_like(beta)) for _, beta in film.values())
    frames = _frames(2, 32)
    with torch.no_grad():
        assert (bb(frames, _film(bb, 0.3)) - bb(frames)).abs().max() > 1e-3
    with torch.no_grad():
        for gate in learner.film.r_gamma.values():
            gate.normal_(0, 0.5)
    recognizer = learner.eval().personalize(_frames(6, 32, seed=4)[:, None], torch.arange(6) % 3, 3)
    with torch.inference_mode():  # the export's folded network computes the same
        logits, _ = ExportedRecognizer(PersonalModel(recognizer, ["a", "b", "c"], "me", 32, 1, {}))(frames)
    torch.testing.assert_close(logits, recognizer.predict(frames), rtol=1e-4, atol=1e-4)


def test_a_hub_file_at_518_px_loads_into_a_28_px_model(tmp_path: Path) -> None:
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    hub = timm.create_model(TINY_DINO.removeprefix("timm/"), num_classes=0)  # DINOv2 hub files: 518 px, no head
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in hub.state_dict().items()}, path)
    bb = create_backbone(TINY_DINO, str(path), 28)
    assert hub.pos_embed.shape == (1, 37 * 37, 64) and bb.net.pos_embed.shape == (1, 2 * 2, 64)  # resampled
    # timm's own loader on the same file and size is the independent reference
    ref = timm.create_model(TINY_DINO.removeprefix("timm/"), pretrained=True, num_classes=0, img_size=28,
                            pretrained_cfg_overlay={"file": str(path)}).eval()  # fmt: skip
    frames = _frames(2, 28)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (bb.spec.mean, bb.spec.std))
    with torch.no_grad():
        torch.testing.assert_close(bb(frames), ref((frames.float() / 255 - mean) / std), rtol=1e-4, atol=1e-4)
    torch.save(timm.create_model("test_vit", num_classes=0).state_dict(), path.with_suffix(".pth"))
    with pytest.raises(OrbitLiteError, match=r"does not (fit|match) timm/orbit_test_dinov2_reg4"):
        create_backbone(TINY_DINO, str(path.with_suffix(".pth")), 28)


def test_a_state_dict_with_its_classifier_loads_without_it(tmp_path: Path) -> None:
    import timm

    torch.manual_seed(0)
    net = timm.create_model("test_convnext", num_classes=10).eval()
    torch.save(net.state_dict(), tmp_path / "convnext.pth")
    bb = create_backbone("timm/test_convnext", str(tmp_path / "convnext.pth"), 32)
    frames = _frames(2, 32)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (bb.spec.mean, bb.spec.std))
    with torch.no_grad():
        expected = net.forward_head(net.forward_features((frames.float() / 255 - mean) / std), pre_logits=True)
        torch.testing.assert_close(bb(frames), expected, rtol=1e-5, atol=1e-5)


def test_offline_pretrained_weights_give_the_one_line_message(monkeypatch: pytest.MonkeyPatch) -> None:
    import timm

    create = timm.create_model

    def offline(name: str, pretrained: bool = False, **kwargs: object) -> torch.nn.Module:
        if pretrained:
            raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")
        return create(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline)
    monkeypatch.setattr(timm_backbones, "unreachable", lambda url: None)  # the hub answers, the download fails
    with pytest.raises(OrbitLiteError) as err:
        create_backbone("timm/test_resnet.r160_in1k", "pretrained", 32)
    message = str(err.value)
    assert "\n" not in message and "cannot download timm weights test_resnet.r160_in1k" in message
    assert "https://huggingface.co/timm/test_resnet.r160_in1k/resolve/main/model.safetensors" in message
    assert "--set model.weights=/path/to/model.safetensors" in message
    with pytest.raises(OrbitLiteError, match="timm/test_maxvit has no pretrained weights"):
        create_backbone("timm/test_maxvit", "pretrained", 32)


def test_backbones_command_counts_macs_like_the_vit_formula() -> None:
    import timm

    from orbit_lite.cli.main import app

    result = CliRunner().invoke(app, ["backbones", DINO, "--frame-size", "42", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    # ViT-S/14: 9 patches + class token + 4 registers; per block qkv, proj and the 4x MLP are 12 T D^2 MACs and
    # attention 2 T^2 D; the patch embedding is a 14 x 14 x 3 -> D matmul per patch.
    tokens, dim = 9 + 1 + 4, 384
    expected = 12 * (12 * tokens * dim**2 + 2 * tokens**2 * dim) + 9 * 14 * 14 * 3 * dim
    assert info["macs"] == expected
    assert info["feature_dim"] == 384 and info["film_layers"] == 25 and info["frame_size"] == 42
    with torch.device("meta"):  # timm's own count at 518 px, less the position embeddings of 37 x 37 - 3 x 3 patches
        at_518 = sum(p.numel() for p in timm.create_model(DINO.removeprefix("timm/"), num_classes=0).parameters())
    assert info["parameters"] == at_518 - (37 * 37 - 3 * 3) * dim
    assert info["default_size"] == 518 and "multiple of 14" in info["size_rule"] and info["onnx"] is None
    listing = CliRunner().invoke(app, ["backbones", "--json"])
    assert {"tf_efficientnet_b0", "tiny_vit"} <= {row["name"] for row in json.loads(listing.stdout)}
    bad = CliRunner().invoke(app, ["backbones", DINO, "--frame-size", "50"])
    assert bad.exit_code == 1 and "nearest 42, 56" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_channels_last_changes_nothing_but_the_layout() -> None:
    torch.manual_seed(0)
    bb = create_backbone("timm/test_convnext", "none", 32)
    frames = _frames(2, 32)
    with torch.no_grad():
        before = bb(frames)
        assert bb.use_channels_last(True)
        torch.testing.assert_close(bb(frames), before, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.heavy  # minutes on a 2-core CPU: `make test-all`
def test_train_personalize_recognize_and_evaluate_from_the_command_line(tiny_frames: Path, tmp_path: Path) -> None:
    import yaml

    from orbit_lite.cli.main import app
    from orbit_lite.data.layout import index_tree
    from tests.conftest import TINY_RECIPE

    runner = CliRunner()
    model = {**TINY_RECIPE["model"], "learner": "simple_cnaps", "backbone": "timm/test_efficientnet"}
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({**TINY_RECIPE, "model": model, "train": {**TINY_RECIPE["train"], "epochs": 1}}))
    trained = runner.invoke(app, ["train", "--data", str(tiny_frames), "--config", str(recipe), "--out",
                                  str(tmp_path / "run")])  # fmt: skip
    assert trained.exit_code == 0, trained.output
    checkpoint = tmp_path / "run" / "checkpoints" / "best.pt"
    user = index_tree(tiny_frames).users("test")[0]
    personal = runner.invoke(app, ["personalize", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "me.pt"),
                                   "--user", user.user_id, "--data", str(tiny_frames)])  # fmt: skip
    assert personal.exit_code == 0, personal.output
    assert load_personal(tmp_path / "me.pt").recognizer.backbone.spec.name == "timm/test_efficientnet.r160_in1k"
    clip = next(v for v in user.videos() if v.video_type == "clutter")
    seen = runner.invoke(app, ["recognize", "--model", str(tmp_path / "me.pt"), str(clip.path), "--json"])
    assert seen.exit_code == 0, seen.output
    assert json.loads(seen.stdout)["inputs"][0]["frames"] == clip.num_frames
    scored = runner.invoke(app, ["evaluate", "--data", str(tiny_frames), "--checkpoint", str(checkpoint), "--out",
                                 str(tmp_path / "eval"), "--tasks", "1"])  # fmt: skip
    assert scored.exit_code == 0, scored.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert 0 <= metrics["frame_accuracy"]["mean"] <= 100 and metrics["frame_accuracy"]["n"] > 0
