"""The shipped demo detector as fp32, fp16 and INT8 (Q/DQ, 'rgbir quantize') ONNX: mAP50 / mAP50-95 on synthetic
validation scenes, file size and ONNX Runtime CPU latency at batch 1, measured side by side in one run.

ONNX Runtime's CPU runs the Q/DQ model to measure its accuracy: with Q/DQ only on the inputs of convolutions it
dequantizes and computes in float, so its CPU latency says nothing about TensorRT's INT8 speed.

    python benchmarks/int8_ort.py [--imgsz 160,192] [--val 60] [--calib-images 32] [--repeats 30]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from rgbir.cli.common import quiet_torch_export
from rgbir.cli.demo import DEMO_WEIGHTS
from rgbir.data.synthetic import SceneConfig, write_dataset
from rgbir.eval.validate import validate
from rgbir.export import ExportOptions, export_onnx
from rgbir.export.quantize import QuantizeOptions, quantize_onnx
from rgbir.models import load
from rgbir.options import image_size
from rgbir.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend


def models(root: Path, imgsz: tuple[int, int], data: Path, calib_images: int) -> dict[str, Path]:
    """fp32 and fp16 exports of the demo weights (float I/O), and the INT8 model quantized from the fp32 one."""
    model = load(DEMO_WEIGHTS)
    paths = {}
    with quiet_torch_export():
        for precision in ("fp32", "fp16"):
            options = ExportOptions(imgsz=imgsz, precision=precision, io_dtype="fp32")
            paths[precision] = export_onnx(model, root / f"{precision}.onnx", options).path
    options = QuantizeOptions(str(data), calibration_images=calib_images)
    paths["int8"] = quantize_onnx(paths["fp32"], root / "int8.onnx", options).path
    return paths


def latencies(paths: dict[str, Path], feeds: dict[str, np.ndarray], threads: int, repeats: int) -> dict[str, float]:
    """Median ms per batch-1 run of each model, the models taking turns so that load changes hit all alike."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    sessions = {k: ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"]) for k, p in paths.items()}
    for session in sessions.values():
        for _ in range(3):
            session.run(None, feeds)
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(repeats):
        for name, session in sessions.items():
            start = time.perf_counter()
            session.run(None, feeds)
            times[name].append((time.perf_counter() - start) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imgsz", type=image_size, default=(160, 192), help="network input H,W (demo scenes)")
    parser.add_argument("--val", type=int, default=60, help="validation scenes (default 60, as in CI)")
    parser.add_argument("--calib-images", type=int, default=32, help="calibration pairs (training scenes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = write_dataset(root / "data", args.calib_images, args.val, SceneConfig(size=args.imgsz, seed=args.seed))
        paths = models(root, args.imgsz, data, args.calib_images)
        scores = {k: validate(OnnxRuntimeBackend(p), str(data)).ap for k, p in paths.items()}
        h, w = args.imgsz
        rng = np.random.default_rng(0)
        feeds = {"rgb": rng.random((1, 3, h, w), dtype=np.float32), "ir": rng.random((1, 3, h, w), dtype=np.float32)}
        ms = latencies(paths, feeds, args.threads, args.repeats)
        sizes = {k: p.stat().st_size for k, p in paths.items()}
    print(f"demo detector at {h}x{w}, {args.val} validation scenes, {args.calib_images} calibration pairs, "
          f"ONNX Runtime {ort.__version__} CPU, {args.threads} threads, batch 1")
    columns = ("mAP50", 7), ("mAP50-95", 9), ("Δ mAP50-95", 11), ("MB", 6), ("size", 6), ("ms", 7), ("latency", 8)
    print(f"{'model':<6} " + " ".join(f"{name:>{width}}" for name, width in columns))
    for name in paths:
        print(f"{name:<6} {scores[name].map50:7.4f} {scores[name].map:9.4f} "
              f"{scores[name].map - scores['fp32'].map:+11.4f} {sizes[name] / 1e6:6.2f} "
              f"{sizes[name] / sizes['fp32']:5.2f}x {ms[name]:7.2f} {ms[name] / ms['fp32']:7.2f}x")


if __name__ == "__main__":
    main()
