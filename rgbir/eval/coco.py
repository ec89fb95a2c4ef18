"""A dataset's ground truth and a model's detections as COCO JSON, scored by pycocotools' COCOeval — the reference
implementation of COCO mAP: 101-point interpolated AP at IoU 0.50:0.05:0.95, area 'all', detections matched to
ground truth in score order, at most ``MAX_DETS`` per image and class, averaged over the classes that have ground
truth. Results hold ``image_id``, ``category_id`` (the model's class id), ``bbox`` [x, y, w, h] in RGB pixels and
``score``; images are numbered from 1 in dataset order."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..files import atomic_write
from ..preflight import cannot_write
from ..runtime.results import Detection
from .metrics import IOU_THRESHOLDS, APResult

MAX_DETS = 300  # what validation keeps per image after NMS: COCO's default of 100 would drop some


def xywh(box) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)]


def truth_path(results: str | Path) -> Path:
    """Where the ground truth goes beside a results file: NAME-gt.json."""
    results = Path(results)
    return results.with_name(f"{results.stem}-gt{results.suffix or '.json'}")


@dataclass
class CocoFiles:
    """The COCO ground truth (``ground_truth()``) and results (``results``) of one evaluation, image by image."""

    names: dict[int, str]
    images: list[dict] = field(default_factory=list)
    annotations: list[dict] = field(default_factory=list)
    results: list[dict] = field(default_factory=list)

    def add(self, file_name: str, size: tuple[int, int], classes: np.ndarray, boxes: np.ndarray,
            detections: list[Detection]) -> None:
        """One image: its (H, W), its ground truth (class ids, xyxy boxes in pixels) and the detections."""
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "file_name": file_name, "height": int(size[0]), "width": int(size[1])})
        for cls, box in zip(classes, boxes):
            bbox = xywh(box)
            self.annotations.append({"id": len(self.annotations) + 1, "image_id": image_id,
                                     "category_id": int(cls), "bbox": bbox, "area": bbox[2] * bbox[3],
                                     "iscrowd": 0})
        self.results += [{"image_id": image_id, "category_id": d.cls, "bbox": xywh(d.box_rgb),
                          "score": round(d.score, 5)} for d in detections]

    def ground_truth(self) -> dict:
        return {"images": self.images, "annotations": self.annotations,
                "categories": [{"id": i, "name": n} for i, n in sorted(self.names.items())]}

    def save(self, path: str | Path) -> Path:
        """The results to ``path`` and the ground truth beside it (NAME-gt.json, which the results' image and
        category ids refer to); returns the ground truth's path."""
        path, truth = Path(path), truth_path(path)
        for target, data in ((path, self.results), (truth, self.ground_truth())):
            try:
                atomic_write(target, json.dumps(data))
            except OSError as e:
                raise cannot_write(target, e) from e
        return truth

    def evaluate(self) -> APResult:
        """AP per class with ground truth and IoU threshold, from COCOeval's precision table."""
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        classes = sorted({a["category_id"] for a in self.annotations})
        ap = np.zeros((len(classes), len(IOU_THRESHOLDS)))
        if classes and self.results:
            with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
                truth = COCO()
                truth.dataset = self.ground_truth()
                truth.createIndex()
                evaluation = COCOeval(truth, truth.loadRes([dict(r) for r in self.results]), "bbox")
                evaluation.params.maxDets = [1, 10, MAX_DETS]
                evaluation.evaluate()
                evaluation.accumulate()
            precision = evaluation.eval["precision"][:, :, :, 0, -1]  # (IoU, recall, class); area all, MAX_DETS
            columns = [evaluation.params.catIds.index(c) for c in classes]
            ap = precision[:, :, columns].mean(1).T
        return APResult(ap, classes, self.names)
