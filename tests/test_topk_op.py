"""TopKSparseAttention as ONNX: local-function body, inlined body, numpy reference and torch agree."""

import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from rgbir.export import topk_function
from rgbir.models.sparse_attention import topk_sparse_attention
from rgbir.ops import TOPK_SPARSE_ATTENTION as OP
from rgbir.plugins.cpu import COMPILERS
from rgbir.runtime.backends import ort_attention

CPU_KERNEL = any(shutil.which(c) for c in COMPILERS)  # rgbir's CPU kernel is one more form where it can be compiled


def single_node_model(shape_q, shape_k, shape_v, scale, divisors, weights, dtype=TensorProto.FLOAT, inline=False):
    node = helper.make_node(OP.name, ["q", "k", "v"], ["out"], domain=OP.domain, scale=scale, k_divisors=divisors,
                            weights=weights, plugin_version=OP.version, plugin_namespace=OP.domain)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, dtype, s) for n, s in
                                            (("q", shape_q), ("k", shape_k), ("v", shape_v))],
                              [helper.make_tensor_value_info("out", dtype, [*shape_q[:-1], shape_v[-1]])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    topk_function.attach(model, inline=inline)
    onnx.checker.check_model(model, full_check=True)
    return model


def run_all(q, k, v, scale, divisors, weights):
    shapes = (q.shape, k.shape, v.shape)
    feeds = {"q": q, "k": k, "v": v}
    fn = single_node_model(*shapes, scale, divisors, weights)
    inlined = single_node_model(*shapes, scale, divisors, weights, inline=True)
    forms = {
        "ort function": ort_run(fn, feeds),
        "ort inlined": ort_run(inlined, feeds),
        "onnx.reference": ReferenceEvaluator(fn).run(None, feeds)[0],
        "torch": topk_sparse_attention(*(torch.from_numpy(a) for a in (q, k, v)), scale, divisors, weights).numpy(),
    }
    if CPU_KERNEL:
        forms["ort cpu kernel"] = ort_run(fn, feeds, kernel=True)
    return forms


def ort_run(model, feeds, kernel=False):
    """The model on ONNX Runtime's CPU provider: its function body, or rgbir's CPU kernel (2 threads)."""
    options = ort.SessionOptions()
    if kernel:
        ort_attention.use_kernel(options)
        model = ort_attention.with_kernel(model, threads=2)
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


@pytest.mark.parametrize("n,n1,divisors,weights", [
    (16, 16, [2, 3], [0.5, 0.5]),
    (10, 23, [2, 3], [0.3, 1.1]),  # N1 not divisible by either divisor
    (7, 5, [4, 7, 1], [0.2, 0.3, 0.5]),  # k = max(N1 // d, 1) hits the floor of 1
    (3, 1, [2], [1.0]),
])
def test_all_forms_agree_with_numpy_reference(n, n1, divisors, weights):
    rng = np.random.default_rng(n * 100 + n1)
    q, k = rng.standard_normal((2, 3, n, 8), dtype=np.float32), rng.standard_normal((2, 3, n1, 8), dtype=np.float32)
    v = rng.standard_normal((2, 3, n1, 5), dtype=np.float32)
    expected = topk_function.reference(q, k, v, 0.35, divisors, weights)
    for name, out in run_all(q, k, v, 0.35, divisors, weights).items():
        np.testing.assert_allclose(out, expected, atol=2e-5, rtol=1e-4, err_msg=name)


def test_rows_with_ties_keep_every_tied_entry():
    # small integer q and k: every dot product is exact in any summation order, and repeated keys make
    # many rows tie at their k-th largest score
    rng = np.random.default_rng(1)
    base = rng.integers(-2, 3, (1, 2, 4, 6)).astype(np.float32)
    k = np.concatenate([base, base, base[:, :, :2]], axis=2)  # N1 = 10 with duplicated keys
    q = rng.integers(-2, 3, (1, 2, 9, 6)).astype(np.float32)
    v = rng.standard_normal((1, 2, 10, 3), dtype=np.float32)
    expected = topk_function.reference(q, k, v, 0.5, [2, 3], [0.6, 0.4])
    outs = run_all(q, k, v, 0.5, [2, 3], [0.6, 0.4])
    for name, out in outs.items():
        np.testing.assert_allclose(out, expected, atol=2e-5, rtol=1e-4, err_msg=name)
    # and this differs from keeping exactly k entries (ties broken by index), so ties were exercised
    from rgbir.models.sparse_attention import topk_sparse_attention_reference
    exact_k = topk_sparse_attention_reference(*(torch.from_numpy(a) for a in (q, k, v)), 0.5, [2, 3], [0.6, 0.4])
    assert np.abs(exact_k.numpy() - expected).max() > 1e-3


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # onnx.reference computes inf - inf on the way
def test_non_finite_scores_follow_the_op_policy_in_every_form():
    """The op README's policy: a NaN score, a +inf score or no finite score makes the row NaN; -inf scores rank
    last and weigh nothing. numpy, both ONNX forms, onnx.reference and torch agree on it."""
    rng = np.random.default_rng(3)
    q, k = rng.standard_normal((1, 1, 5, 4), dtype=np.float32), rng.standard_normal((1, 1, 9, 4), dtype=np.float32)
    v = rng.standard_normal((1, 1, 9, 3), dtype=np.float32)
    q[0, 0, 0, 0] = np.nan  # row 0: every score NaN
    k[0, 0, 4] = [np.inf, 0, 0, 0]  # key 4: +inf or -inf by the sign of q[:, 0] (rows 1-4)
    q[0, 0, 1:3, 0] = [2.0, -2.0]  # row 1 sees +inf (poisoned), row 2 sees -inf (ranked last, weight 0)
    expected = topk_function.reference(q, k, v, 0.5, [2, 3], [0.6, 0.4])
    assert np.isnan(expected[0, 0, :2]).all() and np.isfinite(expected[0, 0, 2:]).all()
    for name, out in run_all(q, k, v, 0.5, [2, 3], [0.6, 0.4]).items():
        np.testing.assert_allclose(out, expected, atol=2e-5, rtol=1e-4, err_msg=name)


def test_fp16_inputs_compute_in_fp32_and_return_fp16():
    rng = np.random.default_rng(2)
    q, k, v = (rng.standard_normal((1, 2, 12, 8)).astype(np.float16) for _ in range(3))
    model = single_node_model(q.shape, k.shape, v.shape, 0.35, [2, 3], [0.5, 0.5], dtype=TensorProto.FLOAT16)
    expected = topk_function.reference(q.astype(np.float32), k.astype(np.float32), v.astype(np.float32),
                                       0.35, [2, 3], [0.5, 0.5])
    for kernel in (False, True) if CPU_KERNEL else (False,):
        out = ort_run(model, {"q": q, "k": k, "v": v}, kernel=kernel)
        assert out.dtype == np.float16
        np.testing.assert_allclose(out.astype(np.float32), expected, atol=5e-3, rtol=1e-2, err_msg=f"{kernel=}")


def test_function_signature_is_the_plugin_contract():
    fn = topk_function.function_proto()
    assert (fn.domain, fn.name) == (OP.domain, OP.name)
    assert list(fn.input) == ["q", "k", "v"] and len(fn.output) == 1
    declared = set(fn.attribute) | {a.name for a in fn.attribute_proto}
    assert {name for name, _ in OP.attributes} | {"plugin_version", "plugin_namespace"} <= declared


def random_qkv(seed: int, batch: int, heads: int, n: int, n1: int, d: int, dv: int):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape, dtype=np.float32) for shape in
            ((batch, heads, n, d), (batch, heads, n1, d), (batch, heads, n1, dv)))


