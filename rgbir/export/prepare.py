"""Turn a loaded detector into the exact network to export: fused, folded, frozen, cast."""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..errors import RgbirError
from ..models import Detector


def fuse_conv_bn(model: nn.Module) -> int:
    """Fold every ``Conv`` block's BatchNorm into its convolution (no statistics left at run time)."""
    fused = 0
    for m in model.modules():
        conv, bn = getattr(m, "conv", None), getattr(m, "bn", None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            std = (bn.running_var + bn.eps).sqrt()
            factor = bn.weight / std
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            new = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                            conv.dilation, conv.groups, bias=True)
            new.weight.data = conv.weight.data * factor.view(-1, 1, 1, 1)
            new.bias.data = (bias - bn.running_mean) * factor + bn.bias
            m.conv, m.bn = new, nn.Identity()
            fused += 1
    return fused


def fold_ir_channels(model: Detector) -> int:
    """Make a 3-channel-IR model take 1-channel IR: sum each IR-reading conv's weights over the IR channels.

    Exact when the 3 IR channels are identical (grayscale expanded with GRAY2BGR, as YOLOMM training does).
    Returns the number of convs changed.
    """
    if not model.multimodal:
        raise RgbirError("IR channel folding needs a multimodal (RGB + IR) model")
    if model.ir_channels == 1:
        return 0
    changed = 0
    for layer in model.model:
        if layer.input_route not in ("X", "Dual"):
            continue
        conv = getattr(layer, "conv", None)
        if not isinstance(conv, nn.Conv2d) or conv.groups != 1:
            raise RgbirError(f"layer {layer.i} ({layer.type}) reads IR but is not a plain Conv: cannot fold IR "
                             "channels")
        w = conv.weight.data
        ir = slice(3, 3 + model.ir_channels) if layer.input_route == "Dual" else slice(0, model.ir_channels)
        folded = w[:, ir].sum(1, keepdim=True)
        w = torch.cat((w[:, :3], folded), 1) if layer.input_route == "Dual" else folded
        new = nn.Conv2d(w.shape[1], conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                        bias=conv.bias is not None)
        new.weight.data = w
        if conv.bias is not None:
            new.bias.data = conv.bias.data.clone()
        layer.conv = new
        changed += 1
    model.ir_channels = 1
    return changed


class ExportWrapper(nn.Module):
    """Named inputs ``rgb``/``ir`` in the I/O dtype, the model in its own dtype, outputs in the I/O dtype."""

    def __init__(self, model: Detector, io_dtype: torch.dtype):
        super().__init__()
        self.model = model
        self.io_dtype = io_dtype
        self.dtype = next(model.parameters()).dtype

    def forward(self, rgb: torch.Tensor, ir: torch.Tensor | None = None):
        rgb = rgb.to(self.dtype)
        ir = ir.to(self.dtype) if ir is not None else None
        return self.model(rgb, ir).to(self.io_dtype)


def prepare(model: Detector, *, ir_channels: int | None, half: bool) -> Detector:
    """A deep copy ready to export: eval, BN fused, IR folded if asked, branch weights frozen, cast."""
    model = copy.deepcopy(model).float().eval()
    if ir_channels is not None and model.multimodal and ir_channels != model.ir_channels:
        if (model.ir_channels, ir_channels) != (3, 1):
            raise RgbirError(f"cannot export {ir_channels}-channel IR from a model trained on "
                             f"{model.ir_channels}-channel IR (only 3 → 1 folding exists)")
        fold_ir_channels(model)
    fuse_conv_bn(model)
    for m in model.modules():
        if hasattr(m, "prepare_export"):
            m.prepare_export()
    for p in model.parameters():
        p.requires_grad_(False)
    return model.half() if half else model
