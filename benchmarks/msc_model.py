"""Whole-model latency of the MSC detector at batch 1, by attention implementation, measured side by side in one run:
upstream (YOLOMM's topk + scatter), reference (rgbir's PyTorch function) and kernel (the fused CUDA kernel as a
PyTorch op), each eager and replayed from a CUDA graph, at 640 and 1280, fp16 and fp32.

    python benchmarks/msc_model.py [--config yolo11n-mm-mid-msc] [--sizes 640 1280] [--repeats 30]

Needs a CUDA GPU (and the plugin library for the kernel rows: rgbir plugins compile, or RGBIR_PLUGIN_LIBRARY).
Goal (issue 14): at 1280 fp16 the kernel makes the model faster than upstream by at least the attention's share.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from rgbir.errors import RgbirError
from rgbir.models import build_model
from rgbir.models.attention_kernel import set_attention

IMPLEMENTATIONS = ("upstream", "reference", "kernel")


def eager_ms(model, inputs, repeats: int) -> float:
    """Median wall time of one synchronised forward (what a batch-1 caller waits for, launch overhead included)."""
    times = []
    for i in range(repeats + 3):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        model(*inputs)
        end.record()
        torch.cuda.synchronize()
        if i >= 3:  # warm-up calls left out
            times.append(start.elapsed_time(end))
    return statistics.median(times)


def graph_ms(model, inputs, repeats: int) -> float:
    """GPU time of one forward replayed from a CUDA graph (mean over ``repeats`` replays)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            model(*inputs)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        model(*inputs)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    graph.replay()
    start.record()
    for _ in range(repeats):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="yolo11n-mm-mid-msc")
    parser.add_argument("--sizes", type=int, nargs="+", default=[640, 1280])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU: this benchmark times the model on a GPU")
    print(f"{args.config}, batch 1, {torch.cuda.get_device_name()}; eager = synchronised call (launch overhead "
          "included), graph = GPU time of a CUDA-graph replay")
    print(f"{'size':>5} {'dtype':>5} {'attention':>10} {'eager ms':>9} {'graph ms':>9} {'graph vs upstream':>18}")
    for size in args.sizes:
        for dtype in (torch.float16, torch.float32):
            inputs = [torch.rand(1, 3, size, size, device="cuda", dtype=dtype) for _ in range(2)]
            base = None
            for name in IMPLEMENTATIONS:
                model = build_model(args.config, nc=3).eval().cuda().to(dtype)
                try:
                    set_attention(model, name, "cuda")
                except RgbirError as e:
                    print(f"{size:>5} {str(dtype)[6:]:>5} {name:>10}  skipped: {e}")
                    continue
                with torch.inference_mode():
                    try:
                        eager, graphed = eager_ms(model, inputs, args.repeats), graph_ms(model, inputs, args.repeats)
                    except torch.cuda.OutOfMemoryError:
                        print(f"{size:>5} {str(dtype)[6:]:>5} {name:>10}  out of GPU memory")
                        torch.cuda.empty_cache()
                        continue
                base = base or graphed
                print(f"{size:>5} {str(dtype)[6:]:>5} {name:>10} {eager:9.3f} {graphed:9.3f} "
                      f"{base / graphed:17.2f}x")
                del model
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
