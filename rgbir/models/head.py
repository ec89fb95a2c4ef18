"""YOLO11 detection head (ultralytics ``Detect``, ``legacy=False``) and its box decoding."""

from __future__ import annotations

import math

import torch
from torch import nn

from .blocks import DFL, Conv, DWConv


def make_anchors(feats: list[torch.Tensor], strides: torch.Tensor, offset: float = 0.5):
    # strides stay tensors (no .item()): export tracing needs no data-dependent Python values
    """Cell-centre anchor points (A, 2) in grid units and the stride of each (A, 1), in float32."""
    points, stride_col = [], []
    for feat, stride in zip(feats, strides):
        h, w = feat.shape[2:]
        sx = torch.arange(w, device=feat.device, dtype=torch.float32) + offset
        sy = torch.arange(h, device=feat.device, dtype=torch.float32) + offset
        yy, xx = torch.meshgrid(sy, sx, indexing="ij")
        points.append(torch.stack((xx, yy), -1).view(-1, 2))
        stride_col.append(stride.float().expand(h * w, 1))
    return torch.cat(points), torch.cat(stride_col)


def dist2bbox(distance: torch.Tensor, anchors: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """(left, top, right, bottom) distances from anchor points → (cx, cy, w, h)."""
    lt, rb = distance.chunk(2, dim)
    x1y1, x2y2 = anchors - lt, anchors + rb
    return torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), dim)


class Detect(nn.Module):
    """Anchor-free decoupled head: per level a DFL box branch (cv2) and a class branch (cv3).

    Training mode returns the raw per-level maps (B, 4*reg_max+nc, H, W); eval mode returns
    (B, 4+nc, A): xywh boxes in input pixels and sigmoid class scores. ``legacy=True`` gives the
    YOLOv8 class branch (plain 3×3 convs) for configs without C3k2, as upstream does.
    """

    def __init__(self, nc=80, ch=(), legacy=False):
        super().__init__()
        self.nc = nc
        self.nl = len(ch)
        self.reg_max = 16
        self.no = nc + self.reg_max * 4
        c2, c3 = max(16, ch[0] // 4, self.reg_max * 4), max(ch[0], min(nc, 100))
        self.cv2 = nn.ModuleList(
            nn.Sequential(Conv(x, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * self.reg_max, 1)) for x in ch
        )
        if legacy:
            self.cv3 = nn.ModuleList(nn.Sequential(Conv(x, c3, 3), Conv(c3, c3, 3), nn.Conv2d(c3, nc, 1)) for x in ch)
        else:
            self.cv3 = nn.ModuleList(
                nn.Sequential(
                    nn.Sequential(DWConv(x, x, 3), Conv(x, c3, 1)),
                    nn.Sequential(DWConv(c3, c3, 3), Conv(c3, c3, 1)),
                    nn.Conv2d(c3, nc, 1),
                )
                for x in ch
            )
        self.dfl = DFL(self.reg_max)
        # Set by the detector from a dummy forward; not part of the state_dict (as upstream).
        self.register_buffer("stride", torch.zeros(self.nl), persistent=False)

    def bias_init(self):
        """Prior biases for a fresh model (upstream's Detect.bias_init); needs ``stride`` set."""
        for box, cls, s in zip(self.cv2, self.cv3, self.stride.tolist()):
            box[-1].bias.data[:] = 1.0
            cls[-1].bias.data[: self.nc] = math.log(5 / self.nc / (640 / s) ** 2)

    def forward(self, x: list[torch.Tensor]):
        x = [torch.cat((self.cv2[i](xi), self.cv3[i](xi)), 1) for i, xi in enumerate(x)]
        if self.training:
            return x
        return self.decode(x)

    def decode(self, x: list[torch.Tensor]) -> torch.Tensor:
        """Raw level maps → (B, 4+nc, A) with xywh boxes in input pixels and sigmoid scores.

        Box decoding runs in float32 (pixel coordinates past 1024 lose whole pixels in FP16)."""
        b = x[0].shape[0]
        anchors, strides = make_anchors(x, self.stride)
        flat = torch.cat([xi.view(b, self.no, -1) for xi in x], 2)
        box, cls = flat.split((self.reg_max * 4, self.nc), 1)
        dist = self.dfl(box).float()
        boxes = dist2bbox(dist, anchors.transpose(0, 1).unsqueeze(0), dim=1) * strides.transpose(0, 1)
        return torch.cat((boxes, cls.sigmoid().float()), 1)
