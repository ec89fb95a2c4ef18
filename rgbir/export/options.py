"""What ``rgbir export`` is asked to make (``ExportOptions``): torch-free, so every command can offer the flags
without importing torch."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import RgbirError
from ..metadata import FLOAT_PRECISIONS, PostprocessSpec, check_choice, check_nms
from ..options import CommandLineOptions, image_size, option


def batch_size(text: str | int) -> int | str:
    """'4' → 4; 'dynamic' stays 'dynamic' (a dynamic batch dimension)."""
    if str(text) == "dynamic":
        return "dynamic"
    if not str(text).isdigit():
        raise ValueError(f"must be a number or 'dynamic', got '{text}'")
    return int(text)


@dataclass
class ExportOptions(CommandLineOptions):
    """What to export. ``batch=None`` (or 'dynamic') makes the batch dimension dynamic (1..``max_batch``)."""

    imgsz: tuple[int, int] = option((640, 640), parse=image_size, help="input size H or H,W")
    batch: int | None = option(1, parse=batch_size, help="fixed batch size, or 'dynamic'")
    max_batch: int = option(32, parse=int, help="upper bound of a dynamic batch (--batch dynamic)")
    precision: str = option("fp32", choices=FLOAT_PRECISIONS, help="weights and activations (fp16: a strongly "
                            "typed FP16 graph, as TensorRT 11 needs)")
    io_dtype: str | None = option(None, choices=FLOAT_PRECISIONS, shown="the precision",
                                  help="input/output dtype")
    postprocess: str = option("none", choices=("none", "nms"), help="'nms' adds decode + class-aware NMS: "
                              "outputs num_dets, boxes, scores, classes")
    max_det: int = option(300, parse=int, help="--postprocess nms: detections kept per image")
    iou: float = option(0.7, parse=float, help="--postprocess nms: NMS IoU threshold")
    conf: float = option(0.25, parse=float, help="--postprocess nms: NMS score threshold")
    ir_channels: int | None = option(None, parse=int, choices=(1, 3), shown="the model's",
                                     help="channels of the exported 'ir' input: 1 folds a model trained on "
                                          "3-channel grey IR into a 1-channel input")
    opset: int = option(18, parse=int, help="ONNX opset")
    simplify: bool = option(True, flag="--no-simplify", help="skip the onnxslim pass")
    inline_attention: bool = option(False, help="inline the TopKSparseAttention function body (for runtimes "
                                                "without local functions)")

    def __post_init__(self):
        if self.batch == "dynamic":
            self.batch = None

    @property
    def postprocess_spec(self) -> PostprocessSpec:
        return PostprocessSpec(self.postprocess, self.max_det, self.iou, self.conf)

    def validate(self) -> None:
        h, w = self.imgsz
        if h % 32 or w % 32 or h < 32 or w < 32:
            raise RgbirError(f"image size {h}x{w} must be positive multiples of 32 (the model's largest stride)")
        check_choice(self.precision, FLOAT_PRECISIONS, "precision")
        check_choice(self.io_dtype or self.precision, FLOAT_PRECISIONS, "I/O dtype")
        check_choice(self.postprocess, ("none", "nms"), "postprocess")
        if self.batch is not None and self.batch < 1:
            raise RgbirError("batch must be >= 1 (or dynamic)")
        if self.ir_channels not in (None, 1, 3):
            raise RgbirError("IR channels must be 1 or 3")
        if self.opset < 18:
            raise RgbirError("opset must be >= 18 (torch's ONNX exporter and our op body need it)")
        if self.max_batch < 1:
            raise RgbirError(f"max batch {self.max_batch} must be >= 1")
        check_nms(self.conf, self.iou, self.max_det)
