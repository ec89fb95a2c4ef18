"""``validate``: run a backend over a paired dataset and score it with COCO's evaluator (mAP50, mAP50-95, per
class, speed); the COCO ground truth and results it scored come back with it (``coco``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..data.dataset import PairedDataset, load_dataset
from ..errors import RgbirError
from ..runtime.backends import Backend
from ..runtime.frames import Frame, FramePair
from ..runtime.inference import DetectSettings, PairDetector
from ..runtime.preprocess import colour_frame
from .coco import MAX_DETS, CocoFiles
from .metrics import APResult

log = logging.getLogger(__name__)


@dataclass
class ValResult:
    ap: APResult
    images: int
    instances: int
    coco: CocoFiles  # the ground truth and detections that were scored (rgbir val --save-json writes them)
    ms_per_image: dict[str, float] = field(default_factory=dict)


def _read(path, blank: bool, like: np.ndarray | None = None) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise RgbirError(f"cannot read image {path}")
    return np.zeros_like(image) if blank else image


def check_classes(dataset: PairedDataset, nc: int, data: str) -> None:
    """Labels whose class the data.yaml does not name are refused (the file contradicts itself); labels of classes
    the model lacks are named in a warning (they can only count as missed)."""
    named, beyond_model = set(dataset.names), {}
    for sample in dataset.samples:
        for cls in map(int, sample.classes):
            if cls not in named:
                raise RgbirError(f"{data}: a label of {sample.rgb.name} has class {cls}, but the file names classes "
                                 f"{min(named)}-{max(named)}: correct the label, or add the class to 'names'")
            if cls >= nc:
                beyond_model.setdefault(cls, sample.rgb.name)
    if beyond_model:
        shown = ", ".join(f"{cls} (e.g. {name})" for cls, name in sorted(beyond_model.items()))
        log.warning(f"labels of class {shown} in {data} are beyond the model's {nc} classes (0-{nc - 1}): they "
                    "count as missed")


def validate(backend: Backend, data: str, split: str = "val", conf: float = 0.001, iou: float = 0.7,
             blank: str | None = None) -> ValResult:
    """``blank`` = 'rgb' or 'ir' zeroes that modality (single-modality ablation of a fusion model)."""
    if blank not in (None, "rgb", "ir"):
        raise RgbirError("blank must be 'rgb' or 'ir'")
    dataset = load_dataset(data, split)
    check_classes(dataset, backend.metadata.nc, data)
    detector = PairDetector(backend, DetectSettings(conf=conf, iou=iou, max_det=MAX_DETS))
    coco = CocoFiles(dataset.names or backend.metadata.names)
    timings: dict[str, float] = {}
    instances = 0
    for i, sample in enumerate(dataset.samples):
        rgb = colour_frame(_read(sample.rgb, blank == "rgb"))
        ir = _read(sample.ir, blank == "ir") if sample.ir is not None else None
        pair = FramePair(0, Frame(rgb, i, 0.0, 0.0, "rgb"), Frame(ir, i, 0.0, 0.0, "ir") if ir is not None else None, i)
        (result,) = detector([pair])
        for k, v in result.timings_ms.items():
            timings[k] = timings.get(k, 0.0) + v
        h, w = rgb.shape[:2]
        cx, cy, bw, bh = (sample.boxes * [w, h, w, h]).T if len(sample.boxes) else np.zeros((4, 0))
        gt = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
        coco.add(sample.rgb.relative_to(dataset.root).as_posix(), (h, w), sample.classes, gt, result.detections)
        instances += len(sample.classes)
    n = len(dataset.samples)
    return ValResult(coco.evaluate(), n, instances, coco, {k: v / n for k, v in timings.items()})
