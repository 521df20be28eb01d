"""Backbone registry contract: shapes, FiLM layers and semantics, frozen statistics, weight loading and its errors."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
import torchvision
from torch import nn

from orbit_lite.errors import OrbitLiteError
from orbit_lite.models import timm_backbones
from orbit_lite.models.backbones import BACKBONES, Backbone, available_backbones, create_backbone

SIZE = 64  # a multiple of 32 that every registered backbone accepts, small enough for the big nets on CPU
FILM_COUNTS = {
    "efficientnet_b0": 18,
    "resnet18": 17,
    "efficientnet_v2_s": 42,
    "vit_b_32": 25,
    "tiny_cnn": 4,
    "small_cnn": 6,
    "tiny_vit": 5,
    "tf_efficientnet_b0": 17,
    "efficientnet_lite0": 17,
    "tf_efficientnetv2_s_in21k": 42,
    "vit_b_32_in21k": 25,
    "vit_b_32_clip_laion2b": 25,
}
# The reference's state_dict under feature_extractor.: its keys, and norm-layer eps.
REFERENCE_KEYS = {"tf_efficientnet_b0": 358, "tf_efficientnetv2_s_in21k": 780, "vit_b_32_in21k": 150,
                  "vit_b_32_clip_laion2b": 151}  # fmt: skip
REFERENCE_EPS = {"tf_efficientnet_b0": 1e-3, "tf_efficientnetv2_s_in21k": 1e-3, "vit_b_32_in21k": 1e-6,
                 "vit_b_32_clip_laion2b": 1e-5}  # fmt: skip
B0_CHANNELS = [32, 32, 96, 144, 144, 240, 240, 480, 480, 480, 672, 672, 672, 1152, 1152, 1152, 1152, 1280]


@pytest.fixture(scope="module", params=available_backbones())
def _pristine(request: pytest.FixtureRequest) -> Backbone:
    torch.manual_seed(0)
    return create_backbone(request.param, "none", frame_size=SIZE)


@pytest.fixture
def backbone(_pristine: Backbone) -> Backbone:
    # Built once per module (timm networks take seconds), but each test gets its own copy: a test that switches
    # channels-last, buckets or train mode cannot change what the next one sees.
    return copy.deepcopy(_pristine)


def _frames(n: int, size: int = SIZE, seed: int = 0) -> torch.Tensor:
    """``[n, 3, size, size]`` uint8 as a channels-last strided view, the layout the task loader produces."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, generator=gen).permute(0, 3, 1, 2)


def _film(bb: Backbone, scale: float, seed: int = 1) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return {
        name: (1 + scale * torch.randn(c, generator=gen), scale * torch.randn(c, generator=gen))
        for name, c in bb.film_layers
    }


def test_registry_lists_every_spec() -> None:
    assert available_backbones() == sorted(FILM_COUNTS)
    assert all(BACKBONES[name].name == name for name in BACKBONES)


def test_uint8_frames_give_finite_features(backbone: Backbone) -> None:
    with torch.no_grad():
        features = backbone(_frames(2))
    assert features.shape == (2, backbone.feature_dim)
    assert backbone.feature_dim == backbone.spec.feature_dim
    assert torch.isfinite(features).all()
    assert features.std() > 0


def test_float_frames_match_uint8(backbone: Backbone) -> None:
    frames = _frames(2)
    with torch.no_grad():
        from_uint8 = backbone(frames)
        from_float = backbone(frames.contiguous().float() / 255)
    torch.testing.assert_close(from_float, from_uint8, rtol=1e-4, atol=1e-4)


def test_film_layers_resolve_to_affine_norms(backbone: Backbone) -> None:
    layers = backbone.film_layers
    assert len(layers) == FILM_COUNTS[backbone.spec.name]
    names = [name for name, _ in layers]
    assert names == sorted(names) and len(set(names)) == len(names)
    for name, channels in layers:
        module = backbone.net.get_submodule(name)
        assert isinstance(module, backbone.spec.film_norm_types)
        assert module.weight.shape == (channels,) and module.bias.shape == (channels,)


def test_identity_film_is_exact_and_random_film_changes_features(backbone: Backbone) -> None:
    frames = _frames(2)
    with torch.no_grad():
        plain = backbone(frames)
        identity = backbone(frames, _film(backbone, scale=0.0))
        adapted = backbone(frames, _film(backbone, scale=0.2))
    assert torch.equal(identity, plain)
    assert (adapted - plain).abs().max() > 1e-3


