"""rgbir's CPU attention kernel (csrc/topk_sparse_attention/topkSparseAttentionCpu.cpp) and ONNX Runtime running it.
test_topk_op.py runs the kernel as one of its forms on every semantics case; here is what only the kernel has: rows
long enough for its vector and histogram paths, threads, the model rewrite, the backend's choice and its fallback."""

import hashlib
import os
import platform
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest

from rgbir.errors import RgbirError
from rgbir.export import topk_function
from rgbir.plugins import cpu
from rgbir.runtime.backends import ort_attention
from rgbir.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

pytestmark = pytest.mark.skipif(not any(shutil.which(c) for c in cpu.COMPILERS),
                                reason="no C++ compiler here to build the CPU kernel")


@pytest.fixture(scope="module", params=["native", "x86-64"])
def build(request, tmp_path_factory):
    """The kernel as this machine compiles it, and, on x86-64, its 4-lane SSE2 build without the AVX-512 paths (the
    vector width NEON has): the code paths other CPUs take."""
    if request.param == "native":
        return None
    if platform.machine() != "x86_64":
        pytest.skip("the SSE2 build is an x86-64 one")
    return cpu.load_library(cpu.compile_cpu_library(output=tmp_path_factory.mktemp("sse2") / "lib.so",
                                                    target=request.param))


def qkv(seed, batch, heads, n, n1, d, dv):
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal(shape, dtype=np.float32) for shape in
                 ((batch, heads, n, d), (batch, heads, n1, d), (batch, heads, n1, dv)))


@pytest.mark.parametrize("batch, heads, n, n1, d, dv, divisors, weights", [
    (1, 2, 37, 1000, 32, 40, [2, 3], [0.35, 0.36]),  # dv not a multiple of the vector width
    (2, 1, 9, 2053, 16, 16, [3, 2, 5], [0.2, 0.5, 0.3]),  # N1 past every tile and chunk boundary
    (1, 1, 5, 300, 8, 3, [8, 1, 6, 3, 5, 2, 7, 4], [0.1, 0.2, 0.05, 0.15, 0.1, 0.2, 0.1, 0.1]),
    (1, 3, 70, 64, 64, 64, [2, 3], [0.6, 0.4]),
])
def test_long_rows_agree_with_numpy_reference(build, batch, heads, n, n1, d, dv, divisors, weights):
    q, k, v = qkv(n1, batch, heads, n, n1, d, dv)
    expected = topk_function.reference(q, k, v, 0.3, divisors, weights)
    out = cpu.topk_sparse_attention(q, k, v, 0.3, divisors, weights, threads=2, library=build)
    np.testing.assert_allclose(out, expected, atol=2e-5, rtol=1e-4)


def test_long_rows_with_ties_keep_every_tied_entry(build):
    """Small integers: exact scores in any order, and 400 keys repeating 20 values, so thresholds tie in the
    histogram path too."""
    rng = np.random.default_rng(11)
    k = np.tile(rng.integers(-3, 4, (1, 2, 20, 6)), (1, 1, 20, 1)).astype(np.float32)
    q = rng.integers(-3, 4, (1, 2, 30, 6)).astype(np.float32)
    v = rng.standard_normal((1, 2, 400, 5), dtype=np.float32)
    expected = topk_function.reference(q, k, v, 0.25, [2, 3], [0.6, 0.4])
    np.testing.assert_allclose(cpu.topk_sparse_attention(q, k, v, 0.25, [2, 3], [0.6, 0.4], library=build),
                               expected, atol=2e-5, rtol=1e-4)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the reference computes inf - inf on the way
def test_non_finite_scores_in_long_rows_follow_the_op_policy(build):
    q, k, v = qkv(12, 1, 2, 6, 300, 4, 3)
    k[0, :, 40:200, 0] = np.inf  # 160 keys whose scores are +inf or -inf by the sign of q[..., 0]
    q[0, :, :3, 0] = -np.abs(q[0, :, :3, 0]) - 0.5  # rows 0-2: 160 -inf scores, more than k2 = 100 keys below them
    q[0, :, 3, 0] = 1.0  # row 3: +inf scores (poisoned)
    q[0, 0, 4, :] = np.nan  # head 0, row 4: NaN scores
    expected = topk_function.reference(q, k, v, 0.5, [2, 3], [0.6, 0.4])
    assert np.isnan(expected[0, :, 3]).all() and np.isfinite(expected[0, :, :3]).all()
    out = cpu.topk_sparse_attention(q, k, v, 0.5, [2, 3], [0.6, 0.4], library=build)
    np.testing.assert_allclose(out, expected, atol=2e-5, rtol=1e-4)


