"""ONNX Runtime (CPU) latency of one MSC block at YOLO11n's P4 size, three ways, measured side by side:

- rgbir: the block exported with one ``rgbir::TopKSparseAttention`` node (local-function body);
- rgbir inlined: the same body inlined (what a runtime without local functions gets);
- upstream: the YOLOMM formulation exported as-is (two TopK + ScatterElements + two Softmax + two MatMul).

Prints median milliseconds and ratios from one run.  python benchmarks/msc_attention_ort.py [--size 40]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from rgbir.export import topk_function
from rgbir.models.fusion import MSC
from rgbir.models.sparse_attention import topk_sparse_attention_reference


def export(module, inputs, path: Path, inline: bool) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proto = torch.onnx.export(module, (list(inputs),), dynamo=True, opset_version=18, verbose=False).model_proto
    topk_function.attach(proto, inline=inline)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))
    return path


def latency(path: Path, feeds: dict, threads: int, repeats: int) -> tuple[float, np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for _ in range(3):
        out = session.run(None, feeds)[0]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=128, help="C (yolo11n P4: 128)")
    parser.add_argument("--size", type=int, default=40, help="H = W of the map (640 input: 40)")
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    torch.manual_seed(0)
    ours = MSC(args.channels, args.heads).eval()
    ours.prepare_export()
    upstream = copy.deepcopy(ours)
    upstream.attention = topk_sparse_attention_reference
    upstream.export_weights = None  # upstream keeps α, β as tensors
    x, y = (torch.randn(1, args.channels, args.size, args.size) for _ in range(2))
    feeds = {"x": x.numpy(), "y": y.numpy()}
    with torch.no_grad():
        reference = ours([x, y]).numpy()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        variants = {
            "rgbir TopKSparseAttention": export(ours, (x, y), tmp / "ours.onnx", inline=False),
            "rgbir, body inlined": export(ours, (x, y), tmp / "inlined.onnx", inline=True),
            "upstream TopK+Scatter": export(upstream, (x, y), tmp / "upstream.onnx", inline=False),
        }
        results = {}
        for name, path in variants.items():
            session_inputs = [i.name for i in ort.InferenceSession(str(path)).get_inputs()]
            ms, out = latency(path, dict(zip(session_inputs, feeds.values())), args.threads, args.repeats)
            results[name] = ms
            print(f"{name:<28} {ms:8.2f} ms   max |Δ| vs PyTorch {np.abs(out - reference).max():.2e}")
    base = results["upstream TopK+Scatter"]
    print(f"MSC C={args.channels} {args.size}x{args.size} (N = N1 = {args.size ** 2}), {args.heads} heads, "
          f"ONNX Runtime {ort.__version__} CPU, {args.threads} threads, median of {args.repeats}")
    for name, ms in results.items():
        print(f"  speed-up over upstream: {name:<28} {base / ms:5.2f}x")


if __name__ == "__main__":
    main()
