"""Fused top-k sparse attention kernel vs the PyTorch formulations, on a CUDA GPU, measured side by side:

- upstream: topk + scatter + two masked softmaxes + two matmuls (YOLOMM's MSC);
- reference: rgbir's tie-inclusive PyTorch function (one topk, one exp, one matmul);
- kernel: rgbir's fused CUDA kernel through its C launcher;
- dense: torch SDPA on the same shapes without top-k — the floor.

Shapes: YOLO11n/s MSC at P4 and P5 for 640 and 1280 inputs (B=1, 8 heads), FP16 and FP32.
    python benchmarks/topk_attention.py [--library path/to/librgbir_plugins.so]
"""

from __future__ import annotations

import argparse
import ctypes
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from rgbir.models.sparse_attention import topk_sparse_attention, topk_sparse_attention_reference
from rgbir.plugins import CompileOptions, compile_library, find_library

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_plugins import launch  # noqa: E402  (the same ctypes call the GPU tests make)

SHAPES = [  # (name, N = N1, head dim): channels / 8 heads at P4 (stride 16) and P5 (stride 32)
    ("yolo11n P4 640", 40 * 40, 16), ("yolo11n P5 640", 20 * 20, 32),
    ("yolo11s P4 640", 40 * 40, 32), ("yolo11s P5 640", 20 * 20, 64),
    ("yolo11n P4 1280", 80 * 80, 16), ("yolo11n P5 1280", 40 * 40, 32),
]


def median_ms(fn, repeats: int = 30) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", help="plugin library (default: build one for this GPU)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("this benchmark needs a CUDA GPU")
    major, minor = torch.cuda.get_device_capability()
    path = find_library(args.library) if args.library else compile_library(CompileOptions(arch=f"{major}{minor}"))
    lib = ctypes.CDLL(str(path))
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}; median ms of 30; ratios vs upstream")
    print(f"{'shape':<18}{'dtype':<9}{'upstream':>10}{'reference':>11}{'kernel':>9}{'dense':>9}"
          f"{'kernel x':>10}{'vs dense':>10}")
    for dtype in (torch.float16, torch.float32):
        for name, n, d in SHAPES:
            q, k, v = (torch.randn(1, 8, n, d, device="cuda", dtype=dtype) for _ in range(3))
            scale, divisors, weights = d**-0.5, (2, 3), (0.5, 0.5)
            times = {
                "upstream": median_ms(lambda: topk_sparse_attention_reference(q, k, v, scale, divisors, weights)),
                "reference": median_ms(lambda: topk_sparse_attention(q, k, v, scale, divisors, weights)),
                "kernel": median_ms(lambda: launch(lib, q, k, v, scale, list(divisors), list(weights))),
                "dense": median_ms(lambda: F.scaled_dot_product_attention(q, k, v, scale=scale)),
            }
            print(f"{name:<18}{str(dtype).split('.')[-1]:<9}{times['upstream']:10.3f}{times['reference']:11.3f}"
                  f"{times['kernel']:9.3f}{times['dense']:9.3f}{times['upstream'] / times['kernel']:9.1f}x"
                  f"{times['kernel'] / times['dense']:9.1f}x")


if __name__ == "__main__":
    main()
