"""Pipeline throughput vs the bare backend on the same inputs, measured side by side in one run, and the
host-side pre/post-processing time per pair at 640.

    python benchmarks/pipeline.py [--model model.onnx] [--pairs 40] [--config yolo11n-mm-mid]

Without --model, the named config (random weights) is exported to a temporary ONNX at --imgsz.
Goal: the pipeline keeps >= 95% of the bare backend's throughput.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import cv2

from rgbir.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from rgbir.runtime.config import PipelineConfig, StreamConfig
from rgbir.runtime.pipeline import Pipeline
from rgbir.runtime.postprocess import postprocess
from rgbir.runtime.preprocess import preprocess_pair

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from media import write_folders  # noqa: E402  (the tests' generated RGB+IR frames)


def export(config: str, imgsz: tuple[int, int], path: Path, batch: int | str = 1) -> Path:
    """Export in a child process: torch's OpenMP threads would otherwise keep spinning and skew the timings."""
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(target=_export, args=(config, imgsz, path, batch))
    child.start()
    child.join()
    if child.exitcode != 0:
        raise SystemExit("export failed")
    return path


def _export(config: str, imgsz: tuple[int, int], path: Path, batch: int | str) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from lively import lively

    from rgbir.export import ExportOptions, export_onnx
    from rgbir.models import build_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(lively(build_model(config, nc=3), size=imgsz, batches=1), path,
                    ExportOptions(imgsz=imgsz, batch=batch))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="exported ONNX file (default: export --config)")
    parser.add_argument("--config", default="yolo11n-mm-mid")
    parser.add_argument("--imgsz", type=int, nargs=2, default=(512, 640), metavar=("H", "W"))
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--threads", type=int, nargs="+", default=[0, 1],
                        help="ONNX Runtime intra-op thread counts to compare (0 = ONNX Runtime's default)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = Path(args.model) if args.model else export(args.config, tuple(args.imgsz), tmp / "model.onnx")
        rgb_dir, ir_dir = write_folders(tmp / "frames", args.pairs, size=(512, 640))
        rows = []
        for threads in args.threads:
            backend = OnnxRuntimeBackend(model, threads=threads or None)
            meta = backend.metadata
            pre_ms, post_ms, inputs = [], [], []
            for path in sorted(rgb_dir.iterdir()):
                rgb, ir = cv2.imread(str(path)), cv2.imread(str(ir_dir / path.name), cv2.IMREAD_UNCHANGED)
                start = time.perf_counter()
                arrays, _ = preprocess_pair(rgb, ir, meta)
                pre_ms.append((time.perf_counter() - start) * 1e3)
                inputs.append(arrays)
            backend.infer(*inputs[0])  # warm-up
            start = time.perf_counter()
            for arrays in inputs:
                outputs = backend.infer(*arrays)
            bare = len(inputs) / (time.perf_counter() - start)
            for _ in range(5):
                start = time.perf_counter()
                postprocess(outputs["predictions"], meta.postprocess.score_threshold, meta.postprocess.iou_threshold)
                post_ms.append((time.perf_counter() - start) * 1e3)
            config = PipelineConfig(model=str(model), streams=[StreamConfig(str(rgb_dir), str(ir_dir))],
                                    stats_interval=0)
            pipe = Pipeline(config, backend=backend)
            start = time.perf_counter()
            stats = pipe.run()
            piped = stats.pairs / (time.perf_counter() - start)
            rows.append((threads, bare, piped, statistics.median(pre_ms), statistics.median(post_ms)))

    h, w = meta.imgsz
    print(f"{args.pairs} pairs of 640x512 frames, network {h}x{w}, ONNX Runtime CPU ({multiprocessing.cpu_count()} "
          f"cores), model {model.name}; bare = preprocessed inputs, infer only; pipeline = read, pair, "
          "preprocess, infer, NMS")
    print(f"{'ORT threads':>12} {'bare pairs/s':>13} {'pipeline':>9} {'ratio':>7} {'pre ms/pair':>12} "
          f"{'post ms/pair':>13}")
    for threads, bare, piped, pre, post in rows:
        print(f"{threads or 'default':>12} {bare:13.2f} {piped:9.2f} {piped / bare:7.1%} {pre:12.2f} {post:13.2f}")
    print("goal: pipeline >= 95% of the bare backend")


if __name__ == "__main__":
    main()
