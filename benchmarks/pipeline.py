"""Pipeline throughput vs the bare backend on the same inputs, measured side by side in one run, for any backend
(ONNX Runtime, TensorRT, PyTorch on CPU or CUDA) and 1 or more camera pairs, with the pipeline's per-stage times.

    python benchmarks/pipeline.py [--model model.onnx|model.engine|weights|config] [--pairs 40] [--streams 1 2]
    python benchmarks/pipeline.py --model rgbir/assets/<demo>.safetensors --device cuda --half --cuda-graph

Without --model, --config (random weights) is exported to a temporary ONNX at --imgsz.
Goal (issue 14): the pipeline keeps >= 95% of the bare backend's throughput with 1 and with 2 camera pairs.
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

from rgbir.runtime.backends import backend_kind, open_backend
from rgbir.runtime.config import PipelineConfig, StreamConfig
from rgbir.runtime.pipeline import Pipeline
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
    parser.add_argument("--model", help="exported ONNX, TensorRT engine, weights or config (default: export --config)")
    parser.add_argument("--config", default="yolo11n-mm-mid")
    parser.add_argument("--imgsz", type=int, nargs=2, default=(512, 640), metavar=("H", "W"))
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 2], help="camera pairs to run at once")
    parser.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: ONNX Runtime's)")
    parser.add_argument("--device", help="GPU for TensorRT, cpu/cuda for PyTorch")
    parser.add_argument("--half", action="store_true", help="PyTorch: fp16")
    parser.add_argument("--cuda-graph", action="store_true", help="TensorRT or PyTorch: replay a CUDA graph")
    parser.add_argument("--attention", help="PyTorch: auto, kernel, reference or upstream")
    parser.add_argument("--gpu-preprocess", action="store_true", help="TensorRT or PyTorch: letterbox on the GPU "
                        "in the pipeline (the bare figure stays host-preprocessed)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model or export(args.config, tuple(args.imgsz), tmp / "model.onnx", batch="dynamic")
        options = {k: v for k, v in (("threads", args.threads), ("device", args.device), ("half", args.half),
                                     ("cuda_graph", args.cuda_graph), ("attention", args.attention),
                                     ("gpu_preprocess", args.gpu_preprocess)) if v}
        if backend_kind(model) == "pytorch":
            options["imgsz"] = tuple(args.imgsz)
        backend = open_backend(model, **options)
        rgb_dir, ir_dir = write_folders(tmp / "frames", args.pairs, size=(512, 640))
        meta = backend.metadata
        pre_ms, inputs = [], []
        for path in sorted(rgb_dir.iterdir()):
            rgb, ir = cv2.imread(str(path)), cv2.imread(str(ir_dir / path.name), cv2.IMREAD_UNCHANGED)
            start = time.perf_counter()
            arrays, _ = preprocess_pair(rgb, ir, meta, meta.input_dtype)
            pre_ms.append((time.perf_counter() - start) * 1e3)
            inputs.append(arrays)
        for arrays in inputs[:3]:  # warm-up (a CUDA graph is captured here)
            backend.infer(*arrays)
        start = time.perf_counter()
        for arrays in inputs:
            backend.infer(*arrays)
        bare = len(inputs) / (time.perf_counter() - start)
        rows = []
        for streams in args.streams:
            config = PipelineConfig(model=str(model), streams=[StreamConfig(str(rgb_dir), str(ir_dir))] * streams,
                                    stats_interval=0, batch=streams if meta.batch is None else 1)
            stats = Pipeline(config, backend=backend).run()
            summary = stats.summary()
            rows.append((streams, summary["fps"], {k: v["mean"] for k, v in summary["stages_ms"].items()}))
        backend.close()

    h, w = meta.imgsz
    print(f"{args.pairs} pairs of 640x512 frames per camera pair, network {h}x{w}, {backend.name} backend "
          f"({', '.join(f'{k}={v}' for k, v in options.items()) or 'defaults'}), model {Path(str(model)).name}, "
          f"{multiprocessing.cpu_count()} CPU cores; bare = preprocessed inputs, infer only, one pair per call; "
          f"pipeline = read, pair, preprocess, infer, NMS, pairs batched across camera pairs")
    print(f"bare backend: {bare:.2f} pairs/s; CPU preprocessing {statistics.median(pre_ms):.2f} ms/pair")
    print(f"{'camera pairs':>12} {'pipeline pairs/s':>17} {'vs bare':>8}   mean ms/pair per stage")
    for streams, fps, stages in rows:
        print(f"{streams:>12} {fps:17.2f} {fps / bare:8.1%}   " +
              ", ".join(f"{k} {v:.2f}" for k, v in stages.items()))
    print("goal: pipeline >= 95% of the bare backend with 1 and with 2 camera pairs")


if __name__ == "__main__":
    main()
