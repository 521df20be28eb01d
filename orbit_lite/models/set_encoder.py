"""The set encoder: a task embedding from the context set (DeepSets with mean pooling).

Each frame goes through 5 x [conv3x3 -> GroupNorm -> ReLU -> max-pool 2x2] and a global average pool to a 64-d
vector; the task embedding is the mean over all context frames. GroupNorm normalizes each frame on its own, so a
frame's vector does not depend on which frames share its chunk: LITE's cached and recomputed rows agree, and the
embedding is the same however the context set is chunked (the reference code's BatchNorm was not; spec/lite.md 6.2).
"""

from __future__ import annotations

import torch
from torch import nn


class SetEncoder(nn.Module):
    """Frames ``[B, 3, S, S]`` (uint8 or float in [0, 1]) -> per-frame representations ``[B, width]``.

    Args:
        width: channels of every layer and size of the embedding.
        layers: number of conv blocks.
        groups: GroupNorm groups.
    """

    def __init__(self, width: int = 64, layers: int = 5, groups: int = 8) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        channels = 3
        for _ in range(layers):
            blocks += [
                nn.Conv2d(channels, width, 3, padding=1),
                nn.GroupNorm(groups, width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2, ceil_mode=True),  # ceil: small frames never pool down to nothing
            ]
            channels = width
        self.net = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.width = width

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.float() / 255.0 if frames.dtype == torch.uint8 else frames.float()
        return self.net((x - 0.5) / 0.5)
