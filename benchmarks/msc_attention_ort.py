"""ONNX Runtime (CPU) cost of the ``rgbir::TopKSparseAttention`` function body, measured side by side in one run:

1. per attention call at the YOLO11n/s MSC shapes (P4 and P5 of 640 and 1280 inputs; B = 1, 8 heads, N = N1):
   - old body: the one rgbir shipped before issue 26 (sorted TopK, a 5-D mask and two Wheres), rebuilt here;
   - new body: ``rgbir.export.topk_function`` (one sorted TopK, Softmax, masks by multiplication, one MatMul);
   - two TopKs: the new body with the thresholds from two unsorted TopKs (not shipped: one TopK per body is a test);
   - upstream: YOLOMM's formulation as torch exports it (topk + scatter + a masked softmax and a matmul per branch);
   - dense: plain attention written in ONNX (MatMul, Softmax, MatMul), the floor of any attention;
   - cpu kernel: rgbir's CPU kernel in ONNX Runtime (``rgbir.runtime.backends.ort_attention``), what rgbir runs;
2. whole models at 640: yolo11n (RGB only), yolo11n-mm-mid (two backbones, Concat fusion) and the shipped MSC
   demo (yolo11n-mm-mid-msc-res) with the new and the old body and with the CPU kernel;
3. ONNX Runtime's profile of the demo by op type: old body, new body, CPU kernel.

ONNX Runtime CPU with 1 and 2 threads, batch 1. The variants of a row take turns (interleaved repetitions, medians),
except rows whose sessions would not fit in memory together (N1 > 1600: each variant alone, in turn, without ONNX
Runtime's memory arena).

    python benchmarks/msc_attention_ort.py [--sizes 640 1280] [--threads 1 2] [--repeats 7] [--skip calls models]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper
from onnxscript import FLOAT, script
from onnxscript import opset18 as op

from rgbir.cli.common import quiet_torch_export
from rgbir.cli.demo import DEMO_WEIGHTS
from rgbir.export import ExportOptions, export_onnx, topk_function
from rgbir.models import build_model, load
from rgbir.models.sparse_attention import topk_sparse_attention_reference
from rgbir.runtime.backends import ort_attention

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from topk_attention import SHAPES  # noqa: E402  (the YOLO11n/s MSC shapes of the GPU benchmark)

from test_topk_op import single_node_model  # noqa: E402  (the one-node model the op tests run)

DIVISORS, WEIGHTS = (2, 3), (0.35, 0.36)  # MSC's k1, k2; about the demo's learned α, β
CALLS = ("old body", "new body", "two TopKs", "upstream", "dense", "cpu kernel")
KERNEL = "cpu kernel"  # a variant whose name ends so runs the function's model on rgbir's CPU kernel
SHARED_SESSIONS_UP_TO = 1600  # N1 up to which a row's sessions are kept alive together and take turns


@script(topk_function.rgbir_opset, default_opset=op)
def TopKSparseAttention(q, k, v, scale: float, k_divisors: list[int], weights: list[float]):
    # the body before issue 26, for comparison: a sorted TopK and two Wheres over a (B,h,N,branches,N1) mask
    scores = op.MatMul(op.Cast(q, to=FLOAT.dtype), op.Transpose(op.Cast(k, to=FLOAT.dtype), perm=[0, 1, 3, 2]))
    scores = op.Mul(scores, op.Constant(value_float=scale))
    n_keys = op.Shape(k, start=2, end=3)
    one = op.Constant(value_ints=[1])
    counts = op.Max(op.Div(n_keys, op.Constant(value_ints=k_divisors)), one)
    top_values, top_indices = op.TopK(scores, op.ReduceMax(counts, keepdims=1), axis=-1, largest=1, sorted=1)
    thresholds = op.Gather(top_values, op.Sub(counts, one), axis=3)
    row_max = op.Gather(top_values, op.Constant(value_ints=[0]), axis=3)
    e = op.Exp(op.Sub(scores, row_max))
    mask = op.GreaterOrEqual(
        op.Unsqueeze(scores, op.Constant(value_ints=[3])), op.Unsqueeze(thresholds, op.Constant(value_ints=[4]))
    )
    zero = op.Constant(value_float=0.0)
    normaliser = op.ReduceSum(
        op.Where(mask, op.Unsqueeze(e, op.Constant(value_ints=[3])), zero), op.Constant(value_ints=[4]), keepdims=1
    )
    branch_weights = op.Reshape(op.Constant(value_floats=weights), op.Constant(value_ints=[-1, 1]))
    mixed = op.ReduceSum(op.Where(mask, op.Div(branch_weights, normaliser), zero), op.Constant(value_ints=[3]),
                         keepdims=0)
    out = op.MatMul(op.Mul(mixed, e), op.Cast(v, to=FLOAT.dtype))
    return op.CastLike(out, q)


def with_old_body(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose TopKSparseAttention function is the old body."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    proto = TopKSparseAttention.to_function_proto()
    proto.attribute.extend(["plugin_version", "plugin_namespace"])
    del copy.functions[:]
    copy.functions.append(proto)
    return copy


def with_two_topk_thresholds(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose body finds the thresholds by two unsorted TopKs (the largest k over the row, then the
    other branches' from those values; a third, K = 1 unless three branch sizes differ) instead of one sorted TopK.
    Not shipped: tests/test_export.py holds an inlined body to one TopK."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    body = copy.functions[0]
    topk = next(n for n in body.node if n.op_type == "TopK")
    gather = next(n for n in body.node if n.op_type == "Gather" and n.input[0] == topk.output[0])
    scores, most = topk.input
    counts = next(n for n in body.node if n.output[0] == gather.input[1]).input[0]  # Gather(top, counts - 1)

    def node(op_type, inputs, output, **attrs):
        return helper.make_node(op_type, inputs, [output] if isinstance(output, str) else output, **attrs)

    cascade = [
        node("Constant", [], "c_one", value_ints=[1]), node("Constant", [], "c_last", value_ints=[-1]),
        node("ReduceMin", [counts], "c_fewest", keepdims=1),
        node("TopK", [scores, most], ["c_top", "c_top_at"], axis=-1, largest=1, sorted=0),
        node("Sub", [most, "c_fewest"], "c_span"), node("Add", ["c_span", "c_one"], "c_n_bottom"),
        node("TopK", ["c_top", "c_n_bottom"], ["c_bottom", "c_bottom_at"], axis=-1, largest=0, sorted=0),
        node("ReduceMax", ["c_bottom", "c_last"], "c_fewest_threshold", keepdims=1),
        node("Sub", [most, counts], "c_rank"), node("Sub", [counts, "c_fewest"], "c_excess"),
        node("Min", ["c_excess", "c_one"], "c_more"), node("Mul", ["c_rank", "c_more"], "c_middle_rank"),
        node("ReduceMax", ["c_middle_rank"], "c_top_middle", keepdims=1),
        node("Add", ["c_top_middle", "c_one"], "c_n_sorted"),
        node("TopK", ["c_bottom", "c_n_sorted"], ["c_ordered", "c_ordered_at"], axis=-1, largest=0, sorted=1),
        node("Concat", ["c_ordered", "c_fewest_threshold"], "c_candidates", axis=-1),
        node("Sub", ["c_n_sorted", "c_rank"], "c_to_fewest"), node("Sub", ["c_one", "c_more"], "c_fewest_branch"),
        node("Mul", ["c_to_fewest", "c_fewest_branch"], "c_shift"), node("Add", ["c_rank", "c_shift"], "c_index"),
        node("Gather", ["c_candidates", "c_index"], gather.output[0], axis=3),
    ]
    nodes = list(body.node)
    at = nodes.index(topk)
    nodes = nodes[:at] + cascade + [n for n in nodes[at + 1:] if n is not gather]
    del body.node[:]
    body.node.extend(nodes)
    return copy


def dense_model(shape: tuple[int, ...], scale: float) -> onnx.ModelProto:
    """softmax(q kᵀ · scale) v in ONNX."""
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name in "qkv"]
    nodes = [helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
             helper.make_node("MatMul", ["q", "kt"], ["raw"]), helper.make_node("Mul", ["raw", "scale"], ["s"]),
             helper.make_node("Softmax", ["s"], ["p"], axis=-1), helper.make_node("MatMul", ["p", "v"], ["out"])]
    graph = helper.make_graph(nodes, "dense", inputs, [helper.make_tensor_value_info("out", TensorProto.FLOAT, shape)],
                              [helper.make_tensor("scale", TensorProto.FLOAT, [], [scale])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


class Upstream(torch.nn.Module):
    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, q, k, v):
        return topk_sparse_attention_reference(q, k, v, self.scale, DIVISORS, WEIGHTS)


def upstream_model(feeds: dict[str, np.ndarray], scale: float) -> onnx.ModelProto:
    with warnings.catch_warnings(), quiet_torch_export():
        warnings.simplefilter("ignore")
        args = tuple(torch.from_numpy(feeds[name]) for name in "qkv")
        return torch.onnx.export(Upstream(scale), args, input_names=list("qkv"), dynamo=True, opset_version=18,
                                 verbose=False).model_proto


def session(model: onnx.ModelProto | Path, threads: int, profile: Path | None = None,
            arena: bool = True, kernel: bool = False) -> ort.InferenceSession:
    """A CPU session; with ``profile`` (a file prefix), ONNX Runtime's profiler on; without ``arena``, memory is
    allocated per run and given back after it (ONNX Runtime's arena keeps its peak, and grows it run by run); with
    ``kernel``, the attention on rgbir's CPU kernel."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_cpu_mem_arena = arena
    if profile:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile)
    if kernel:
        ort_attention.use_kernel(options)
        model = ort_attention.with_kernel(onnx.load(str(model)) if isinstance(model, Path) else model, threads)
    source = str(model) if isinstance(model, Path) else model.SerializeToString()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def take_turns(sessions: dict[str, ort.InferenceSession], feeds: dict[str, dict], repeats: int):
    """Median ms per run of each session (feeds by session name), the sessions taking turns so that load changes hit
    all alike; and each session's first output (from its warm-up run)."""
    outputs = {name: s.run(None, feeds[name])[0] for name, s in sessions.items()}
    times = collections.defaultdict(list)
    for _ in range(repeats):
        for name, s in sessions.items():
            start = time.perf_counter()
            s.run(None, feeds[name])
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}, outputs


