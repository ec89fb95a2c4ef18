"""Model summary: per-layer table, parameter count, GFLOPs and modality routing (``rgbir info``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from .detector import Detector


@dataclass
class LayerRow:
    index: int
    source: str
    repeats: int
    params: int
    module: str
    arguments: str
    route: str


@dataclass
class ModelSummary:
    name: str
    layers: list[LayerRow]
    modules: int
    params: int
    gflops: float
    imgsz: tuple[int, int]
    nc: int
    ir_channels: int | None
    multimodal: bool

    @property
    def line(self) -> str:
        """Upstream-style one-line summary."""
        h, w = self.imgsz
        size = f"{h}" if h == w else f"{h}x{w}"
        return (f"{self.name} summary: {self.modules} modules, {self.params:,} parameters, "
                f"{self.gflops:.1f} GFLOPs at {size}")


def count_gflops(model: Detector, imgsz: tuple[int, int]) -> float:
    """GFLOPs of one eval forward at ``imgsz`` (H, W); counts every conv and matmul, attention included."""
    h, w = imgsz
    rgb = torch.zeros(1, 3, h, w)
    ir = torch.zeros(1, model.ir_channels, h, w) if model.multimodal else None
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(rgb, ir)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 1e9


def _route_label(m) -> str:
    return {"RGB": "rgb", "X": "ir", "Dual": "rgb+ir"}.get(m.input_route or "", "")


def summarize(model: Detector, imgsz: tuple[int, int] = (640, 640), name: str | None = None) -> ModelSummary:
    rows = [
        LayerRow(p.index, str(p.source), p.repeats, m.np, p.name, str(p.args), _route_label(m))
        for p, m in zip(model.plans, model.model)
    ]
    return ModelSummary(
        name=name or _model_name(model),
        layers=rows,
        modules=len(list(model.modules())),
        params=sum(p.numel() for p in model.parameters()),
        gflops=count_gflops(model, imgsz),
        imgsz=imgsz,
        nc=model.nc,
        ir_channels=model.ir_channels if model.multimodal else None,
        multimodal=model.multimodal,
    )


def _model_name(model: Detector) -> str:
    """'yolo11n-mm-mid-msc' style: the config's file name with the scale letter put back."""
    stem = Path(model.yaml.get("yaml_file") or ("yolo11-mm" if model.multimodal else "yolo11")).stem
    scale = model.yaml.get("scale") or ""
    unified = re.sub(r"^(yolo[v]?\d+)[nslmx](?![a-z])", r"\1", stem)
    return re.sub(r"^(yolo[v]?\d+)", rf"\g<1>{scale}", unified, count=1)
