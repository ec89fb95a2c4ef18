"""Float32 islands for half-precision models: the parts whose range or accumulation FP16 cannot carry.

In a float32 model these are no-ops; in an FP16 model (PyTorch on GPU, or the strongly typed FP16 ONNX
that TensorRT 11 needs) they compute in float32 and return the input's dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FP32LayerNorm(nn.LayerNorm):
    """LayerNorm whose statistics and affine transform run in float32 (same keys as nn.LayerNorm)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)


def softmax_fp32(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Softmax computed in float32, returned in x's dtype."""
    return x.float().softmax(dim).to(x.dtype)
