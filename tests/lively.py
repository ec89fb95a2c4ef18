"""Make randomly initialised detectors produce varied outputs, so that parity tests measure something.

A fresh network's activations shrink towards zero layer after layer, so every anchor gets the same box and
score. Re-estimating each BatchNorm's statistics on random inputs (as a calibration pass) normalises every
layer to a set variance; ``gain`` < 1 keeps the random network from amplifying rounding chaotically (which a
trained one does not do either). The final class and box logits are scaled to a trained head's range.
"""

import torch
from torch import nn


@torch.no_grad()
def lively(model, size=(128, 160), batches: int = 2, seed: int = 0, gain: float = 0.7):
    generator = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
    model.train()
    for _ in range(batches):
        model(*_inputs(model, size, generator))
    model.eval()
    for m in model.modules():  # gain < 1 damps how much each layer amplifies perturbations
        if isinstance(m, nn.BatchNorm2d):
            m.weight.mul_(gain)
            m.bias.mul_(gain)
    # class logits ~ N(-1, 1.5²): scores spread over (0, 1); box (DFL) logits ~ N(0, 2²): soft bin
    # distributions like a trained head's, not an argmax that flips on rounding
    final = [(seq[-1], 1.5, -1.0) for seq in model.head.cv3] + [(seq[-1], 2.0, 0.0) for seq in model.head.cv2]
    logits = []
    hooks = [conv.register_forward_hook(lambda m, a, out: logits.append(out)) for conv, _, _ in final]
    for conv, _, _ in final:
        conv.weight.normal_(0, 1, generator=generator)
        conv.bias.zero_()
    model(*_inputs(model, size, generator))
    for h in hooks:
        h.remove()
    for (conv, std, bias), out in zip(final, logits):
        conv.weight.mul_(std / out.std())
        conv.bias.fill_(bias)
    return model


def _inputs(model, size, generator):
    rgb = torch.rand(2, 3, *size, generator=generator)
    ir = torch.rand(2, model.ir_channels, *size, generator=generator) if model.multimodal else None
    return rgb, ir
