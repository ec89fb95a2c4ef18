"""Token Statistics Self-Attention (ToST, ``tost_vision/tost.py``) and its YOLO C2PSA integration (C2TSSA).

Keys match the YOLOMM fork's ``AttentionTSSA`` / ``TSSAlock`` / ``C2TSSA``. Cost is linear in the token
count and every shape is static, so it exports cleanly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..blocks import C2PSA, PSABlock


class TSSA(nn.Module):
    """One projection w per head; per-token head weights Π = softmax_heads(temp·Σ_d normalize_tokens(w)²);
    per-channel second moment dots = Σ_n Π̂·w² (Π̂ = Π normalised over tokens); out = −w·Π / (1 + dots).

    Input and output are token sequences (B, N, C). Upstream class name: ``AttentionTSSA``.
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = False):
        super().__init__()
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"TSSA: {dim} channels cannot be split into {num_heads} heads")
        self.heads = num_heads
        self.qkv = nn.Linear(dim, dim, bias=qkv_bias)
        self.temp = nn.Parameter(torch.ones(num_heads, 1))
        self.to_out = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        w = self.qkv(x).float().reshape(b, n, self.heads, c // self.heads).transpose(1, 2)  # (B, h, N, d), fp32
        pi = ((F.normalize(w, dim=-2) ** 2).sum(-1) * self.temp).softmax(dim=1)  # (B, h, N): softmax over heads
        dots = ((pi / (pi.sum(-1, keepdim=True) + 1e-8)).unsqueeze(-2) @ (w**2))  # (B, h, 1, d)
        out = -(w * pi.unsqueeze(-1)) / (1 + dots)
        return self.to_out(out.transpose(1, 2).reshape(b, n, c).to(x.dtype))


class TSSABlock(PSABlock):
    """PSABlock with TSSA in place of the softmax attention (upstream ``TSSAlock``)."""

    def __init__(self, c, attn_ratio=0.5, num_heads=4, shortcut=True):
        super().__init__(c, attn_ratio, num_heads, shortcut)
        self.attn = TSSA(c, num_heads=num_heads)

    def forward(self, x):
        b, c, h, w = x.shape
        a = self.attn(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, c, h, w)
        x = x + a if self.add else a
        return x + self.ffn(x) if self.add else self.ffn(x)


class C2TSSA(C2PSA):
    """C2PSA whose blocks are TSSABlocks (heads = c // 64, as upstream)."""

    def __init__(self, c1, c2, n=1, e=0.5):
        super().__init__(c1, c2, n, e)
        self.m = nn.Sequential(*(TSSABlock(self.c, attn_ratio=0.5, num_heads=self.c // 64) for _ in range(n)))
