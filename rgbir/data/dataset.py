"""Paired RGB + IR detection datasets described by a data.yaml (YOLOMM or LLVIP layout).

The IR image of ``<root>/<rgb dir>/<split>/<name>.<ext>`` is ``<root>/<ir dir>/<split>/<name>.*`` and its
labels are ``<root>/labels/<split>/<name>.txt`` (YOLO format, shared by both modalities), where the directory
names come from the yaml's ``modality`` map (YOLOMM: images / images_ir; LLVIP: visible / infrared).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from ..errors import RgbirError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class Sample:
    rgb: Path
    ir: Path | None
    classes: np.ndarray  # (K,) int
    boxes: np.ndarray  # (K, 4) normalised cx, cy, w, h


@dataclass
class PairedDataset:
    root: Path
    names: dict[int, str]
    samples: list[Sample]


def _swap_dir(path: Path, root: Path, old: str, new: str) -> Path:
    relative = list(path.relative_to(root).parts)
    if old not in relative:
        raise RgbirError(f"{path} is not under a '{old}' directory of {root}")
    relative[relative.index(old)] = new
    return root.joinpath(*relative)


def label_line(cls: int, box, width: int, height: int) -> str:
    """One YOLO label line, 'class cx cy w h', from an xyxy box in pixels of a width x height frame (the reader
    below, the synthetic scenes and ``rgbir run --yolo-txt`` share it)."""
    x1, y1, x2, y2 = box
    return f"{cls} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} {(x2 - x1) / width:.6f} " \
        f"{(y2 - y1) / height:.6f}"


def _read_labels(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        return np.zeros(0, np.int64), np.zeros((0, 4), np.float32)
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    if any(len(r) != 5 for r in rows):
        raise RgbirError(f"{path}: each label line must be 'class cx cy w h'")
    table = np.array(rows, np.float32).reshape(-1, 5)
    return table[:, 0].astype(np.int64), table[:, 1:]


def load_dataset(data: str | Path, split: str = "val") -> PairedDataset:
    data = Path(data)
    try:
        cfg = yaml.safe_load(data.read_text())
    except FileNotFoundError as e:
        raise RgbirError(f"no dataset file {data}") from e
    if not isinstance(cfg, dict) or split not in cfg or "names" not in cfg:
        raise RgbirError(f"{data} needs 'names' and a '{split}' entry (YOLOMM/ultralytics data.yaml)")
    root = Path(cfg.get("path") or data.parent)
    if not root.is_absolute():
        root = (data.parent / root).resolve()
    names = cfg["names"]
    names = {int(k): v for k, v in names.items()} if isinstance(names, dict) else dict(enumerate(names))
    dirs = cfg.get("modality") or {"rgb": "images", "ir": "images_ir"}
    rgb_dir, ir_dir = dirs.get("rgb", "images"), dirs.get("ir") or dirs.get("x")
    image_dir = root / cfg[split]
    if not image_dir.is_dir():
        raise RgbirError(f"{data}: the {split} images are not at {image_dir}")
    samples = []
    for rgb in sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        ir = None
        if ir_dir:
            base = _swap_dir(rgb, root, rgb_dir, ir_dir)
            found = [base] if base.is_file() else [base.with_suffix(s) for s in IMAGE_SUFFIXES
                                                   if base.with_suffix(s).is_file()]
            if not found:
                raise RgbirError(f"no IR image for {rgb} (looked for {base.with_suffix('.*')})")
            ir = found[0]
        classes, boxes = _read_labels(_swap_dir(rgb, root, rgb_dir, "labels").with_suffix(".txt"))
        samples.append(Sample(rgb, ir, classes, boxes))
    if not samples:
        raise RgbirError(f"no images in {image_dir}")
    return PairedDataset(root, names, samples)
