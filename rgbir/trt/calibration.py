"""INT8 calibration for TensorRT 10: batches of *paired* RGB + IR images, preprocessed exactly as at run time.

The images come from a YOLOMM/LLVIP ``data.yaml`` (its train split, else val) or from two folders paired by
file name. TensorRT asks ``get_batch(names)`` for device pointers in the order of ``names``; the calibration
cache is written after the first calibration and, when present, makes TensorRT skip the images entirely.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

from ..errors import RgbirError
from ..files import atomic_write
from ..metadata import ModelMetadata
from ..runtime.preprocess import preprocess_pair
from ..runtime.thermal import ThermalAGC


def _spread(pairs: list, limit: int) -> list:
    """At most ``limit`` pairs spread evenly over the list (datasets are often consecutive video frames)."""
    if len(pairs) <= limit:
        return pairs
    return [pairs[int(i * len(pairs) / limit)] for i in range(limit)]


def calibration_pairs(source: str, limit: int, batch: int = 1) -> list[tuple[Path, Path]]:
    """(RGB, IR) image paths from a data.yaml or from 'RGB_DIR,IR_DIR' (paired by file stem), at most ``limit``
    spread over the whole set; fewer than one ``batch`` is an error (``calibration_batches`` makes full ones only)."""
    pairs = _spread(_listed_pairs(source), limit)
    if len(pairs) < batch:
        raise RgbirError(f"{len(pairs)} calibration pairs cannot fill one batch of {batch}")
    return pairs


def _listed_pairs(source: str) -> list[tuple[Path, Path]]:
    """Every (RGB, IR) pair the data.yaml or the two folders hold."""
    if source.endswith((".yaml", ".yml")):
        from ..data.dataset import load_dataset

        for split in ("train", "val"):
            try:
                dataset = load_dataset(source, split)
            except RgbirError:
                continue
            pairs = [(s.rgb, s.ir) for s in dataset.samples if s.ir is not None]
            if pairs:
                return pairs
        raise RgbirError(f"{source} lists no RGB + IR image pairs in its train or val split")
    folders = [Path(p) for p in source.split(",")]
    if len(folders) != 2 or not all(f.is_dir() for f in folders):
        raise RgbirError(f"calibration data '{source}' is neither a data.yaml nor two existing folders "
                         "'RGB_DIR,IR_DIR'")
    from ..runtime.sources.folder import list_images

    ir_by_stem = {p.stem: p for p in list_images(folders[1])}
    pairs = [(p, ir_by_stem[p.stem]) for p in list_images(folders[0]) if p.stem in ir_by_stem]
    if not pairs:
        raise RgbirError(f"no image in {folders[0]} has a same-named image in {folders[1]}")
    return pairs


def calibration_batches(pairs: list[tuple[Path, Path]], meta: ModelMetadata,
                        batch: int) -> Iterator[dict[str, np.ndarray]]:
    """Full batches of network inputs by name (NCHW, in the inputs' own dtype: TensorRT reads a calibration
    buffer as its input's type, so an fp16-I/O model gets fp16 bytes); a last partial batch is left out."""
    agc = ThermalAGC()  # 16-bit radiometric IR → 8-bit grey, as the runtime does
    names = [s.name for s in meta.inputs]
    for start in range(0, len(pairs) - batch + 1, batch):
        arrays: dict[str, list[np.ndarray]] = {n: [] for n in names}
        for rgb_path, ir_path in pairs[start:start + batch]:
            rgb, ir = (cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in (rgb_path, ir_path))
            if rgb is None or ir is None:
                raise RgbirError(f"cannot read calibration image {rgb_path if rgb is None else ir_path}")
            inputs, _ = preprocess_pair(rgb, agc(ir), meta, meta.input_dtype)
            for name, array in zip(names, inputs):
                arrays[name].append(array)
        yield {n: np.concatenate(a) for n, a in arrays.items()}


class CalibrationFeeder:
    """The TensorRT-independent half of a calibrator: batches in, device pointers out, cache on disk."""

    def __init__(self, batches: Iterator[dict[str, np.ndarray]], batch_size: int, cache: Path | None,
                 upload: Callable[[str, np.ndarray], int]):
        self.batches, self.batch_size, self.cache, self.upload = batches, batch_size, cache, upload
        self.fed = 0
        self.error: Exception | None = None  # raised by a batch; re-raised after TensorRT gives up

    def next_pointers(self, names: list[str]) -> list[int] | None:
        """Pointers to the next batch, one per requested input name in that order; None when done."""
        batch = next(self.batches, None)
        if batch is None:
            return None
        missing = [n for n in names if n not in batch]
        if missing:
            raise RgbirError(f"TensorRT asked for calibration input(s) {missing}; the model's metadata has "
                             f"{list(batch)}")
        self.fed += 1
        return [self.upload(n, np.ascontiguousarray(batch[n])) for n in names]

    def read_cache(self) -> bytes | None:
        try:
            return self.cache.read_bytes() if self.cache and self.cache.is_file() else None
        except OSError as e:
            self.error = RgbirError(f"cannot read the calibration cache {self.cache}: {e.strerror}")
            return None

    def write_cache(self, data) -> None:
        if self.cache and self.error is None:  # never keep a table from a calibration that failed midway
            try:
                atomic_write(self.cache, bytes(data))
            except OSError as e:
                self.error = RgbirError(f"cannot write the calibration cache {self.cache}: {e.strerror}")


def make_calibrator(trt, feeder: CalibrationFeeder):
    """A ``trt.IInt8EntropyCalibrator2`` (TensorRT 10 only; removed in 11.0) driven by ``feeder``."""

    class PairedCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)  # pybind11 trampolines need the base initialised

        def get_batch_size(self) -> int:
            return feeder.batch_size

        def get_batch(self, names):
            try:
                return feeder.next_pointers(list(names))
            except Exception as e:  # an exception must not cross into TensorRT's C++: end calibration, keep it
                feeder.error = e
                return None

        def read_calibration_cache(self):
            return feeder.read_cache()  # errors are kept on the feeder, never raised into TensorRT

        def write_calibration_cache(self, cache) -> None:
            feeder.write_cache(cache)

    return PairedCalibrator()


class DeviceUploader:
    """Copies each input's batch to the GPU (one upload buffer per input name) and waits for the copy, since
    TensorRT reads the pointer as soon as ``get_batch`` returns."""

    def __init__(self):
        from . import cuda

        self.cuda = cuda
        self.stream = None
        self.uploads: dict[str, object] = {}

    def __call__(self, name: str, array: np.ndarray) -> int:
        self.stream = self.stream or self.cuda.Stream()
        pointer = self.uploads.setdefault(name, self.cuda.Upload()).put(array, self.stream)
        self.stream.synchronize()
        return pointer

    def free(self) -> None:
        for upload in self.uploads.values():
            upload.free()
        self.uploads.clear()
        if self.stream is not None:
            self.stream.destroy()
            self.stream = None
