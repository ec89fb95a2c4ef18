"""MSC: multi-scale sparse cross-attention fusion (MSCN, TangXu-Group; YOLOMM ``nn/modules/fusion/msc.py``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..precision import FP32LayerNorm
from ..sparse_attention import topk_sparse_attention


class MSC(nn.Module):
    """Queries from ``x``, keys/values from a multi-scale average-pooled ``y``; output has x's shape.

    Two upstream variants share every key but the q/kv biases: the YOLOMM port (``qkv_bias=True``,
    the default) and the original MSCN (``qkv_bias=False``). Unlike upstream, the token map is
    reshaped back with the real (H, W), so non-square maps (e.g. 640×512 thermal frames) work.
    YAML args (YOLOMM order): [dim (null = left input's channels), num_heads, kernel, s, pad, k1, k2, qkv_bias].
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        kernel: Sequence[int] = (3, 5, 7),
        s: Sequence[int] = (1, 1, 1),
        pad: Sequence[int] = (1, 2, 3),
        k1: int = 2,
        k2: int = 3,
        qkv_bias: bool = True,
    ):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"MSC: channels {dim} are not divisible by num_heads {num_heads}")
        if not len(kernel) == len(s) == len(pad):
            raise ValueError("MSC: kernel, s and pad must have the same length")
        self.dim, self.num_heads, self.k1, self.k2 = dim, int(num_heads), int(k1), int(k2)
        self.scale = (dim // self.num_heads) ** -0.5
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.attn1 = nn.Parameter(torch.tensor([0.5]))
        self.attn2 = nn.Parameter(torch.tensor([0.5]))
        self.pools = nn.ModuleList(
            nn.AvgPool2d(kernel_size=k, stride=st, padding=p) for k, st, p in zip(kernel, s, pad)
        )
        self.layer_norm = FP32LayerNorm(dim)
        self.export_weights: tuple[float, float] | None = None  # set by prepare_export
        self.attention = topk_sparse_attention  # the seam: benchmarks swap in the upstream formulation

    def prepare_export(self) -> None:
        """Freeze the learnable branch weights α, β to floats: the exported node carries them as attributes."""
        self.export_weights = (self.attn1.item(), self.attn2.item())

    def forward(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        x, y = xs
        b, c, h, w = x.shape
        heads = self.num_heads
        y = sum(pool(y) for pool in self.pools)
        y = self.layer_norm(y.flatten(2).transpose(1, 2))  # (B, N1, C)
        n1 = y.shape[1]
        k, v = self.kv(y).reshape(b, n1, 2, heads, c // heads).permute(2, 0, 3, 1, 4)
        q = self.q(x.flatten(2).transpose(1, 2)).reshape(b, h * w, heads, c // heads).transpose(1, 2)
        weights = self.export_weights or (self.attn1, self.attn2)
        out = self.attention(q, k, v, self.scale, (self.k1, self.k2), weights)
        out = self.proj(out.transpose(1, 2).reshape(b, h * w, c))
        return out.transpose(1, 2).reshape(b, c, h, w)
