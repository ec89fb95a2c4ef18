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
    try:
        table = np.array(rows, np.float32).reshape(-1, 5)
    except ValueError as e:
        raise RgbirError(f"{path}: each label line must be 'class cx cy w h', numbers ({e})") from e
    return table[:, 0].astype(np.int64), table[:, 1:]


@dataclass
class _Layout:
    """Where a data.yaml puts a split: the dataset root, class names, the RGB image folder, and the folder names
    of each modality and of the labels."""

    root: Path
    names: dict[int, str]
    image_dir: Path
    rgb_dir: str
    ir_dir: str | None

    def folders(self) -> list[Path]:
        """The split's folders of RGB images, IR images and labels."""
        swapped = [self.ir_dir, "labels"] if self.ir_dir else ["labels"]
        try:
            return [self.image_dir] + [_swap_dir(self.image_dir, self.root, self.rgb_dir, d) for d in swapped]
        except (ValueError, RgbirError):  # images outside the root, or not in the RGB folder: their folder only
            return [self.image_dir]


def _layout(data: Path, split: str) -> _Layout:
    try:
        cfg = yaml.safe_load(data.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise RgbirError(f"no dataset file {data}") from e
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise RgbirError(f"{data} is not a data.yaml ({' '.join(str(e).split())[:200]}): give the dataset's YAML "
                         "file (path, train, val, names)") from e
    if not isinstance(cfg, dict) or split not in cfg or "names" not in cfg:
        raise RgbirError(f"{data} needs 'names' and a '{split}' entry (YOLOMM/ultralytics data.yaml)")
    names = cfg["names"]
    if not isinstance(names, (list, dict)) or not names:
        raise RgbirError(f"{data}: 'names' must be a list of class names or an {{id: name}} mapping")
    if not isinstance(cfg[split], str) or not isinstance(cfg.get("path") or "", str):
        raise RgbirError(f"{data}: '{split}' (and 'path') must be a folder name, got {cfg[split]!r}: give the folder "
                         "of the split's RGB images")
    root = Path(cfg.get("path") or data.parent)
    if not root.is_absolute():
        root = (data.parent / root).resolve()
    try:
        names = {int(k): str(v) for k, v in names.items()} if isinstance(names, dict) else dict(enumerate(names))
    except ValueError as e:
        raise RgbirError(f"{data}: the keys of 'names' must be class ids (0, 1, ...)") from e
    dirs = cfg.get("modality") or {"rgb": "images", "ir": "images_ir"}
    if not isinstance(dirs, dict):
        raise RgbirError(f"{data}: 'modality' must map rgb and ir to folder names")
    return _Layout(root, names, root / cfg[split], dirs.get("rgb", "images"), dirs.get("ir") or dirs.get("x"))


def split_folders(data: str | Path, splits: tuple[str, ...] = ("train", "val")) -> list[Path]:
    """The folders a data.yaml's splits read (RGB images, IR images, labels), for the splits it has."""
    folders = []
    for split in splits:
        try:
            folders += _layout(Path(data), split).folders()
        except RgbirError:
            continue  # a split the file lacks: load_dataset says so where it matters
    return folders


def load_dataset(data: str | Path, split: str = "val") -> PairedDataset:
    data = Path(data)
    layout = _layout(data, split)
    root, image_dir, rgb_dir, ir_dir = layout.root, layout.image_dir, layout.rgb_dir, layout.ir_dir
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
    return PairedDataset(root, layout.names, samples)
