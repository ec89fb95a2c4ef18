"""Small generated RGB+IR media for runtime tests: moving warm squares, as image folders or videos."""

from pathlib import Path

import cv2
import numpy as np


def frame_pair(i: int, size=(120, 160), ir_size=None) -> tuple[np.ndarray, np.ndarray]:
    h, w = size
    rgb = np.full((h, w, 3), 90, np.uint8)
    x = 10 + (i * 3) % (w - 40)
    cv2.rectangle(rgb, (x, 30), (x + 25, 70), (40, 160, 220), -1)
    cv2.putText(rgb, str(i % 100), (5, h - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
    ir = np.full((h, w), 30, np.uint8)
    cv2.rectangle(ir, (x, 30), (x + 25, 70), 230, -1)
    if ir_size is not None:
        ir = cv2.resize(ir, (ir_size[1], ir_size[0]))
    return rgb, ir


def write_folders(root: Path, count: int, **kw) -> tuple[Path, Path]:
    rgb_dir, ir_dir = root / "visible", root / "infrared"
    rgb_dir.mkdir(parents=True, exist_ok=True)
    ir_dir.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        rgb, ir = frame_pair(i, **kw)
        cv2.imwrite(str(rgb_dir / f"{i:05d}.jpg"), rgb)
        cv2.imwrite(str(ir_dir / f"{i:05d}.jpg"), ir)
    return rgb_dir, ir_dir


def write_videos(root: Path, count: int, fps: float = 15.0, **kw) -> tuple[Path, Path]:
    root.mkdir(parents=True, exist_ok=True)
    paths = root / "rgb.avi", root / "ir.avi"
    writers = None
    for i in range(count):
        rgb, ir = frame_pair(i, **kw)
        ir = cv2.cvtColor(ir, cv2.COLOR_GRAY2BGR)
        if writers is None:
            writers = [cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"MJPG"), fps, (f.shape[1], f.shape[0]))
                       for p, f in zip(paths, (rgb, ir))]
        writers[0].write(rgb)
        writers[1].write(ir)
    for w in writers:
        w.release()
    return paths
