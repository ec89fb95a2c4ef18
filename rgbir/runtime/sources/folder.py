"""A folder of images read in file-name order (LLVIP visible/ + infrared/, YOLOMM images/ + images_ir/)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .base import Source, SourceError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


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

    def open(self) -> None:
        if not self.folder.is_dir():
            raise SourceError(f"image folder {self.folder} does not exist")
        self.files = [self.folder / n for n in self.names] if self.names is not None else list_images(self.folder)
        if not self.files:
            raise SourceError(f"no images in {self.folder}")
        self.position = 0

    def read(self) -> np.ndarray | None:
        if self.position >= len(self.files):
            return None
        path = self.files[self.position]
        self.position += 1
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        # an unreadable file is a corrupt frame (an empty array), not the end of the folder
        return image if image is not None else np.empty((0, 0), np.uint8)