def every_form_matches_reference(q, k, v, scale, divisors, weights) -> np.ndarray:
    """ONNX Runtime (function and inlined), onnx.reference and torch agree with the numpy reference (returned)."""
    expected = topk_function.reference(q, k, v, scale, divisors, weights)
    for name, out in run_all(q, k, v, scale, divisors, weights).items():
        np.testing.assert_allclose(out, expected, atol=2e-5, rtol=1e-4, err_msg=name)
    return expected


@pytest.mark.parametrize("n1,divisors,weights", [
    (1, [2, 3], [0.6, 0.4]),  # k1 == k2 == 1
    (2, [2, 3], [0.6, 0.4]),  # k1 == k2 == 1
    (3, [2, 3], [0.6, 0.4]),  # k1 == k2 == 1
    (17, [3, 2], [0.4, 0.6]),  # branches not in size order
    (30, [4], [1.0]),  # one branch
    (31, [5, 2, 3], [0.2, 0.5, 0.3]),  # three branch sizes
    (31, [2, 2, 3], [0.2, 0.5, 0.3]),  # a repeated divisor
    (40, [8, 1, 6, 3, 5, 2, 7, 4], [0.1, 0.2, 0.05, 0.15, 0.1, 0.2, 0.1, 0.1]),  # eight branches, any order
])
def test_any_number_and_order_of_branches_agrees_with_numpy_reference(n1, divisors, weights):
    every_form_matches_reference(*random_qkv(n1 * 10 + len(divisors), 2, 2, 7, n1, 8, 6), 0.35, divisors, weights)


