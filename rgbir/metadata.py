"""What an exported model needs the runtime to know, stored as JSON in ONNX ``metadata_props['rgbir']``.

Torch-free: the runtime reads it to preprocess (sizes, channel order, normalisation, IR channels) and to
decode (strides, class names, postprocess settings) without asking the user.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

METADATA_KEY = "rgbir"
FLOAT_PRECISIONS = ("fp32", "fp16")  # what a graph's weights, activations and I/O can be


def check_choice(value: str, choices: tuple[str, ...], what: str) -> None:
    """One error for a value outside its choices (precisions, postprocess kinds, ...), naming them all."""
    if value not in choices:
        from .errors import RgbirError

        raise RgbirError(f"{what} '{value}' is not one of {', '.join(choices)}")


def check_nms(conf: float, iou: float, max_det: int = 1) -> None:
    """Thresholds NMS can use, wherever they are given (export with in-graph NMS, the runtime, val)."""
    if not (0 <= conf < 1 and 0 < iou <= 1 and max_det >= 1):
        from .errors import RgbirError

        raise RgbirError(f"NMS needs 0 <= conf < 1, 0 < iou <= 1 and max_det >= 1 (got conf {conf}, iou {iou}, "
                         f"max_det {max_det})")


@dataclass
class InputSpec:
    name: str  # "rgb" | "ir"
    channels: int
    channel_order: str  # "RGB" | "BGR" (| "GRAY" for 1-channel IR)


@dataclass
class PostprocessSpec:
    kind: str = "none"  # "none": predictions (B, 4+nc, A) xywh | "nms": num_dets, boxes (xyxy), scores, classes
    max_det: int = 300
    iou_threshold: float = 0.7
    score_threshold: float = 0.25


@dataclass
class ModelMetadata:
    rgbir_version: str
    names: dict[int, str]
    imgsz: tuple[int, int]  # network input (H, W)
    batch: int | None  # None: dynamic
    inputs: list[InputSpec]
    strides: list[float]
    precision: str = "fp32"  # weights/activations: "fp32" | "fp16" | "int8" (Q/DQ, rgbir quantize; float I/O)
    io_dtype: str = "fp32"
    normalization: dict[str, Any] = field(default_factory=lambda: {"scale": 1 / 255, "mean": 0.0, "std": 1.0})
    letterbox: dict[str, Any] = field(default_factory=lambda: {"pad_value": 114, "center": True})
    postprocess: PostprocessSpec = field(default_factory=PostprocessSpec)
    ir_folded: bool = False  # 1-channel IR input made by summing a 3-channel first conv
    attention_op: str = "none"  # "function" | "inlined" | "none"
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def nc(self) -> int:
        return len(self.names)

    @property
    def input_dtype(self) -> np.dtype:
        """The numpy dtype of the model's input tensors (what a runtime or calibrator must hand it)."""
        return np.dtype(np.float16 if self.io_dtype == "fp16" else np.float32)

    @property
    def modality_order(self) -> list[str]:
        return [i.name for i in self.inputs]

    def to_json(self) -> str:
        d = asdict(self)
        d["nc"] = self.nc
        d["modality_order"] = self.modality_order
        d["names"] = {str(k): v for k, v in self.names.items()}
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelMetadata:
        d = json.loads(text)
        d.pop("nc", None)
        d.pop("modality_order", None)
        d["names"] = {int(k): v for k, v in d["names"].items()}
        d["imgsz"] = tuple(d["imgsz"])
        d["inputs"] = [InputSpec(**i) for i in d["inputs"]]
        d["postprocess"] = PostprocessSpec(**d["postprocess"])
        return cls(**d)


def onnx_file(path: str | Path) -> Path:
    """``path`` as an existing ONNX file, or a one-line error naming a missing file or a folder given instead."""
    from .errors import RgbirError

    if Path(path).is_dir():
        raise RgbirError(f"{path} is a directory, not an ONNX file: give the .onnx file itself")
    if not Path(path).is_file():
        raise RgbirError(f"no such ONNX file: {path}")
    return Path(path)


def load_onnx(path: str | Path, load_external_data: bool = True):
    """An ONNX ModelProto, or a one-line error for a missing or unreadable file."""
    import onnx

    from .errors import RgbirError

    onnx_file(path)
    try:
        model = onnx.load(str(path), load_external_data=load_external_data)
    except Exception as e:  # protobuf's DecodeError and friends: not an ONNX file
        raise RgbirError(f"{path} is not a readable ONNX file ({str(e).splitlines()[0] or type(e).__name__}): "
                         "export it with 'rgbir export'") from e
    if not model.graph.node and not model.graph.output:  # an empty file parses as an empty model
        raise RgbirError(f"{path} holds no ONNX graph ({Path(path).stat().st_size} bytes): export it again with "
                         "'rgbir export'")
    return model


def onnx_metadata(model, path: str | Path, required: bool = True) -> ModelMetadata | None:
    """The rgbir metadata a loaded ONNX model carries; without any: an error naming ``path``, or None."""
    from .errors import RgbirError

    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in props:
        if not required:
            return None
        raise RgbirError(f"{path} has no rgbir metadata: export it with 'rgbir export'")
    return ModelMetadata.from_json(props[METADATA_KEY])

