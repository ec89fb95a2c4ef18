"""A folder of images (LLVIP visible/ + infrared/, YOLOMM images/ + images_ir/). A camera pair's two folders
are matched by file stem (``match_by_stem``), so a missing or extra file never shifts the later pairs."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .base import Source, SourceError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
SHOWN = 5  # file names listed in a warning about images without a partner


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


class ImageFolderSource(Source):
    live = False

    def __init__(self, folder: str | Path, names: list[str] | None = None):
        self.folder = Path(folder)
        self.name = str(folder)
        self.names = names  # pair by file name: read exactly these names, in this order
        self.files: list[Path] = []
        self.position = 0

    def images(self) -> list[Path]:
        """Every image in the folder, in file-name order; SourceError when the folder is missing."""
        if not self.folder.is_dir():
            raise SourceError(f"image folder {self.folder} does not exist")
        return list_images(self.folder)

    def open(self) -> None:
        images = self.images()
        self.files = images if self.names is None else [self.folder / n for n in self.names]
        if not self.files:
            raise SourceError(f"no images in {self.folder}")
        self.position = 0

    def read(self) -> np.ndarray | None:
        if self.position >= len(self.files):
            return None
        path = self.files[self.position]
        self.position += 1
        self.file = path.name
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        # an unreadable file is a corrupt frame (an empty array), not the end of the folder
        return image if image is not None else np.empty((0, 0), np.uint8)


def match_by_stem(rgb: Source, ir: Source | None) -> str | None:
    """Make a pair of image folders read only the images whose file stems both have, in sorted stem order (a
    pair's two files share a name, not a position; the extensions may differ). Returns one warning naming the
    images without a partner, or None; SourceError when no name matches. Other sources, and folders given
    explicit names, are left as they are."""
    if not (isinstance(rgb, ImageFolderSource) and isinstance(ir, ImageFolderSource)) \
            or rgb.names is not None or ir.names is not None:
        return None
    rgb_files, ir_files = _by_stem(rgb), _by_stem(ir)
    if not rgb_files or not ir_files:
        return None  # open() says which folder is empty
    common = rgb_files.keys() & ir_files.keys()
    if not common:
        raise SourceError(f"no image in {rgb.folder} has a same-named partner in {ir.folder} (e.g. "
                          f"{next(iter(rgb_files.values())).name} vs {next(iter(ir_files.values())).name}): "
                          "RGB and IR images are paired by file name")
    rgb.names, ir.names = ([files[s].name for s in sorted(common)] for files in (rgb_files, ir_files))
    notes = [_no_partner(source.folder, side, other, [p.name for s, p in files.items() if s not in common])
             for source, files, side, other in ((rgb, rgb_files, "RGB", "IR"), (ir, ir_files, "IR", "RGB"))]
    notes = [n for n in notes if n]
    return " and ".join(notes) + ": they are skipped" if notes else None


def _by_stem(source: ImageFolderSource) -> dict[str, Path]:
    """The folder's images by file stem; SourceError when two share one (a.jpg and a.png: which one pairs?)."""
    images: dict[str, Path] = {}
    for path in source.images():
        if path.stem in images:
            raise SourceError(f"{source.folder} holds both {images[path.stem].name} and {path.name}: images are "
                              "paired by file name, so one of them must go")
        images[path.stem] = path
    return images


def _no_partner(folder: Path, side: str, other: str, names: list[str]) -> str | None:
    """'3 RGB images in FOLDER have no IR partner (a.png, b.png, c.png)', or None when there are none."""
    if not names:
        return None
    shown = ", ".join(names[:SHOWN]) + (", …" if len(names) > SHOWN else "")
    count = f"1 {side} image in {folder} has" if len(names) == 1 else f"{len(names)} {side} images in {folder} have"
    return f"{count} no {other} partner ({shown})"
