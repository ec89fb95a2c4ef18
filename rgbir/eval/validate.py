"""``validate``: run a backend over a paired dataset and score it (mAP50, mAP50-95, per class, speed)."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ..data.dataset import load_dataset
from ..errors import RgbirError
from ..runtime.backends import Backend
from ..runtime.frames import Frame, FramePair
from ..runtime.inference import DetectSettings, PairDetector
from .metrics import APResult, ap_per_class, match


@dataclass
class ValResult:
    ap: APResult
    images: int
    instances: int
    ms_per_image: dict[str, float] = field(default_factory=dict)


def _read(path, blank: bool, like: np.ndarray | None = None) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise RgbirError(f"cannot read image {path}")
    return np.zeros_like(image) if blank else image


def validate(backend: Backend, data: str, split: str = "val", conf: float = 0.001, iou: float = 0.7,
             blank: str | None = None) -> ValResult:
    """``blank`` = 'rgb' or 'ir' zeroes that modality (single-modality ablation of a fusion model)."""
    if blank not in (None, "rgb", "ir"):
        raise RgbirError("blank must be 'rgb' or 'ir'")
    dataset = load_dataset(data, split)
    detector = PairDetector(backend, DetectSettings(conf=conf, iou=iou, max_det=300))
    names = dataset.names or backend.metadata.names
    tps, scores, pred_cls, gt_cls = [], [], [], []
    timings: dict[str, float] = {}
    instances = 0
    for i, sample in enumerate(dataset.samples):
        rgb = _read(sample.rgb, blank == "rgb")
        ir = _read(sample.ir, blank == "ir") if sample.ir is not None else None
        pair = FramePair(0, Frame(rgb, i, 0.0, 0.0, "rgb"), Frame(ir, i, 0.0, 0.0, "ir") if ir is not None else None, i)
        (result,) = detector([pair])
        for k, v in result.timings_ms.items():
            timings[k] = timings.get(k, 0.0) + v
        h, w = rgb.shape[:2]
        cx, cy, bw, bh = (sample.boxes * [w, h, w, h]).T if len(sample.boxes) else np.zeros((4, 0))
        gt = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
        boxes = np.array([d.box_rgb for d in result.detections], np.float32).reshape(-1, 4)
        classes = np.array([d.cls for d in result.detections], np.int64)
        tps.append(match(boxes, classes, gt, sample.classes))
        scores.append(np.array([d.score for d in result.detections], np.float32))
        pred_cls.append(classes)
        gt_cls.append(sample.classes)
        instances += len(sample.classes)
    ap = ap_per_class(np.concatenate(tps), np.concatenate(scores), np.concatenate(pred_cls),
                      np.concatenate(gt_cls), names)
    n = len(dataset.samples)
    return ValResult(ap, n, instances, {k: v / n for k, v in timings.items()})
