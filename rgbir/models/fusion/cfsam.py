"""CFSAM: cross-layer feature self-attention over several pyramid levels (arXiv 2510.14726).

No upstream code exists; this follows the paper's description: per level a 3×3 then a 1×1 conv to a common
width, all levels flattened and concatenated into one token sequence for a Transformer encoder, split back,
projected to each level's channels and fused with the original maps (residual).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..blocks import Conv
from ..precision import FP32LayerNorm


class EncoderLayer(nn.Module):
    """Pre-norm Transformer encoder layer: multi-head self-attention + GELU MLP, both residual."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 2.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"CFSAM: width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.norm1 = FP32LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = FP32LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(), nn.Linear(int(dim * mlp_ratio), dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        attn = ((q.float() @ k.float().transpose(-2, -1)) * (c // self.num_heads) ** -0.5).softmax(-1).to(v.dtype)
        x = x + self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))
        return x + self.mlp(self.norm2(x))


class CFSAM(nn.Module):
    """Joint self-attention over tokens of every input level; returns one enhanced map per level.

    ``token_strides`` average-pools each level before tokenisation (the paper's SSD300 maps are small; a
    640-pixel YOLO P3 would give 6400 tokens), and the attended tokens are upsampled back (nearest).
    A learned per-level embedding tells the encoder which level a token came from.
    Output: a list of maps with the input shapes (select one with ``Index``).
    """

    def __init__(
        self,
        channels: Sequence[int],
        width: int = 256,
        num_heads: int = 8,
        num_layers: int = 1,
        token_strides: Sequence[int] | None = None,
    ):
        super().__init__()
        token_strides = list(token_strides or [1] * len(channels))
        if len(token_strides) != len(channels):
            raise ValueError(f"CFSAM: {len(channels)} levels but {len(token_strides)} token_strides")
        self.token_strides = token_strides
        self.local = nn.ModuleList(nn.Sequential(Conv(c, c, 3), Conv(c, width, 1)) for c in channels)
        self.level_embed = nn.Parameter(torch.zeros(len(channels), width))
        self.encoder = nn.Sequential(*(EncoderLayer(width, num_heads) for _ in range(num_layers)))
        self.restore = nn.ModuleList(Conv(width, c, 1, act=False) for c in channels)

    def forward(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        grids, tokens = [], []
        for i, (x, local, s) in enumerate(zip(xs, self.local, self.token_strides)):
            t = local(x)
            if s > 1:
                t = F.avg_pool2d(t, s, s, ceil_mode=True)
            grids.append(t.shape[2:])
            tokens.append(t.flatten(2).transpose(1, 2) + self.level_embed[i])
        seq = self.encoder(torch.cat(tokens, 1))
        outs = []
        for x, restore, part, (h, w) in zip(xs, self.restore, seq.split([h * w for h, w in grids], 1), grids):
            t = part.transpose(1, 2).reshape(x.shape[0], -1, h, w)
            if (h, w) != tuple(x.shape[2:]):
                t = F.interpolate(t, size=x.shape[2:], mode="nearest")
            outs.append(x + restore(t))
        return outs
