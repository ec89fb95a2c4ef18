"""What the runtime needs to know about a PyTorch detector (``ModelMetadata``): built here, on the model side,
so that the exporter and the PyTorch backend describe a model the same way without importing each other."""

from __future__ import annotations

from pathlib import Path

from ..metadata import InputSpec, ModelMetadata, PostprocessSpec
from ..version import __version__
from .detector import Detector


def model_metadata(model: Detector, imgsz: tuple[int, int], batch: int | None, precision: str = "fp32",
                   io_dtype: str | None = None, postprocess: PostprocessSpec | None = None,
                   attention_op: str = "none", net: Detector | None = None) -> ModelMetadata:
    """``model`` run at ``imgsz`` (``net``: the exported copy, whose IR input may be folded to one channel)."""
    net = net or model
    info = getattr(model, "checkpoint", None)
    order = info.channel_order if info else {"rgb": "RGB", "ir": "RGB"}
    inputs = [InputSpec("rgb", 3, order.get("rgb", "RGB"))]
    if net.multimodal:
        inputs.append(InputSpec("ir", net.ir_channels, "GRAY" if net.ir_channels == 1 else order.get("ir", "RGB")))
    source = {"format": "config", "config": model.yaml.get("yaml_file"), "scale": model.yaml.get("scale")}
    if info:
        source = {"format": info.format, "file": Path(info.path).name, "sha256": info.sha256,
                  "upstream_version": info.upstream_version}
    return ModelMetadata(
        rgbir_version=__version__,
        names=dict(model.names),
        imgsz=tuple(imgsz),
        batch=batch,
        inputs=inputs,
        strides=[float(s) for s in model.stride],
        precision=precision,
        io_dtype=io_dtype or precision,
        postprocess=postprocess or PostprocessSpec(),
        ir_folded=net.multimodal and model.ir_channels == 3 and net.ir_channels == 1,
        attention_op=attention_op,
        source=source,
    )
