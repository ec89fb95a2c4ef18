"""Activation ranges for INT8 quantization, from calibration images (``rgbir quantize``).

Calibration runs paired RGB + IR images through ``rgbir.trt.calibration`` (the run-time preprocessing), in chunks
(bounded memory), with ONNX Runtime's calibrators (``create_calibrator``) at TensorRT's histogram sizes (2048
bins; entropy compares 128-bin quantisations — ``quantize_static`` alone would give entropy 128 bins, the same as
min/max). The ranges are computed once and handed to ``quantize_static`` through its calibration cache, so
``--sensitivity`` re-quantizes without re-calibrating.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from ..errors import RgbirError
from ..files import atomic_write
from ..metadata import ModelMetadata
from .qdq_placement import QUANTIZED_OP_TYPES

log = logging.getLogger(__name__)
METHODS = ("percentile", "entropy", "minmax")
PERCENTILE = 99.999  # percentile calibration keeps this share of |activation| values in range
CHUNK = 4  # calibration batches held in memory at once (histograms: every tensor, ~270 MB per 640x640 pair)
Batches = Iterator[dict[str, np.ndarray]]  # network inputs by name, one batch each


def ort_quantization():
    """onnxruntime.quantization, if it can hand precomputed ranges to quantize_static (calibration cache)."""
    from onnxruntime.quantization import calibrate

    if not hasattr(calibrate, "save_tensors_data"):
        import onnxruntime

        raise RgbirError(f"onnxruntime {onnxruntime.__version__} cannot pass calibration ranges to quantize_static "
                         "(no calibration cache): pip install -U onnxruntime")
    from onnxruntime import quantization

    return quantization


@contextlib.contextmanager
def quiet_ort():
    """Hide what ORT's quantizer prints (histogram progress) and its advice to pre-process the model, which
    rgbir declines on purpose (see ``quantize.py``)."""
    root = logging.getLogger()

    def keep(record: logging.LogRecord) -> bool:
        return "pre-process" not in record.getMessage()

    root.addFilter(keep)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.removeFilter(keep)


def calibration_method(name: str):
    """ORT's ``CalibrationMethod`` for one of ``METHODS``."""
    from onnxruntime.quantization import CalibrationMethod

    return {"percentile": CalibrationMethod.Percentile, "entropy": CalibrationMethod.Entropy,
            "minmax": CalibrationMethod.MinMax}[name]


def _reader(batches: Iterable[dict[str, np.ndarray]]):
    """An ORT CalibrationDataReader over ready-made input batches."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(batches)

        def get_next(self):
            return next(self.batches, None)

    return Reader()


def _chunks(batches: Iterator, size: int) -> Iterator[list]:
    while chunk := [b for _, b in zip(range(size), batches)]:
        yield chunk


def calibration_inputs(data: str, images: int, meta: ModelMetadata) -> tuple[int, Batches]:
    """(pair count, input batches at the model's batch size) from ``data`` (a data.yaml or RGB_DIR,IR_DIR, at most
    ``images`` pairs), preprocessed as at run time."""
    from ..trt.calibration import calibration_batches, calibration_pairs

    batch = meta.batch or 1
    pairs = calibration_pairs(data, images, batch)
    return len(pairs) // batch * batch, calibration_batches(pairs, meta, batch)


def calibrate(model_path: Path, batches: Batches, method: str, workdir: Path):
    """Activation ranges (ORT ``TensorsData``) of every Conv/Gemm/MatMul tensor, collected chunk by chunk."""
    quantization = ort_quantization()
    bins = {"entropy": {"num_bins": 2048, "num_quantized_bins": 128}, "percentile": {"num_bins": 2048}}
    calibrator = quantization.create_calibrator(
        model_path, list(QUANTIZED_OP_TYPES), augmented_model_path=str(workdir / "augmented.onnx"),
        calibrate_method=calibration_method(method), providers=["CPUExecutionProvider"],
        extra_options={"symmetric": True, "percentile": PERCENTILE, **bins.get(method, {})})
    with quiet_ort():
        for chunk in _chunks(batches, CHUNK):
            calibrator.collect_data(_reader(chunk))
        return calibrator.compute_data()


def ranges_file(cache: Path | None, method: str, model_path: Path, workdir: Path,
                inputs: Callable[[], tuple[int, Batches]]) -> tuple[Path, int]:
    """A calibration cache holding the ranges and the pairs calibrated on: ``cache`` as it is when present (0
    pairs), else calibrated on ``inputs()`` (called only then) and written to ``cache`` or into ``workdir``."""
    quantization = ort_quantization()
    if cache is not None and Path(cache).is_file():
        log.info(f"activation ranges from {cache}")
        return Path(cache), 0
    count, batches = inputs()
    ranges = calibrate(model_path, batches, method, workdir)
    written = workdir / "ranges.json"
    quantization.calibrate.save_tensors_data(ranges, written)
    if cache is None:
        return written, count
    return atomic_write(cache, written.read_bytes()), count  # a cut-short write keeps the previous cache