def time_calls(models: dict[str, onnx.ModelProto], feeds: dict, threads: int, repeats: int):
    """``take_turns`` over the variants of one call; above SHARED_SESSIONS_UP_TO keys one session lives at a time,
    without ONNX Runtime's memory arena, for a fifth of the repeats: at N1 = 6400 one call of the old body needs
    about 14 GB, of the new one 10 GB, of upstream 8 GB (the timings then include allocating it)."""
    every = {name: feeds for name in models}
    if feeds["k"].shape[2] <= SHARED_SESSIONS_UP_TO:
        return take_turns({name: session(m, threads, kernel=name.endswith(KERNEL)) for name, m in models.items()},
                          every, repeats)
    ms, outputs = {}, {}
    for name, model in models.items():
        one_ms, one_out = take_turns({name: session(model, threads, arena=False, kernel=name.endswith(KERNEL))},
                                     every, max(repeats // 5, 1))
        ms.update(one_ms)
        outputs.update(one_out)
    return ms, outputs


def call_models(n: int, d: int) -> tuple[dict[str, onnx.ModelProto], dict[str, np.ndarray]]:
    rng = np.random.default_rng(n + d)
    feeds = {name: rng.standard_normal((1, 8, n, d), dtype=np.float32) for name in "qkv"}
    scale = d ** -0.5
    new = single_node_model(*(feeds[name].shape for name in "qkv"), scale, list(DIVISORS), list(WEIGHTS))
    return {"old body": with_old_body(new), "new body": new, "two TopKs": with_two_topk_thresholds(new),
            "upstream": upstream_model(feeds, scale), "dense": dense_model(feeds["q"].shape, scale), KERNEL: new}, feeds


def per_call(sizes: list[int], threads: list[int], repeats: int) -> None:
    print("\nper attention call (B = 1, 8 heads, N = N1, k = N1/2 and N1/3), median ms, and ratios; max |Δ| from the "
          "numpy reference (float64) where N1 <= 1600, of old, new, two TopKs, upstream, cpu kernel:")
    print(f"{'shape':<16} {'N1':>5} {'d':>3} {'thr':>3} " + " ".join(f"{c:>10}" for c in CALLS)
          + f" {'new/dense':>9} {'2TK/dense':>9} {'krn/dense':>9} {'new/krn':>7} {'old/new':>7} {'upst/new':>8}"
          "  max |Δ|")
    for name, n, d in SHAPES:
        if int(name.split()[-1]) not in sizes:
            continue
        models, feeds = call_models(n, d)
        for t in threads:
            ms, outputs = time_calls(models, feeds, t, repeats)
            error = ""
            if n <= SHARED_SESSIONS_UP_TO and t == threads[0]:
                expected = topk_function.reference(*(feeds[c] for c in "qkv"), d ** -0.5, DIVISORS, WEIGHTS)
                error = " ".join(f"{np.abs(outputs[c] - expected).max():.0e}" for c in CALLS if c != "dense")
            print(f"{name:<16} {n:>5} {d:>3} {t:>3} " + " ".join(f"{ms[c]:10.1f}" for c in CALLS)
                  + f" {ms['new body'] / ms['dense']:8.1f}x {ms['two TopKs'] / ms['dense']:8.1f}x"
                  f" {ms[KERNEL] / ms['dense']:8.2f}x {ms['new body'] / ms[KERNEL]:6.1f}x"
                  f" {ms['old body'] / ms['new body']:6.2f}x {ms['upstream'] / ms['new body']:7.2f}x  {error}",
                  flush=True)


def export_models(root: Path) -> dict[str, Path]:
    """yolo11n, yolo11n-mm-mid (both with the demo's 3 classes, untrained) and the shipped MSC demo, at 640."""
    demo = load(DEMO_WEIGHTS)
    nc = len(demo.names)
    paths = {}
    with quiet_torch_export():
        for name, model in (("yolo11n", build_model("yolo11n", nc=nc)), ("yolo11n-mm-mid", build_model(
                "yolo11n-mm-mid", nc=nc)), ("MSC demo, new body", demo)):
            paths[name] = export_onnx(model.eval(), root / f"{name.split(',')[0]}.onnx", ExportOptions()).path
    old = root / "MSC demo old.onnx"
    onnx.save(with_old_body(onnx.load(str(paths["MSC demo, new body"]))), str(old))
    paths["MSC demo, old body"] = old
    paths[f"MSC demo, {KERNEL}"] = paths["MSC demo, new body"]
    return paths


def model_feeds(s: ort.InferenceSession) -> dict[str, np.ndarray]:
    """Seeded uniform [0, 1) inputs of a session's (static) input shapes."""
    rng = np.random.default_rng(0)
    return {i.name: rng.random(i.shape, dtype=np.float32) for i in s.get_inputs()}


def whole_models(paths: dict[str, Path], threads: list[int], repeats: int) -> None:
    print("\nwhole models at 640x640, batch 1, median ms (taking turns):")
    print(f"{'model':<23} {'thr':>3} {'ms':>8} {'vs yolo11n':>10} {'vs mm-mid':>9}")
    for t in threads:
        sessions = {name: session(p, t, kernel=name.endswith(KERNEL)) for name, p in paths.items()}
        ms, _ = take_turns(sessions, {name: model_feeds(s) for name, s in sessions.items()}, repeats)
        for name, value in ms.items():
            print(f"{name:<23} {t:>3} {value:8.1f} {value / ms['yolo11n']:9.2f}x "
                  f"{value / ms['yolo11n-mm-mid']:8.2f}x", flush=True)


def op_shares(model: onnx.ModelProto | Path, prefix: Path, runs: int, feeds: dict | None = None, top: int = 8,
              kernel: bool = False) -> str:
    """Kernel time per run and the op types' shares of it (ONNX Runtime's profiler, 2 threads, warm-up left out)."""
    s = session(model, 2, profile=prefix, kernel=kernel)
    feeds = feeds or model_feeds(s)
    for _ in range(runs + 1):
        s.run(None, feeds)
    events = json.loads(Path(s.end_profiling()).read_text())
    second_run = sorted(e["ts"] for e in events if e["name"] == "model_run")[1]
    by_op = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= second_run:
            by_op[e["args"]["op_name"]] += e["dur"]
    total = sum(by_op.values())
    shares = ", ".join(f"{op_type} {100 * us / total:.0f}%" for op_type, us in by_op.most_common(top))
    return f"{total / runs / 1e3:.0f} ms of kernel time per run: {shares}"


def profile(paths: dict[str, Path], root: Path, runs: int) -> None:
    print(f"\nONNX Runtime profile, 2 threads, {runs} runs after a warm-up: share of kernel time by op type")
    name, n, d = SHAPES[0]
    models, feeds = call_models(n, d)
    for body in ("old body", "new body", KERNEL):
        print(f"{name} call, {body}: "
              f"{op_shares(models[body], root / body.replace(' ', '-'), runs, feeds, kernel=body == KERNEL)}")
    for name in ("MSC demo, old body", "MSC demo, new body", f"MSC demo, {KERNEL}"):
        prefix = root / name.replace(" ", "-").replace(",", "")
        print(f"{name}: {op_shares(paths[name], prefix, runs, kernel=name.endswith(KERNEL))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[640, 1280], choices=[640, 1280])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per variant (N1 > 1600: a fifth)")
    parser.add_argument("--profile-runs", type=int, default=4)
    parser.add_argument("--skip", nargs="*", default=[], choices=["calls", "models", "profile"])
    args = parser.parse_args()
    print(f"ONNX Runtime {ort.__version__} CPU, {os.cpu_count()} cores, load average at start "
          f"{os.getloadavg()[0]:.2f}")
    if "calls" not in args.skip:
        per_call(args.sizes, args.threads, args.repeats)
    if not {"models", "profile"} <= set(args.skip):
        with tempfile.TemporaryDirectory() as tmp:
            paths = export_models(Path(tmp))
            if "models" not in args.skip:
                whole_models(paths, args.threads, args.repeats)
            if "profile" not in args.skip:
                profile(paths, Path(tmp), args.profile_runs)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f} (1 minute)")


if __name__ == "__main__":
    main()
