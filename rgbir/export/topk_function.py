"""``rgbir::TopKSparseAttention`` as an ONNX local function with a standard-op body, and a numpy reference.

Every runtime that supports local functions (ONNX Runtime, ``onnx.reference``) runs the body; TensorRT >= 10.7
prefers a registered plugin of the same name over the function, so the same file uses our fused kernel there.
Body: scores in float32, ONE TopK with the largest k, per-branch thresholds by Gather, masks by comparison
(tie-inclusive), one exp pass, per-branch normalisers, the weighted mix, ONE MatMul with v.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx.inliner
from onnxscript import FLOAT, script
from onnxscript import opset18 as op
from onnxscript.values import Opset

from ..ops import TOPK_SPARSE_ATTENTION as CONTRACT

rgbir_opset = Opset(CONTRACT.domain, int(CONTRACT.version))


@script(rgbir_opset, default_opset=op)
def TopKSparseAttention(q, k, v, scale: float, k_divisors: list[int], weights: list[float]):
    # q (B,h,N,d), k (B,h,N1,d), v (B,h,N1,dv) -> (B,h,N,dv) in q's dtype
    scores = op.MatMul(op.Cast(q, to=FLOAT.dtype), op.Transpose(op.Cast(k, to=FLOAT.dtype), perm=[0, 1, 3, 2]))
    scores = op.Mul(scores, op.Constant(value_float=scale))
    n_keys = op.Shape(k, start=2, end=3)
    one = op.Constant(value_ints=[1])
    counts = op.Max(op.Div(n_keys, op.Constant(value_ints=k_divisors)), one)  # k_i = max(N1 // d_i, 1)
    top_values, top_indices = op.TopK(scores, op.ReduceMax(counts, keepdims=1), axis=-1, largest=1, sorted=1)
    thresholds = op.Gather(top_values, op.Sub(counts, one), axis=3)  # (B,h,N,branches)
    row_max = op.Gather(top_values, op.Constant(value_ints=[0]), axis=3)  # (B,h,N,1)
    e = op.Exp(op.Sub(scores, row_max))
    mask = op.GreaterOrEqual(
        op.Unsqueeze(scores, op.Constant(value_ints=[3])), op.Unsqueeze(thresholds, op.Constant(value_ints=[4]))
    )  # (B,h,N,branches,N1)
    zero = op.Constant(value_float=0.0)
    normaliser = op.ReduceSum(
        op.Where(mask, op.Unsqueeze(e, op.Constant(value_ints=[3])), zero), op.Constant(value_ints=[4]), keepdims=1
    )
    branch_weights = op.Reshape(op.Constant(value_floats=weights), op.Constant(value_ints=[-1, 1]))
    mixed = op.ReduceSum(op.Where(mask, op.Div(branch_weights, normaliser), zero), op.Constant(value_ints=[3]),
                         keepdims=0)
    out = op.MatMul(op.Mul(mixed, e), op.Cast(v, to=FLOAT.dtype))
    return op.CastLike(out, q)


def function_proto() -> onnx.FunctionProto:
    """The local function, accepting (and ignoring) the TensorRT parser's plugin_version/plugin_namespace."""
    proto = TopKSparseAttention.to_function_proto()
    proto.attribute.extend(["plugin_version", "plugin_namespace"])
    return proto


def attach(model: onnx.ModelProto, inline: bool = False) -> int:
    """Give every TopKSparseAttention node its function body (or inline the body); returns the node count."""
    nodes = sum(
        1 for n in _all_nodes(model.graph) if CONTRACT.matches(n)
    )
    if not nodes:
        return 0
    del model.functions[:]  # the exporter may leave an empty placeholder; ours replaces it
    model.functions.append(function_proto())
    if not any(o.domain == CONTRACT.domain for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid(CONTRACT.domain, int(CONTRACT.version)))
    if inline:
        inline_functions(model)
    return nodes


def inline_functions(model: onnx.ModelProto) -> None:
    """Replace every call of the attention's local function by its body, in place. ``onnx.inliner`` names each
    call site's nodes apart, where a TensorRT parser inlining the function itself repeats the body's node names
    at every call site ("A node named n16 already exists")."""
    model.CopyFrom(onnx.inliner.inline_local_functions(model))
    kept = [o for o in model.opset_import if o.domain != CONTRACT.domain]
    del model.opset_import[:]
    model.opset_import.extend(kept)


def _all_nodes(graph: onnx.GraphProto):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _all_nodes(attr.g)


def reference(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float, k_divisors, weights) -> np.ndarray:
    """Plain numpy statement of the op's semantics (float64), independent of torch and of the ONNX body; a row with
    a NaN score, a +inf score or no finite score comes out NaN (the op README's policy)."""
    scores = np.einsum("bhnd,bhmd->bhnm", q.astype(np.float64), k.astype(np.float64)) * scale
    top = np.where(np.isnan(scores), -np.inf, scores).max(-1)
    poisoned = (np.isnan(scores).any(-1) | ~np.isfinite(top))[..., None]
    scores = np.where(poisoned, 0.0, scores)  # computed as if finite, then overwritten with NaN
    n_keys = scores.shape[-1]
    ordered = -np.sort(-scores, axis=-1)
    e = np.exp(scores - ordered[..., :1])
    mixed = np.zeros_like(scores)
    for divisor, weight in zip(k_divisors, weights):
        threshold = ordered[..., max(n_keys // divisor, 1) - 1][..., None]
        kept = np.where(scores >= threshold, e, 0.0)
        mixed += weight * kept / kept.sum(-1, keepdims=True)
    out = np.where(poisoned, np.nan, mixed @ v.astype(np.float64))
    return out.astype(q.dtype)