def test_threads_do_not_change_a_bit():
    q, k, v = qkv(13, 2, 3, 50, 700, 16, 16)
    one = cpu.topk_sparse_attention(q, k, v, 0.25, [2, 3], [0.5, 0.5], threads=1)
    assert np.array_equal(one, cpu.topk_sparse_attention(q, k, v, 0.25, [2, 3], [0.5, 0.5], threads=3))


@pytest.mark.parametrize("divisors, weights, message", [
    ([0, 2], [0.5, 0.5], "bad branches"),
    ([2] * 9, [0.1] * 9, "bad branches"),
    ([2, 3], [0.5], "2 k_divisors but 1 weights"),
])
def test_bad_branches_are_refused(divisors, weights, message):
    with pytest.raises(RgbirError, match=message):
        cpu.topk_sparse_attention(*qkv(14, 1, 1, 2, 8, 4, 4), 0.5, divisors, weights)


def test_the_library_is_compiled_once_per_source_compiler_and_cpu():
    path = cpu.compile_cpu_library()
    stamp = path.stat().st_mtime_ns
    assert cpu.compile_cpu_library() == path and path.stat().st_mtime_ns == stamp
    assert path.parent == cpu.cache_dir("plugins") and path.name.startswith("librgbir_cpu-")


@pytest.fixture(scope="module")
def msc_512x640(shipped_export):
    """The MSC config exported at 512x640 in float32 (shared with the parity and TensorRT-RTX sweeps)."""
    model, result = shipped_export("yolo11-mm-mid-msc", (512, 640), "fp32")
    return model, result.path


def test_the_rewrite_replaces_every_attention_node_and_leaves_the_file_alone(msc_512x640):
    _, path = msc_512x640
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    original = onnx.load(str(path))
    rewritten = onnx.load_from_string(ort_attention.kernel_model(path, threads=2))
    assert len(ort_attention.attention_nodes(original)) == 2 and not ort_attention.attention_nodes(rewritten)
    assert [n.op_type for n in rewritten.graph.node].count(ort_attention.OP_TYPE) == 2
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


@pytest.mark.slow
def test_an_msc_model_gives_the_same_detections_with_the_kernel_and_the_function_body(msc_512x640):
    from rgbir.parity import compare, random_inputs

    _, path = msc_512x640
    kernel = OnnxRuntimeBackend(path, providers=["cpu"], attention="auto")
    body = OnnxRuntimeBackend(path, providers=["cpu"], attention="function")
    assert (kernel.attention, body.attention) == ("kernel", "function") and not kernel.warnings
    report = compare(body, kernel, random_inputs(body.metadata, 1), body.metadata)
    assert report.detections.reference > 0
    assert report.passed, [(o.name, o.error, o.tolerance) for o in report.outputs]


def test_a_model_without_top_k_attention_is_loaded_as_it_is(tiny_onnx):
    assert OnnxRuntimeBackend(tiny_onnx, attention="kernel").attention is None


def test_an_unknown_attention_is_refused(tiny_onnx):
    with pytest.raises(RgbirError, match="--attention 'upstream' is not one of auto, kernel, function"):
        OnnxRuntimeBackend(tiny_onnx, attention="upstream")


def test_without_a_compiler_auto_falls_back_in_one_line_and_kernel_refuses(msc_512x640, tmp_path):
    """A fresh cache and CXX naming no program: auto runs the function body and says why, kernel is an error."""
    _, path = msc_512x640
    script = ("import sys\nfrom rgbir.errors import RgbirError\n"
              "from rgbir.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend\n"
              f"auto = OnnxRuntimeBackend({str(path)!r})\n"
              "print(auto.attention); print(*auto.warnings, sep='\\n')\n"
              f"try:\n    OnnxRuntimeBackend({str(path)!r}, attention='kernel')\n"
              "except RgbirError as e:\n    print('error:', e)\n")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path), "CXX": "no-such-compiler"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    attention, warning, error = result.stdout.strip().splitlines()
    assert attention == "function"
    assert warning.startswith("the top-k attention runs its ONNX function body") and "CXX=no-such-compiler" in warning
    assert error == "error: CXX=no-such-compiler is not a program on this machine: point it at a C++ compiler"
    assert not list(tmp_path.rglob("*.so"))