def test_film_gradients_reach_gamma_beta_and_norm_weights(backbone: Backbone) -> None:
    film = {name: (g.requires_grad_(), b.requires_grad_()) for name, (g, b) in _film(backbone, scale=0.1).items()}
    backbone.zero_grad()
    backbone(_frames(2), film).square().mean().backward()
    first, last = backbone.film_layers[0][0], backbone.film_layers[-1][0]
    for name in (first, last):
        gamma, beta = film[name]
        assert gamma.grad is not None and gamma.grad.abs().sum() > 0
        assert beta.grad is not None and beta.grad.abs().sum() > 0
        assert backbone.net.get_submodule(name).weight.grad.abs().sum() > 0
    backbone.zero_grad()


@pytest.mark.parametrize("training", [False, True])
def test_features_do_not_depend_on_batch_mates(backbone: Backbone, training: bool) -> None:
    backbone.train(training)
    frames = _frames(3)
    with torch.no_grad():
        alone = backbone(frames[:1])
        in_batch = backbone(frames)
    backbone.train()
    torch.testing.assert_close(alone[0], in_batch[0], rtol=1e-4, atol=1e-5)


def test_train_mode_keeps_batch_norm_and_dropout_frozen() -> None:
    bb = create_backbone("efficientnet_b0", "none", frame_size=SIZE).train()
    assert bb.training and bb.net.training
    frozen = [m for m in bb.modules() if isinstance(m, (nn.BatchNorm2d, nn.Dropout, torchvision.ops.StochasticDepth))]
    assert len(frozen) > 40
    assert not any(m.training for m in frozen)


def test_efficientnet_b0_film_layers() -> None:
    layers = create_backbone("efficientnet_b0", "none", frame_size=SIZE).film_layers
    assert [c for _, c in layers] == B0_CHANNELS  # sorted names happen to be block order for B0's one-digit stages
    assert layers[0] == ("features.0.1", 32) and layers[-1] == ("features.8.1", 1280)
    assert layers[1] == ("features.1.0.block.0.1", 32)  # the first block has no expansion: depthwise BN is block.0
    assert all(name.endswith("block.1.1") for name, _ in layers[2:-1])


@pytest.mark.parametrize("name", sorted(REFERENCE_KEYS))
def test_timm_backbones_have_the_reference_layout(name: str) -> None:
    backbone = create_backbone(name, "none", frame_size=SIZE)
    state = backbone.net.state_dict()
    assert len(state) == REFERENCE_KEYS[name]
    norms = [m for m in backbone.net.modules() if isinstance(m, backbone.spec.film_norm_types)]
    assert {m.eps for m in norms} == {REFERENCE_EPS[name]}
    cfg = backbone.net.pretrained_cfg  # the normalization travels with timm's weights: ours must be the same
    assert backbone.spec.timm_tag == f"{cfg['architecture']}.{cfg['tag']}"
    assert backbone.spec.mean == pytest.approx(cfg["mean"]) and backbone.spec.std == pytest.approx(cfg["std"])
    names = [layer for layer, _ in backbone.film_layers]
    if name == "tf_efficientnet_b0":  # FiLM: stem, head, each inverted residual's depthwise BN; not blocks.0.0
        assert [c for _, c in backbone.film_layers] == [96, 144, 144, 240, 240, 480, 480, 480, 672, 672, 672, 1152,
                                                        1152, 1152, 1152, 32, 1280]  # fmt: skip
        assert names[-2:] == ["bn1", "bn2"] and "blocks.0.0.bn1" not in names
    if name.startswith("vit_"):
        assert "norm_pre" not in names and names[-1] == "norm" and names[:3] == ["blocks.0.norm1", "blocks.0.norm2",
                                                                                 "blocks.1.norm1"]  # fmt: skip


def test_reference_film_style_shifts_the_bias_without_scaling_it() -> None:
    torch.manual_seed(0)
    ours = create_backbone("tiny_cnn", "none", frame_size=SIZE)
    reference = create_backbone("tiny_cnn", "none", frame_size=SIZE, film_style="reference")
    with torch.no_grad():
        for name, _ in ours.film_layers:
            ours.net.get_submodule(name).bias.normal_()  # a zero bias would hide the difference
    reference.load_state_dict(ours.state_dict())
    film = _film(ours, scale=0.3)
    # reference: (gamma w, b + beta); orbit-lite: (gamma w, gamma b + beta'), equal when beta' = beta - (gamma - 1) b
    shifted = {n: (g, b - (g - 1) * ours.net.get_submodule(n).bias.detach()) for n, (g, b) in film.items()}
    with torch.no_grad():
        torch.testing.assert_close(reference(_frames(2), film), ours(_frames(2), shifted), rtol=1e-4, atol=1e-5)
        assert (reference(_frames(2), film) - ours(_frames(2), film)).abs().max() > 1e-3
    with pytest.raises(OrbitLiteError, match="unknown FiLM style"):
        create_backbone("tiny_cnn", "none", frame_size=SIZE, film_style="mine")