def test_constant_rows_keep_every_key():
    q, k, v = random_qkv(4, 1, 2, 5, 7, 4, 3)
    q[0, 0, :2] = 0  # head 0, rows 0-1: every score 0
    k[0, 1] = k[0, 1, :1]  # head 1: seven equal keys, so every row is constant
    expected = every_form_matches_reference(q, k, v, 0.5, [2, 3], [0.7, 0.3])
    np.testing.assert_allclose(expected[0, 1], np.broadcast_to(v[0, 1].mean(0), (5, 3)), rtol=1e-6)


def test_signed_zero_scores_tie_at_the_threshold():
    """Scores +0 and -0 (products that underflow in the float32 scale multiply) are one value: with the third
    largest score 0, the k = 3 branch keeps both zeros (four keys)."""
    q = np.array([[1, 0, 0, 0], [2, 0, 0, 0]], dtype=np.float32)[None, None]
    k = np.zeros((1, 1, 6, 4), dtype=np.float32)
    k[0, 0, :, 0] = [1e-20, -1e-20, 1e20, -1e20, 5e19, -5e19]  # scores ±0, ±1e-10, ±5e-11 (times q)
    v = np.random.default_rng(6).standard_normal((1, 1, 6, 3), dtype=np.float32)
    scores = (q @ k.transpose(0, 1, 3, 2)) * np.float32(1e-30)
    assert (scores[0, 0, :, :2] == 0).all() and np.signbit(scores[0, 0, :, :2]).tolist() == [[False, True]] * 2
    # every kept exp(s - max) is 1 to 1e-9, so each branch averages the v of its keys
    expected = 0.7 * v[0, 0, [2, 4]].mean(0) + 0.3 * v[0, 0, [2, 4, 0, 1]].mean(0)
    for name, out in run_all(q, k, v, 1e-30, [3, 2], [0.7, 0.3]).items():
        np.testing.assert_allclose(out[0, 0], np.stack([expected, expected]), atol=1e-6, err_msg=name)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # inf - inf on the way
def test_one_nan_score_and_rows_without_a_finite_score_give_nan_rows():
    q, k, v = random_qkv(5, 1, 3, 4, 9, 4, 3)
    k[0, 0, 5] = [np.nan, 0, 0, 0]  # head 0: one NaN score in rows of finite ones
    q[0, 1, :, 0] = np.abs(q[0, 1, :, 0]) + 0.5
    k[0, 1, :, 0] = -np.inf  # head 1: every score -inf
    expected = every_form_matches_reference(q, k, v, 0.5, [2, 3], [0.6, 0.4])
    assert np.isnan(expected[0, :2]).all() and np.isfinite(expected[0, 2]).all()


@pytest.mark.parametrize("inline", [False, True], ids=["function", "inlined"])
def test_tensorrt_rtx_parses_and_builds_the_body(inline):
    """TensorRT's ONNX parser without the rgbir plugin: the body (its TopK's K from shapes) parses and builds."""
    trt = pytest.importorskip("tensorrt_rtx_bindings", reason="TensorRT-RTX's Python bindings are not installed")
    model = single_node_model((1, 2, 24, 8), (1, 2, 30, 8), (1, 2, 30, 4), 0.35, [3, 2, 5], [0.3, 0.5, 0.2],
                              inline=inline)
    for node in model.graph.node:  # the plugin, if an earlier test registered it, would win over the body
        kept = [a for a in node.attribute if a.name != "plugin_namespace"]
        del node.attribute[:]
        node.attribute.extend(kept)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(model.SerializeToString()), [str(parser.get_error(i)) for i in range(parser.num_errors)]
    layers = [network.get_layer(i).type for i in range(network.num_layers)]
    assert layers.count(trt.LayerType.TOPK) == 1 and trt.LayerType.PLUGIN_V3 not in layers
    plan = builder.build_serialized_network(network, builder.create_builder_config())
    assert plan is not None and plan.nbytes > 0
