"""Request latency and throughput through Triton Inference Server (HTTP and gRPC) vs the local ONNX Runtime backend,
on the same model and inputs, measured side by side in one run (interleaved rounds, one request at a time): batch 1
and a batch of 4, median latency and pairs/s, plus the server's install and start times.

    python benchmarks/triton_vs_local.py [--model model.onnx] [--config yolo11n-mm-mid] [--imgsz 256 320]

Without --model, the named config (random weights) is exported with a dynamic batch to a temporary ONNX. The server
is the tritonserver of the nvidia-pytriton wheel (tests/triton_server.py; Python backend only, so the model runs in
rgbir's python-onnxruntime model, ONNX Runtime on the CPU as locally) on loopback ports. Server and client share
the machine: Triton's figures include its request handling, the Python stub's shared-memory hops and both ends'
serialisation, but no network.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from rgbir.runtime.backends import open_backend
from rgbir.serve import RepoOptions, write_repository

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "benchmarks")]
from pipeline import export  # noqa: E402  (the pipeline benchmark's export in a child process)

from triton_server import LocalServer, install  # noqa: E402  (the tests' local tritonserver)


def timed(backend, inputs: list[np.ndarray], calls: int) -> list[float]:
    """Seconds per call, ``calls`` calls back to back."""
    out = []
    for _ in range(calls):
        start = time.perf_counter()
        backend.infer(*inputs)
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="exported ONNX file, dynamic batch for the batch of 4 (default: export "
                                        "--config)")
    parser.add_argument("--config", default="yolo11n-mm-mid")
    parser.add_argument("--imgsz", type=int, nargs=2, default=(256, 320), metavar=("H", "W"))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per backend and batch")
    parser.add_argument("--calls", type=int, default=10, help="calls per round")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = Path(args.model) if args.model else export(args.config, tuple(args.imgsz), tmp / "model.onnx",
                                                            "dynamic")
        start = time.perf_counter()
        installation = install()
        install_s = time.perf_counter() - start
        write_repository(model, tmp / "repo", RepoOptions(name="model", platform="python-onnxruntime", kind="cpu"))
        with LocalServer(installation, tmp / "repo", tmp / "server") as server:
            backends = {"local onnxruntime": open_backend(model),
                        "triton http": open_backend(f"triton://{server.http}/model"),
                        "triton grpc": open_backend(f"triton+grpc://{server.grpc}/model")}
            meta = backends["local onnxruntime"].metadata
            batches = args.batches if meta.batch is None else [meta.batch]
            rng = np.random.default_rng(0)
            rows = []
            for batch in batches:
                inputs = [rng.random((batch, s.channels, *meta.imgsz), dtype=np.float32) for s in meta.inputs]
                reference = backends["local onnxruntime"].infer(*inputs)
                times = {name: [] for name in backends}
                for name, backend in backends.items():
                    diff = max(float(np.abs(backend.infer(*inputs)[k] - v).max()) for k, v in reference.items())
                    assert diff < 1e-4, f"{name} differs from local ONNX Runtime by {diff}"
                    timed(backend, inputs, 2)  # warm-up
                for _ in range(args.rounds):
                    for name, backend in backends.items():
                        times[name] += timed(backend, inputs, args.calls)
                local = statistics.median(times["local onnxruntime"])
                for name, seconds in times.items():
                    median = statistics.median(seconds)
                    rate = batch * len(seconds) / sum(seconds)
                    rows.append((name, batch, median * 1e3, (median - local) * 1e3, rate))
            for backend in backends.values():
                backend.close()
            start_s = server.start_seconds

    h, w = meta.imgsz
    print(f"model {args.model or args.config} at {h}x{w}, ONNX Runtime CPU, {multiprocessing.cpu_count()} cores "
          f"shared by client and server; {args.rounds} x {args.calls} calls per backend and batch, one at a time")
    print(f"{'backend':<18} {'batch':>5} {'median ms':>10} {'vs local ms':>12} {'pairs/s':>9}")
    for name, batch, median, overhead, rate in rows:
        print(f"{name:<18} {batch:>5} {median:10.2f} {overhead:+12.2f} {rate:9.1f}")
    cached = " (cached)" if installation.seconds == 0 else ""
    print(f"server install {install_s:.1f} s{cached}; server start (repository loaded, ready) {start_s:.2f} s")


if __name__ == "__main__":
    main()