def test_timm_offline_error_names_the_tag_and_the_file_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    import timm

    def no_network(name: str, pretrained: bool = False, **kwargs: object) -> None:
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    monkeypatch.setattr(timm, "create_model", no_network)
    monkeypatch.setattr(timm_backbones, "unreachable", lambda url: None)  # the hub answers, the download fails
    with pytest.raises(OrbitLiteError) as err:
        create_backbone("vit_b_32_clip_laion2b", "pretrained", frame_size=224)
    message = str(err.value)
    assert "\n" not in message and "vit_base_patch32_clip_224.laion2b" in message and "couldn't connect" in message
    assert "--set model.weights=/path/to/model.safetensors" in message


def test_timm_weights_fail_at_once_offline_and_name_the_offline_backbone(monkeypatch: pytest.MonkeyPatch) -> None:
    import timm

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("timm must not be asked to download when the hub cannot be reached")

    asked: list[str] = []
    monkeypatch.setattr(timm, "create_model", never)
    monkeypatch.setattr(timm_backbones, "is_cached", lambda tag, url: False)
    monkeypatch.setattr(timm_backbones, "unreachable", lambda url: asked.append(url) or "Name or service not known")
    with pytest.raises(OrbitLiteError) as err:
        create_backbone("tf_efficientnet_b0", "pretrained", frame_size=SIZE)
    message = str(err.value)
    assert asked == ["https://huggingface.co/timm/tf_efficientnet_b0.aa_in1k/resolve/main/model.safetensors"]
    assert "\n" not in message and "huggingface.co cannot be reached (Name or service not known)" in message
    assert "--set model.backbone=efficientnet_lite0" in message and "--set model.weights=/path/to/" in message


def test_unreachable_answers_quickly_for_a_closed_port() -> None:
    started = time.perf_counter()
    why = timm_backbones.unreachable("http://127.0.0.1:9/weights.pth", timeout=2.0)  # port 9 (discard): closed
    assert why is not None and "\n" not in why
    assert time.perf_counter() - started < 2.0


def test_timm_weights_from_a_local_file(tmp_path: Path) -> None:
    import timm

    torch.manual_seed(0)
    net = timm.create_model("tf_efficientnet_b0", pretrained=False, num_classes=0).eval()
    path = tmp_path / "tf_efficientnet_b0.pth"
    torch.save(net.state_dict(), path)
    bb = create_backbone("tf_efficientnet_b0", str(path), frame_size=SIZE)
    frames = _frames(2)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (bb.spec.mean, bb.spec.std))
    with torch.no_grad():
        torch.testing.assert_close(bb(frames), net((frames.float() / 255 - mean) / std), rtol=1e-4, atol=1e-5)
    # A random B0 gives nearly the same features for any input, so the features alone would not notice the channel
    # statistics in BGR order: the network's input is compared with timm's own (RGB) normalization instead.
    seen = []
    hook = bb.net.conv_stem.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    with torch.no_grad():
        bb(frames)
    hook.remove()
    rgb_mean, rgb_std = (torch.tensor(net.pretrained_cfg[k]).view(1, 3, 1, 1) for k in ("mean", "std"))
    torch.testing.assert_close(seen[0], (frames.float() / 255 - rgb_mean) / rgb_std, rtol=1e-5, atol=1e-5)
    torch.save(timm.create_model("tf_efficientnet_b1", num_classes=0).state_dict(), path)  # another architecture
    with pytest.raises(OrbitLiteError, match=r"does not match tf_efficientnet_b0: 0 missing keys .* unexpected keys"):
        create_backbone("tf_efficientnet_b0", str(path), frame_size=SIZE)


def test_timm_vit_file_from_224_px_fits_other_frame_sizes(tmp_path: Path) -> None:
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = timm.create_model("vit_base_patch32_224", pretrained=False, num_classes=10)  # hub files keep their head
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, path)
    bb = create_backbone("vit_b_32_in21k", str(path), frame_size=SIZE)
    assert bb.net.pos_embed.shape == (1, 5, 768)  # 7 x 7 patches resampled to 2 x 2, class token kept
    torch.testing.assert_close(bb.net.pos_embed[0, 0], net.pos_embed[0, 0])
    torch.testing.assert_close(bb.net.blocks[11].mlp.fc2.weight, net.blocks[11].mlp.fc2.weight)


