"""The YOLO11 detection loss (as ultralytics' v8DetectionLoss): task-aligned assignment, CIoU + DFL box
loss, BCE classification, weighted 7.5 / 1.5 / 0.5."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..models.head import Detect, make_anchors


def bbox_ciou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Complete IoU of matching xyxy boxes (..., 4) → (...)."""
    (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) = a.unbind(-1), b.unbind(-1)
    w1, h1, w2, h2 = ax2 - ax1, ay2 - ay1 + eps, bx2 - bx1, by2 - by1 + eps
    inter = (torch.minimum(ax2, bx2) - torch.maximum(ax1, bx1)).clamp(0) * \
        (torch.minimum(ay2, by2) - torch.maximum(ay1, by1)).clamp(0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    cw = torch.maximum(ax2, bx2) - torch.minimum(ax1, bx1)
    ch = torch.maximum(ay2, by2) - torch.minimum(ay1, by1)
    c2 = cw**2 + ch**2 + eps
    rho2 = ((bx1 + bx2 - ax1 - ax2) ** 2 + (by1 + by2 - ay1 - ay2) ** 2) / 4
    v = (4 / math.pi**2) * (torch.atan(w2 / h2) - torch.atan(w1 / h1)) ** 2
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


class TaskAlignedAssigner:
    """Assigns each ground truth its ``topk`` anchors by alignment score^α · IoU^β among the anchors whose
    centres lie inside it; an anchor claimed by several boxes goes to the one it overlaps most."""

    def __init__(self, topk: int = 10, num_classes: int = 80, alpha: float = 0.5, beta: float = 6.0,
                 eps: float = 1e-9):
        self.topk, self.nc, self.alpha, self.beta, self.eps = topk, num_classes, alpha, beta, eps

    @torch.no_grad()
    def __call__(self, scores, boxes, anchors, gt_labels, gt_boxes, gt_mask):
        """scores (B,A,nc) sigmoid, boxes (B,A,4) xyxy pixels, anchors (A,2) pixels, gt_labels (B,M,1),
        gt_boxes (B,M,4), gt_mask (B,M,1) → target boxes (B,A,4), target scores (B,A,nc), foreground (B,A)."""
        b, m = gt_boxes.shape[:2]
        if m == 0:
            return torch.zeros_like(boxes), torch.zeros_like(scores), torch.zeros(scores.shape[:2], dtype=torch.bool)
        lt, rb = gt_boxes[..., None, :2], gt_boxes[..., None, 2:]  # (B,M,1,2)
        inside = torch.cat((anchors[None, None] - lt, rb - anchors[None, None]), -1).amin(-1) > self.eps  # (B,M,A)
        candidates = inside & gt_mask.bool()
        labels = gt_labels.long().squeeze(-1).clamp(0, self.nc - 1)  # (B,M)
        cls_score = scores.gather(2, labels[:, None, :].expand(-1, scores.shape[1], -1)).transpose(1, 2)  # (B,M,A)
        overlaps = torch.zeros_like(cls_score)
        bi, mi, ai = candidates.nonzero(as_tuple=True)
        overlaps[bi, mi, ai] = bbox_ciou(gt_boxes[bi, mi], boxes[bi, ai]).clamp(0).to(overlaps.dtype)
        align = cls_score.pow(self.alpha) * overlaps.pow(self.beta) * candidates
        top = align.topk(min(self.topk, align.shape[-1]), dim=-1).indices  # (B,M,k)
        chosen = torch.zeros_like(align, dtype=torch.bool).scatter_(-1, top, True)
        positive = chosen & candidates  # (B,M,A)
        # an anchor claimed by several ground truths keeps the one it overlaps most
        multiple = positive.sum(1, keepdim=True) > 1
        best = F.one_hot(overlaps.argmax(1), m).permute(0, 2, 1).bool()
        positive = torch.where(multiple, best & candidates, positive)
        foreground = positive.any(1)  # (B,A)
        target_gt = positive.float().argmax(1)  # (B,A)
        batch = torch.arange(b)[:, None]
        target_boxes = gt_boxes[batch, target_gt]  # (B,A,4)
        target_labels = labels[batch, target_gt]
        target_scores = F.one_hot(target_labels, self.nc).float() * foreground[..., None]
        align = align * positive
        norm = (align * (overlaps * positive).amax(-1, keepdim=True) / (align.amax(-1, keepdim=True) + self.eps))
        target_scores = target_scores * norm.amax(1)[..., None]
        return target_boxes, target_scores, foreground


@dataclass
class LossWeights:
    box: float = 7.5
    cls: float = 0.5
    dfl: float = 1.5


class DetectionLoss:
    """Loss of a Detect head's raw training outputs against YOLO targets (image index, class, cx, cy, w, h
    normalised to the input size)."""

    def __init__(self, head: Detect, weights: LossWeights | None = None, topk: int = 10):
        self.head = head
        self.weights = weights or LossWeights()
        self.assigner = TaskAlignedAssigner(topk=topk, num_classes=head.nc)
        self.bins = torch.arange(head.reg_max, dtype=torch.float32)

    def __call__(self, feats: list[torch.Tensor], targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (loss to backpropagate = sum of weighted parts × batch, detached parts [box, cls, dfl])."""
        head, reg = self.head, self.head.reg_max
        b = feats[0].shape[0]
        flat = torch.cat([f.view(b, head.no, -1) for f in feats], 2)
        pred_dist, pred_logits = flat.split((reg * 4, head.nc), 1)
        pred_dist, pred_logits = pred_dist.permute(0, 2, 1).contiguous(), pred_logits.permute(0, 2, 1).contiguous()
        anchors, strides = make_anchors(feats, head.stride)  # (A,2) grid units, (A,1)
        imgsz = torch.tensor(feats[0].shape[2:], dtype=torch.float32) * head.stride[0]  # (H, W)
        gt_labels, gt_boxes, gt_mask = self._targets(targets, b, imgsz)
        # predicted boxes: expected distance of each side (DFL), in grid units
        probs = pred_dist.view(b, -1, 4, reg).softmax(-1)
        dist = probs @ self.bins.to(probs.dtype)
        pred_boxes = torch.cat((anchors - dist[..., :2], anchors + dist[..., 2:]), -1)
        target_boxes, target_scores, fg = self.assigner(
            pred_logits.detach().sigmoid(), (pred_boxes.detach() * strides), anchors * strides,
            gt_labels, gt_boxes, gt_mask)
        score_sum = target_scores.sum().clamp(min=1)
        loss_cls = F.binary_cross_entropy_with_logits(pred_logits, target_scores, reduction="sum") / score_sum
        loss_box = loss_dfl = pred_logits.sum() * 0
        if fg.any():
            target = target_boxes / strides  # grid units
            weight = target_scores.sum(-1)[fg]
            loss_box = ((1 - bbox_ciou(pred_boxes[fg], target[fg])) * weight).sum() / score_sum
            anchor_fg = anchors.expand(b, -1, -1)[fg]
            ltrb = torch.cat((anchor_fg - target[fg][:, :2], target[fg][:, 2:] - anchor_fg), -1).clamp(0, reg - 1.01)
            left = ltrb.long()
            wl = left + 1 - ltrb
            logits = pred_dist[fg].view(-1, reg)
            ce = F.cross_entropy(logits, left.view(-1), reduction="none") * wl.view(-1) + \
                F.cross_entropy(logits, (left + 1).view(-1), reduction="none") * (1 - wl).view(-1)
            loss_dfl = (ce.view(-1, 4).mean(-1) * weight).sum() / score_sum
        parts = torch.stack((loss_box * self.weights.box, loss_cls * self.weights.cls, loss_dfl * self.weights.dfl))
        return parts.sum() * b, parts.detach()

    @staticmethod
    def _targets(targets: torch.Tensor, batch: int, imgsz: torch.Tensor):
        """(n, 6) rows [image, class, cx, cy, w, h] (normalised) → padded (B,M,1) labels, (B,M,4) xyxy px, mask."""
        counts = torch.bincount(targets[:, 0].long(), minlength=batch) if len(targets) else \
            torch.zeros(batch, dtype=torch.long)
        m = int(counts.max()) if len(targets) else 0
        labels = torch.zeros(batch, m, 1)
        boxes = torch.zeros(batch, m, 4)
        mask = torch.zeros(batch, m, 1)
        h, w = imgsz.tolist()
        for i in range(batch):
            rows = targets[targets[:, 0] == i]
            if not len(rows):
                continue
            cx, cy, bw, bh = rows[:, 2] * w, rows[:, 3] * h, rows[:, 4] * w, rows[:, 5] * h
            labels[i, : len(rows), 0] = rows[:, 1]
            boxes[i, : len(rows)] = torch.stack((cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2), 1)
            mask[i, : len(rows)] = 1
        return labels, boxes, mask
