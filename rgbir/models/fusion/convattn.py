"""ESC's convolutional attention (``esc/archs/esc_arch.py``) and MiLK-ConvAttn, in export-friendly form.

Both predict a per-sample depth-wise 3×3 kernel from the pooled input. Upstream applies it as a grouped
Conv whose weights are a tensor computed at run time, which TensorRT rejects for float networks; here it is
nine shifted multiply-adds (same math, static weights only).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def dynamic_depthwise3x3(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Per-sample depth-wise 3×3 conv (zero padding 1): x (B,C,H,W), kernel (B,C,3,3) → (B,C,H,W)."""
    h, w = x.shape[2:]
    padded = F.pad(x, (1, 1, 1, 1))
    out = 0
    for i in range(3):
        for j in range(3):
            out = out + padded[:, :, i : i + h, j : j + w] * kernel[:, :, i, j, None, None]
    return out


def geo_ensemble(kernel: torch.Tensor) -> torch.Tensor:
    """Average of a kernel over its 8 flips/rotations (ESC's ``_geo_ensemble``): a symmetric large kernel."""
    views = []
    for k in (kernel, kernel.flip(-1)):
        views.extend(torch.rot90(k, r, dims=(-2, -1)) for r in range(4))
    return torch.stack(views).mean(0)


class DynamicKernel(nn.Module):
    """Pooled context → one 3×3 kernel per sample and channel (ESC's ``dwc_proj``; zero-initialised output)."""

    def __init__(self, pdim: int):
        super().__init__()
        self.pdim = pdim
        self.dwc_proj = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(pdim, pdim // 2, 1), nn.GELU(), nn.Conv2d(pdim // 2, pdim * 9, 1)
        )
        nn.init.zeros_(self.dwc_proj[-1].weight)
        nn.init.zeros_(self.dwc_proj[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dwc_proj(x).reshape(x.shape[0], self.pdim, 3, 3)


class ConvAttn(nn.Module):
    """ESC ConvAttn on the first ``dim // 4`` channels: shared-style dense large kernel (geo-ensembled,
    ``kernel_size``², no bias) + per-sample dynamic 3×3; concat with the untouched rest; 1×1 ``aggr``.

    Keys follow the standalone ConvAttn port (``plk_filter``, ``plk.dwc_proj``, ``aggr``); ESC's network-wide
    shared kernel becomes one kernel per module, which is how YOLO-style YAMLs use it.
    """

    def __init__(self, dim: int, kernel_size: int = 13):
        super().__init__()
        self.pdim = dim // 4
        if self.pdim < 2:
            raise ValueError(f"ConvAttn needs at least 8 channels, got {dim}")
        self.plk_filter = nn.Parameter(torch.empty(self.pdim, self.pdim, kernel_size, kernel_size))
        nn.init.orthogonal_(self.plk_filter)
        self.plk = DynamicKernel(self.pdim)
        self.aggr = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.split((self.pdim, x.shape[1] - self.pdim), 1)
        lk = geo_ensemble(self.plk_filter)
        x1 = F.conv2d(x1, lk, padding=lk.shape[-1] // 2) + dynamic_depthwise3x3(x1, self.plk(x1))
        return self.aggr(torch.cat((x1, x2), 1))


class MiLKConvAttn(nn.Module):
    """MiLK-ConvAttn: a mixture of large kernels for ConvAttn. No public code exists; this follows the seed
    write-up's description.

    On the first ``dim // 4`` channels (x1): a dictionary of ``num_kernels`` depth-wise large kernels per
    channel is applied as one grouped conv with static weights, and the responses are mixed per sample and
    channel by a softmax routing predicted from pooled x1 — equal to convolving with a per-sample mixed
    kernel, since convolution is linear. A dynamic 3×3 depth-wise branch is computed as in ConvAttn, and a per-sample ×
    channel sigmoid gate g blends them: x1' = g·mix + (1 − g)·dyn. Concat with the rest, 1×1 ``aggr``.
    """

    def __init__(self, dim: int, num_kernels: int = 4, kernel_size: int = 13):
        super().__init__()
        self.pdim, self.num_kernels = dim // 4, num_kernels
        if self.pdim < 2 or num_kernels < 1:
            raise ValueError(f"MiLKConvAttn needs >= 8 channels and >= 1 kernel, got {dim}, {num_kernels}")
        self.bases = nn.Parameter(torch.randn(self.pdim * num_kernels, 1, kernel_size, kernel_size) / kernel_size)
        hidden = max(self.pdim // 2, 4)
        self.context = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(self.pdim, hidden, 1), nn.GELU())
        self.route = nn.Conv2d(hidden, num_kernels * self.pdim, 1)
        self.gate = nn.Conv2d(hidden, self.pdim, 1)
        self.dynamic = DynamicKernel(self.pdim)
        self.aggr = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        x1, x2 = x.split((self.pdim, x.shape[1] - self.pdim), 1)
        ctx = self.context(x1)
        routing = self.route(ctx).reshape(b, self.pdim, self.num_kernels, 1, 1).softmax(2)
        responses = F.conv2d(x1, self.bases, padding=self.bases.shape[-1] // 2, groups=self.pdim)
        mixed = (responses.reshape(b, self.pdim, self.num_kernels, h, w) * routing).sum(2)
        gate = self.gate(ctx).sigmoid()
        x1 = gate * mixed + (1 - gate) * dynamic_depthwise3x3(x1, self.dynamic(x1))
        return self.aggr(torch.cat((x1, x2), 1))
