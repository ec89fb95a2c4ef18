"""Top-k sparse attention on a CUDA GPU, GPU time per call, every implementation side by side:

- upstream: topk + scatter + two masked softmaxes + two matmuls (YOLOMM's MSC);
- reference: rgbir's tie-inclusive PyTorch function (one topk, one exp, one matmul);
- current: the plugin's kernel (rgbirTopKSparseAttentionLaunch, one block per query row);
- tiled: the tiled kernel (rgbirTopKSparseAttentionTiledLaunch, 64 query rows per block, tensor cores);
- dense: torch SDPA on the same shapes without top-k (the floor).

GPU time is measured by CUDA-graph replay: `calls` calls captured in one graph, replayed, divided by `calls` (CUDA
events around a single Python call measure launch overhead instead). Shapes: YOLO11n/s MSC at P4 and P5 for 640 and
1280 inputs and N1 = 14400 (P4 at 1920), B = 1, 8 heads, float16 and float32. Needs torch with CUDA, not TensorRT.

    python benchmarks/topk_attention.py [--library path/to/librgbir_plugins.so] [--calls 50] [--only P4]
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from rgbir.models.sparse_attention import topk_sparse_attention, topk_sparse_attention_reference
from rgbir.plugins import CompileOptions, compile_library, find_library

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_plugins import LAUNCHERS, launch  # noqa: E402  (the same ctypes call the GPU tests make)

SHAPES = [  # (name, N = N1, head dim): channels / 8 heads at P4 (stride 16) and P5 (stride 32)
    ("yolo11n P4 640", 40 * 40, 16), ("yolo11n P5 640", 20 * 20, 32),
    ("yolo11s P4 640", 40 * 40, 32), ("yolo11s P5 640", 20 * 20, 64),
    ("yolo11n P4 1280", 80 * 80, 16), ("yolo11n P5 1280", 40 * 40, 32),
    ("yolo11s P4 1280", 80 * 80, 32), ("yolo11s P5 1280", 40 * 40, 64),
    ("yolo11n P4 1920", 120 * 120, 16),  # N1 = 14400: over TensorRT's TopK limit (K <= 3840)
]
METHODS = ["upstream", "reference", "current", "tiled", "dense"]


def gpu_time_us(fn, calls: int, replays: int = 3) -> float:
    """Median GPU time of one call, from `replays` replays of a graph holding `calls` calls."""
    fn()  # warm-up outside capture: lazy initialisation, kernel attributes, allocator
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.stream(stream):
        fn()
        with torch.cuda.graph(graph, stream=stream):
            for _ in range(calls):
                fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(replays):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) * 1000.0 / calls)
    del graph
    torch.cuda.empty_cache()
    return statistics.median(times)


def implementations(lib, q, k, v, scale, divisors, weights):
    return {
        "upstream": lambda: topk_sparse_attention_reference(q, k, v, scale, divisors, weights),
        "reference": lambda: topk_sparse_attention(q, k, v, scale, divisors, weights),
        "current": lambda: launch(lib, q, k, v, scale, list(divisors), list(weights), launcher=LAUNCHERS[0]),
        "tiled": lambda: launch(lib, q, k, v, scale, list(divisors), list(weights), launcher=LAUNCHERS[1]),
        "dense": lambda: F.scaled_dot_product_attention(q, k, v, scale=scale),
    }


def measure(lib, n: int, d: int, dtype: torch.dtype, calls: int) -> dict[str, float]:
    q, k, v = (torch.randn(1, 8, n, d, device="cuda", dtype=dtype) for _ in range(3))
    many = calls if n <= 1600 else max(calls // 5, 4)  # the slow implementations at large N1 keep the run short
    times = {}
    for method, fn in implementations(lib, q, k, v, d**-0.5, (2, 3), (0.5, 0.5)).items():
        try:
            times[method] = gpu_time_us(fn, many)
        except (RuntimeError, AssertionError) as e:  # out of memory (upstream at N1 = 14400), a failed launch
            print(f"{method} at N = {n}, d = {d}, {dtype}: {str(e).splitlines()[0]}")
            times[method] = float("nan")
            torch.cuda.empty_cache()
    return times


COLUMNS = ["shape", "dtype", *(f"{m} µs" for m in METHODS), "tiled vs upstream", "tiled vs current", "tiled / dense",
           "current / dense"]


def cells(name: str, dtype: str, t: dict[str, float]) -> list[str]:
    """One row: µs per call, then the tiled kernel's ratios (and the current kernel's distance to dense)."""
    return [name, dtype, *(f"{t[m]:.1f}" for m in METHODS), f"{t['upstream'] / t['tiled']:.1f}x",
            f"{t['current'] / t['tiled']:.1f}x", f"{t['tiled'] / t['dense']:.1f}x", f"{t['current'] / t['dense']:.1f}x"]


def table(rows, title: str):
    """The results as a rich table."""
    from rich.table import Table

    out = Table(title=title)
    for column in COLUMNS:
        out.add_column(column, justify="left" if column in ("shape", "dtype") else "right")
    for row in rows:
        out.add_row(*cells(*row))
    return out


def print_table(rows, title: str) -> None:
    """rich when installed, plain columns otherwise."""
    try:
        from rich.console import Console
    except ImportError:
        print(title)
        for line in [COLUMNS] + [cells(*row) for row in rows]:
            print("  ".join(f"{c:>17}" for c in line))
        return
    Console(width=200).print(table(rows, title))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", help="plugin library (default: build one for this GPU)")
    parser.add_argument("--calls", type=int, default=50, help="calls captured per graph (fewer at large N1)")
    parser.add_argument("--only", default="", help="run the shapes whose name contains this")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("this benchmark needs a CUDA GPU")
    major, minor = torch.cuda.get_device_capability()
    path = find_library(args.library) if args.library else compile_library(CompileOptions(arch=f"{major}{minor}"))
    lib = ctypes.CDLL(str(path))
    rows = []
    for dtype in (torch.float16, torch.float32):
        for name, n, d in SHAPES:
            if args.only in name:
                rows.append((name, str(dtype).split(".")[-1], measure(lib, n, d, dtype, args.calls)))
    title = (f"{torch.cuda.get_device_name()}, torch {torch.__version__}: GPU time per call by CUDA-graph replay "
             f"(B=1, 8 heads, divisors 2 and 3)")
    print_table(rows, title)


if __name__ == "__main__":
    main()