def test_frame_sizes_follow_each_backbones_rule() -> None:
    for name, size in [("tiny_cnn", 16), ("tiny_cnn", 40), ("tiny_vit", 24), ("resnet18", 33)]:
        bb = create_backbone(name, "none", frame_size=size)
        with torch.no_grad():
            assert bb(_frames(1, size)).shape == (1, bb.feature_dim)
    with pytest.raises(OrbitLiteError, match="multiple of 32"):
        create_backbone("vit_b_32", "none", frame_size=48)
    with pytest.raises(OrbitLiteError, match=">= 16"):
        create_backbone("tiny_cnn", "none", frame_size=8)
    with pytest.raises(OrbitLiteError, match="built for 24x24 frames, got 32x32"):
        create_backbone("tiny_vit", "none", frame_size=24)(_frames(1, 32))


def test_imagenet_offline_error_names_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def no_network(url: str, *args: object, **kwargs: object) -> None:
        raise URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # an empty cache, whatever this machine holds
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(OrbitLiteError) as err:
        create_backbone("resnet18", "imagenet", frame_size=SIZE)
    message = str(err.value)
    assert "\n" not in message
    assert "no internet" in message and "resnet18-f37072fd.pth" in message
    assert "--set model.weights=/path/resnet18-f37072fd.pth" in message
    assert str(tmp_path / "checkpoints") in message


def test_imagenet_vit_weights_are_interpolated_to_the_frame_size(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    state = torchvision.models.vit_b_32(weights=None).state_dict()  # the 224 px layout: 7 x 7 patches + class token
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda url, **kwargs: state)
    bb = create_backbone("vit_b_32", "imagenet", frame_size=SIZE)
    assert bb.net.encoder.pos_embedding.shape == (1, 5, 768)
    torch.testing.assert_close(bb.net.encoder.pos_embedding[0, 0], state["encoder.pos_embedding"][0, 0])
    torch.testing.assert_close(bb.net.conv_proj.weight, state["conv_proj.weight"])


def test_nets_without_pretrained_weights_refuse_imagenet() -> None:
    with pytest.raises(OrbitLiteError, match="tiny_cnn has no pretrained weights"):
        create_backbone("tiny_cnn", "imagenet", frame_size=SIZE)


def test_local_weights_file_round_trips(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = create_backbone("tiny_vit", "none", frame_size=SIZE)
    path = tmp_path / "tiny_vit.pth"
    torch.save(source.state_dict(), path)
    loaded = create_backbone("tiny_vit", str(path), frame_size=SIZE)
    with torch.no_grad():
        assert torch.equal(loaded(_frames(2)), source(_frames(2)))


def test_torchvision_state_dict_with_its_classifier_loads(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None)
    net.bn1.running_mean.uniform_(-1, 1)  # so that buffers, not only parameters, must arrive
    path = tmp_path / "resnet18.pth"
    torch.save(net.state_dict(), path)
    bb = create_backbone("resnet18", str(path), frame_size=SIZE)
    assert torch.equal(bb.net.bn1.running_mean, net.bn1.running_mean)
    net.fc = nn.Identity()
    net.eval()
    frames = _frames(2)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (bb.spec.mean, bb.spec.std))
    with torch.no_grad():
        torch.testing.assert_close(bb(frames), net((frames.float() / 255 - mean) / std), rtol=1e-4, atol=1e-5)


def test_bad_weights_files_raise(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(OrbitLiteError, match=f"weights file {missing} does not exist"):
        create_backbone("tiny_cnn", str(missing), frame_size=SIZE)
    wrong = tmp_path / "tiny_cnn.pth"
    torch.save(create_backbone("tiny_cnn", "none", frame_size=SIZE).state_dict(), wrong)
    with pytest.raises(OrbitLiteError, match=f"weights file {wrong} does not match tiny_vit: .* missing keys"):
        create_backbone("tiny_vit", str(wrong), frame_size=SIZE)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(OrbitLiteError, match=f"{garbage} cannot be read as a weights file .*: not a PyTorch file"):
        create_backbone("tiny_cnn", str(garbage), frame_size=SIZE)


def test_unknown_backbone_lists_the_available_ones() -> None:
    with pytest.raises(OrbitLiteError, match="unknown backbone 'resnet_18'") as err:
        create_backbone("resnet_18")
    assert all(name in str(err.value) for name in available_backbones())
