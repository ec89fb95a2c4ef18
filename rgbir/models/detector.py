"""The detector module: upstream's DetectionModel layout (``model.{i}.…`` keys) with a two-input forward."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from ..errors import RgbirError
from .builder import instantiate, is_multimodal, parse_activation, plan_layers, resolve_config, select_scale, x_channels
from .head import Detect


class Detector(nn.Module):
    """YOLO11 / YOLO11-MM detector.

    ``model(rgb, ir)`` with rgb (B,3,H,W) and ir (B,Xch,H,W); ``model(x)`` with YOLOMM's single
    (B,3+Xch,H,W) tensor (RGB = channels [0:3]); ``model(rgb)`` for a single-modality model.
    Eval output: (B, 4+nc, A), xywh boxes in input pixels and sigmoid scores; training: raw level maps.
    """

    def __init__(self, cfg: dict, names: dict[int, str] | None = None):
        super().__init__()
        self.yaml = cfg
        scale = select_scale(cfg, cfg.get("scale"))
        self.ir_channels = x_channels(cfg)
        self.multimodal = is_multimodal(cfg)
        self.plans = plan_layers(cfg, scale, self.ir_channels)
        plans = self.plans
        self.model = nn.Sequential(*(instantiate(p) for p in plans))
        if not isinstance(self.model[-1], Detect):
            raise RgbirError("the model config must end with a Detect layer")
        self.save = sorted(
            {j % p.index for p in plans for j in ([p.source] if isinstance(p.source, int) else p.source) if j != -1}
        )
        self.uses_dual = any(p.route == "Dual" for p in plans)
        act = parse_activation(cfg.get("activation"))
        if act is not None:
            for m in self.modules():
                if hasattr(m, "act") and isinstance(m.act, nn.SiLU):
                    m.act = copy.deepcopy(act)
        nc = self.head.nc
        self.names = names or {i: f"class{i}" for i in range(nc)}
        self._init_strides()

    @property
    def head(self) -> Detect:
        return self.model[-1]

    @property
    def nc(self) -> int:
        return self.head.nc

    @property
    def stride(self) -> torch.Tensor:
        return self.head.stride

    def _init_strides(self, size: int = 256):
        """Strides from the level sizes of a dummy forward (as upstream), then the head's prior biases."""
        levels = []
        hook = self.head.register_forward_pre_hook(lambda m, args: levels.extend(t.shape[-2] for t in args[0]))
        was_training = self.training
        try:
            with torch.no_grad():
                self.eval()
                rgb = torch.zeros(1, 3, size, size)
                self(rgb, torch.zeros(1, self.ir_channels, size, size) if self.multimodal else None)
        finally:
            hook.remove()
            self.train(was_training)
        self.head.stride.copy_(torch.tensor([size / h for h in levels]))
        self.head.bias_init()

    def split_inputs(self, rgb: torch.Tensor, ir: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Accept (rgb, ir) or YOLOMM's one (B, 3+Xch, H, W) tensor; validate channel counts."""
        if ir is None and self.multimodal:
            if rgb.shape[1] != 3 + self.ir_channels:
                raise RgbirError(
                    f"this model needs rgb (B,3,H,W) and ir (B,{self.ir_channels},H,W), or one tensor with "
                    f"{3 + self.ir_channels} channels; got {tuple(rgb.shape)}"
                )
            return rgb[:, :3], rgb[:, 3:]
        if rgb.shape[1] != 3:
            raise RgbirError(f"rgb must have 3 channels, got {tuple(rgb.shape)}")
        if self.multimodal and ir.shape[1] != self.ir_channels:
            raise RgbirError(f"ir must have {self.ir_channels} channel(s), got {tuple(ir.shape)}")
        return rgb, ir

    def forward(self, rgb: torch.Tensor, ir: torch.Tensor | None = None):
        rgb, ir = self.split_inputs(rgb, ir)
        routed = {"RGB": rgb, "X": ir}
        if self.uses_dual:
            routed["Dual"] = torch.cat((rgb, ir), 1)
        outputs: list = []
        x = rgb
        for m in self.model:
            if m.input_route:
                x = routed[m.input_route]
            elif m.f != -1:
                x = outputs[m.f] if isinstance(m.f, int) else [x if j == -1 else outputs[j] for j in m.f]
            x = m(x)
            outputs.append(x if m.i in self.save else None)
        return x


Names = Mapping[int, str] | Sequence[str]  # class names as upstream stores them: {index: name} or a list


def names_dict(names: Names) -> dict[int, str]:
    """Class names as {index: name}, from a list or a mapping whose keys may be strings (as JSON gives them)."""
    try:
        if isinstance(names, Mapping):
            return {int(k): str(v) for k, v in names.items()}
        if isinstance(names, Sequence) and not isinstance(names, str):
            return {i: str(v) for i, v in enumerate(names)}
    except (TypeError, ValueError):
        pass
    raise RgbirError(f"class names must be a list or an {{index: name}} mapping, not {str(names)[:60]!r}")


def check_names(names: dict[int, str], nc: int, claim: str) -> dict[int, str]:
    """User-given class names, which must name classes 0..nc-1 once each; ``claim`` says where nc comes from."""
    if sorted(names) != list(range(nc)):
        entries = f"{len(names)} entr{'y' if len(names) == 1 else 'ies'}"
        raise RgbirError(f"names (--names) has {entries} but {claim}: give one name per class, indexed 0-{nc - 1}")
    return names


def build_model(
    cfg: str | Path | dict,
    *,
    scale: str | None = None,
    nc: int | None = None,
    ir_channels: int | None = None,
    names: Names | None = None,
) -> Detector:
    """Build a detector from a YAML path, a shipped config name (e.g. 'yolo11n-mm-mid-msc') or a dict.
    ``names`` sizes the head when ``nc`` is not given; given both, they must agree."""
    d, file_scale = resolve_config(cfg)
    if scale or file_scale or "scale" not in d:
        d["scale"] = select_scale(d, scale or file_scale).name or None
    if names is not None:
        names = names_dict(names)
        nc = len(names) if nc is None else nc
        check_names(names, nc, f"nc (--nc) is {nc}")
    if nc is not None:
        d["nc"] = int(nc)
    if ir_channels is not None:
        if ir_channels not in (1, 3):
            raise RgbirError(f"ir_channels must be 1 or 3, got {ir_channels}")
        d["Xch"] = int(ir_channels)
    d.setdefault("nc", 80)
    return Detector(d, names=names)
