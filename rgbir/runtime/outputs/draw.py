"""Side-by-side RGB | IR view with boxes, labels and an FPS overlay."""

from __future__ import annotations

import cv2
import numpy as np

from ..results import PairResult

PALETTE = [(56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207), (10, 249, 72),
           (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0), (168, 153, 44), (255, 194, 0)]


def _panel(image: np.ndarray | None, height: int) -> tuple[np.ndarray, float]:
    if image is None:
        return np.zeros((height, height * 4 // 3, 3), np.uint8), 1.0
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.dtype != np.uint8:
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    scale = height / image.shape[0]
    return cv2.resize(image, (max(1, round(image.shape[1] * scale)), height)), scale


def side_by_side(result: PairResult, height: int = 480, fps: float | None = None) -> np.ndarray:
    pair = result.pair
    rgb, s_rgb = _panel(pair.rgb.image, height)
    ir, s_ir = _panel(pair.ir.image if pair.ir is not None else None, height)
    for d in result.detections:
        color = PALETTE[d.cls % len(PALETTE)]
        label = f"{d.name} {d.score:.2f}" + (f" #{d.track_id}" if d.track_id is not None else "")
        for panel, box, scale in ((rgb, d.box_rgb, s_rgb), (ir, d.box_ir, s_ir)):
            if box is None:
                continue
            x1, y1, x2, y2 = (int(round(v * scale)) for v in box)
            cv2.rectangle(panel, (x1, y1), (x2, y2), color, 2)
            cv2.putText(panel, label, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, color, 1, cv2.LINE_AA)
    canvas = np.concatenate([rgb, ir], 1)
    text = f"#{pair.index}  skew {pair.skew_ms:+.1f} ms" + (f"  {fps:.1f} FPS" if fps else "")
    if result.error:
        text += f"  {result.error}"
    cv2.putText(canvas, text, (8, height - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas
