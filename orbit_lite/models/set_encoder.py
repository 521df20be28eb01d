"""The set encoder: a task embedding from the context set (DeepSets with mean pooling).

Each frame goes through 5 x [conv3x3 -> norm -> ReLU -> max-pool 2x2] and a global average pool to a 64-d vector;
the task embedding is the mean over all context frames. Two styles:

- ``orbit_lite``: GroupNorm, which normalizes each frame on its own, so a frame's vector does not depend on which
  frames share its chunk: LITE's cached and recomputed rows agree, and the embedding is the same however the context
  set is chunked (the reference code's training-mode BatchNorm was not). Frames in [-1, 1]; ceil
  pooling, so small frames never pool down to nothing.
- ``reference``: the ORBIT reference code's layout, for its checkpoints: BatchNorm that
  always uses its stored statistics (the reference runs it in eval mode, so this is again per frame), floor pooling,
  and the backbone's own normalization of the frames.
"""

from __future__ import annotations

import torch
from torch import nn


class SetEncoder(nn.Module):
    """Frames ``[B, 3, S, S]`` (uint8 or float in [0, 1]) -> per-frame representations ``[B, width]``.

    Args:
        width: channels of every layer and size of the embedding.
        layers: number of conv blocks.
        groups: GroupNorm groups (``orbit_lite`` style).
        style: ``orbit_lite`` or ``reference`` (see the module docstring).
        mean, std: per-channel normalization of frames in [0, 1] (the backbone's, for the ``reference`` style).
    """

    def __init__(
        self,
        width: int = 64,
        layers: int = 5,
        groups: int = 8,
        style: str = "orbit_lite",
        mean: tuple[float, ...] = (0.5, 0.5, 0.5),
        std: tuple[float, ...] = (0.5, 0.5, 0.5),
    ) -> None:
        super().__init__()
        if style not in ("orbit_lite", "reference"):
            raise ValueError(f"unknown set encoder style {style!r}")
        reference = style == "reference"
        blocks: list[nn.Module] = []
        channels = 3
        for _ in range(layers):
            blocks += [
                nn.Conv2d(channels, width, 3, padding=1),
                nn.BatchNorm2d(width) if reference else nn.GroupNorm(groups, width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2, ceil_mode=not reference),
            ]
            channels = width
        self.net = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.width = width
        self.style = style
        self.register_buffer("input_scale", 1.0 / torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer(
            "input_shift", -torch.tensor(mean).view(1, 3, 1, 1) / torch.tensor(std).view(1, 3, 1, 1), persistent=False
        )
        self.train()

    def train(self, mode: bool = True) -> SetEncoder:
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.train(False)  # stored statistics only: a frame's vector never depends on its batch
        return self

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.float() / 255.0 if frames.dtype == torch.uint8 else frames.float()
        return self.net(x * self.input_scale + self.input_shift)

    @staticmethod
    def layer_index(block: int, part: int) -> int:
        """Index in :attr:`net` of part ``part`` (0 conv, 1 norm) of block ``block`` (0-based)."""
        return 4 * block + part
