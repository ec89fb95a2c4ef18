"""mAP as rgbir reports it: AP per class and IoU threshold (0.50:0.05:0.95), computed by COCO's own evaluator
(``coco.py``), with mAP50 and mAP50-95 averaged over the classes that have ground truth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
