"""COCO-style average precision: IoU thresholds 0.50:0.05:0.95, 101-point interpolated precision."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..runtime.postprocess import box_iou

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)


@dataclass
class APResult:
    ap: np.ndarray  # (classes, 10): AP per class and IoU threshold
    classes: list[int]  # class ids with ground truth
    names: dict[int, str]

    @property
    def map50(self) -> float:
        return float(self.ap[:, 0].mean()) if len(self.ap) else 0.0

    @property
    def map(self) -> float:
        return float(self.ap.mean()) if len(self.ap) else 0.0

    def per_class(self) -> dict[str, tuple[float, float]]:
        return {self.names.get(c, str(c)): (float(a[0]), float(a.mean())) for c, a in zip(self.classes, self.ap)}


def match(pred_boxes, pred_classes, gt_boxes, gt_classes) -> np.ndarray:
    """(P, 10) true-positive flags: each ground truth matched at most once, best IoU first, same class."""
    tp = np.zeros((len(pred_boxes), len(IOU_THRESHOLDS)), bool)
    if not len(pred_boxes) or not len(gt_boxes):
        return tp
    iou = box_iou(gt_boxes, pred_boxes) * (gt_classes[:, None] == pred_classes[None, :])
    for t, threshold in enumerate(IOU_THRESHOLDS):
        gi, pi = np.nonzero(iou >= threshold)
        if not len(gi):
            continue
        order = np.argsort(-iou[gi, pi], kind="stable")  # best overlaps first
        gi, pi = gi[order], pi[order]
        keep = np.sort(np.unique(pi, return_index=True)[1])  # each prediction once, at its best overlap
        gi, pi = gi[keep], pi[keep]
        keep = np.unique(gi, return_index=True)[1]  # each ground truth once, by its best prediction
        tp[pi[keep], t] = True
    return tp


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """COCO's 101-point interpolated AP of one precision/recall curve (sorted by descending score)."""
    envelope = np.maximum.accumulate(np.concatenate([precision, [0.0]])[::-1])[::-1]
    points = np.linspace(0, 1, 101)
    index = np.searchsorted(recall, points, side="left")
    return float(np.where(index < len(recall), envelope[np.minimum(index, len(envelope) - 1)], 0.0).mean())


def ap_per_class(tp: np.ndarray, scores: np.ndarray, pred_classes: np.ndarray, gt_classes: np.ndarray,
                 names: dict[int, str]) -> APResult:
    classes = sorted(int(c) for c in np.unique(gt_classes))
    ap = np.zeros((len(classes), len(IOU_THRESHOLDS)))
    order = np.argsort(-scores, kind="stable")
    tp, pred_classes = tp[order], pred_classes[order]
    for i, c in enumerate(classes):
        mine = pred_classes == c
        n_gt = int((gt_classes == c).sum())
        if not mine.any():
            continue
        hits = np.cumsum(tp[mine], 0)
        recall = hits / n_gt
        precision = hits / np.arange(1, mine.sum() + 1)[:, None]
        for t in range(len(IOU_THRESHOLDS)):
            ap[i, t] = average_precision(recall[:, t], precision[:, t])
    return APResult(ap, classes, names)
