"""Parameter-free fusion baselines. ``Concat`` (channel concatenation) lives in ``blocks``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Add(nn.Module):
    """Element-wise sum of same-shaped feature maps (e.g. RGB P4 + IR P4)."""

    def forward(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out
