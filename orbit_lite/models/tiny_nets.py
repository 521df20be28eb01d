"""Test- and demo-sized networks, registered in :mod:`orbit_lite.models.backbones` next to the real ones."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def strided_cnn(widths: tuple[int, ...], frame_size: int) -> nn.Module:
    """``len(widths)`` x [conv3x3 stride 2, BN, ReLU], global average pool: ``[B, 3, S, S] -> [B, widths[-1]]``."""
    layers: list[nn.Module] = []
    channels_in = 3
    for channels in widths:
        conv = nn.Conv2d(channels_in, channels, 3, stride=2, padding=1, bias=False)
        layers += [conv, nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        channels_in = channels
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


class _TinyBlock(nn.Module):
    """Pre-LayerNorm transformer block: ``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))``; ``[B, T, W]``."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))

    def forward(self, x: Tensor) -> Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class TinyViT(nn.Module):
    """A test-sized ViT: patch-8 embedding, 2 blocks of width 64, final LayerNorm; ``[B, 3, S, S] -> [B, 64]``.

    Returns the class token, like ``vit_b_32``, so both ViTs exercise the same FiLM and pooling path.
    """

    def __init__(self, frame_size: int, width: int = 64, depth: int = 2, heads: int = 4, patch: int = 8) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, width, patch, stride=patch)
        self.class_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embedding = nn.Parameter(0.02 * torch.randn(1, (frame_size // patch) ** 2 + 1, width))
        self.blocks = nn.ModuleList(_TinyBlock(width, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(width)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_token.expand(tokens.shape[0], -1, -1), tokens], dim=1) + self.pos_embedding
        for block in self.blocks:
            x = block(x)
        return self.norm(x[:, 0])
