"""Decode + class-aware NMS in vectorised numpy, for graphs exported without postprocessing."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ops import MAX_WH


@dataclass
class Detections:
    """One image's detections: boxes (K,4) xyxy in network-input pixels, scores (K,), classes (K,) int."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    xy, wh = boxes[..., :2], boxes[..., 2:4] / 2
    return np.concatenate((xy - wh, xy + wh), -1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes: (N,4) × (M,4) → (N,M)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter + 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_keep: int | None = None) -> np.ndarray:
    """Greedy NMS; returns kept indices in descending score order (at most ``max_keep``: the greedy order
    means the first ``max_keep`` kept are final, so the loop stops there)."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = (boxes[order, i].astype(np.float64) for i in range(4))
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    alive = np.ones(len(order), bool)
    keep = []
    for i in range(len(order)):
        if not alive[i]:
            continue
        keep.append(order[i])
        if max_keep is not None and len(keep) >= max_keep:
            break
        rest = slice(i + 1, None)
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        alive[rest] &= inter / (areas[i] + areas[rest] - inter + 1e-9) <= iou_threshold
    return np.asarray(keep, dtype=np.int64)


def postprocess(
    predictions: np.ndarray,
    score_threshold: float = 0.25,
    iou_threshold: float = 0.7,
    max_det: int = 300,
    classes: list[int] | None = None,
) -> list[Detections]:
    """(B, 4+nc, A) xywh + scores → per-image class-aware NMS detections (as upstream: best class per box)."""
    out = []
    for pred in predictions.astype(np.float32):
        boxes, cls_scores = xywh_to_xyxy(pred[:4].T), pred[4:].T
        cls = cls_scores.argmax(1)
        score = cls_scores[np.arange(len(cls)), cls]
        keep = score > score_threshold
        if classes is not None:
            keep &= np.isin(cls, classes)
        boxes, score, cls = boxes[keep], score[keep], cls[keep]
        kept = nms(boxes + cls[:, None] * MAX_WH, score, iou_threshold, max_det)
        out.append(Detections(boxes[kept], score[kept], cls[kept].astype(np.int32)))
    return out


def from_nms_outputs(num_dets, boxes, scores, classes) -> list[Detections]:
    """The four outputs of a graph exported with NMS → per-image Detections."""
    return [Detections(boxes[i, :n], scores[i, :n], classes[i, :n])
            for i, n in enumerate(np.asarray(num_dets).reshape(-1))]


@dataclass
class Agreement:
    """How well two detection sets agree: greedy one-to-one matching by IoU with equal classes."""

    reference: int
    candidate: int
    matched: int
    mean_iou: float

    @property
    def recall(self) -> float:
        return self.matched / self.reference if self.reference else 1.0

    @property
    def precision(self) -> float:
        return self.matched / self.candidate if self.candidate else 1.0


def match_detections(reference: list[Detections], candidate: list[Detections], iou: float = 0.5) -> Agreement:
    matched, ious, n_ref, n_cand = 0, [], 0, 0
    for ref, cand in zip(reference, candidate):
        n_ref, n_cand = n_ref + len(ref), n_cand + len(cand)
        if not len(ref) or not len(cand):
            continue
        overlap = box_iou(ref.boxes, cand.boxes) * (ref.classes[:, None] == cand.classes[None, :])
        used = np.zeros(len(cand), bool)
        for i in np.argsort(-ref.scores):
            j = int(np.argmax(np.where(used, -1, overlap[i])))
            if not used[j] and overlap[i, j] >= iou:
                used[j] = True
                matched += 1
                ious.append(overlap[i, j])
    return Agreement(n_ref, n_cand, matched, float(np.mean(ious)) if ious else 1.0)
