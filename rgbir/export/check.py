"""Static check of an ONNX file against what TensorRT 10/11's ONNX parser rejects or handles badly.

No TensorRT needed: shapes come from ONNX shape inference and small shape-only subgraphs (TopK's K) are
evaluated with ``onnx.reference``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference
from onnx.reference import ReferenceEvaluator

from ..metadata import load_onnx, onnx_metadata
from ..ops import TOPK_SPARSE_ATTENTION as OP
from .graph import QDQ_OPS, consumers, producers, quantized_inputs

TOPK_MAX_K = 3840
INT32_MAX = 2**31 - 1

# Ops the TensorRT 10 ONNX parser implements (onnx-tensorrt operators.md), default domain.
TENSORRT_OPS = frozenset("""
Abs Acos Acosh Add AffineGrid And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Bernoulli
BitShift BitwiseAnd BitwiseNot BitwiseOr BitwiseXor BlackmanWindow Cast CastLike Ceil Celu Clip Compress Concat
ConcatFromSequence Constant ConstantOfShape Conv ConvInteger ConvTranspose Cos Cosh CumSum DFT DeformConv DepthToSpace
DequantizeLinear Det Div Dropout DynamicQuantizeLinear Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor GRU
Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual
GridSample GroupNormalization HammingWindow HannWindow HardSigmoid HardSwish Hardmax Identity If ImageScaler
InstanceNormalization IsInf IsNaN LRN LSTM LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop
LpNormalization LpPool MatMul MatMulInteger Max MaxPool MaxRoiPool MaxUnpool Mean MeanVarianceNormalization
MelWeightMatrix Min Mish Mod Mul Multinomial Neg NonMaxSuppression NonZero Not OneHot Or PRelu Pad ParametricSoftplus
Pow QLinearConv QLinearMatMul
QuantizeLinear RNN RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2
ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize
ReverseSequence RoiAlign Round STFT ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign
Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK
Transpose Trilu Unique Unsqueeze Upsample Where Xor
""".split())


# What TensorRT quantizes to: INT8 and FP8 (activations and weights), INT4 and FP4 (weights only).
QUANTIZED_TYPES = frozenset({onnx.TensorProto.INT8, onnx.TensorProto.FLOAT8E4M3FN})
WEIGHT_ONLY_TYPES = frozenset({onnx.TensorProto.INT4, getattr(onnx.TensorProto, "FLOAT4E2M1", onnx.TensorProto.INT4)})
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass
class Finding:
    severity: str  # "error" | "warning" | "info"
    node: str
    message: str


@dataclass
class CheckReport:
    path: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def passed(self) -> bool:
        return not self.errors


class _Graph:
    """Inferred shapes, constants and producers of a graph, to answer 'what is this value?'."""

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        graph = model.graph
        self.shapes = {}
        for v in [*graph.input, *graph.value_info, *graph.output]:
            t = v.type.tensor_type
            self.shapes[v.name] = (t.elem_type, [d.dim_value if d.HasField("dim_value") else None
                                                  for d in t.shape.dim])
        self.constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        self.producer = producers(graph)
        self.users = consumers(graph)
        self.opsets = {o.domain: o.version for o in model.opset_import}

    def value(self, name: str, depth: int = 0):
        """The value of a tensor computable from constants and static shapes, else None."""
        if name in self.constants:
            return self.constants[name]
        node = self.producer.get(name)
        if node is None or depth > 32:
            return None
        if node.op_type == "Shape":
            shape = self.shapes.get(node.input[0], (None, None))[1]
            if shape is None:
                return None
            attrs = {a.name: a.i for a in node.attribute}
            shape = shape[attrs.get("start", 0): attrs.get("end", len(shape))]
            if any(d is None for d in shape):
                return None
            result = np.array(shape, dtype=np.int64)
        else:
            inputs = [self.value(i, depth + 1) if i else None for i in node.input]
            if any(v is None for i, v in zip(node.input, inputs) if i):
                return None
            feeds = {i: v for i, v in zip(node.input, inputs) if i}
            graph_inputs = [onnx.helper.make_tensor_value_info(
                i, onnx.helper.np_dtype_to_tensor_dtype(np.asarray(v).dtype), None) for i, v in feeds.items()]
            graph_outputs = [onnx.helper.make_tensor_value_info(o, 0, None) for o in node.output]
            single = onnx.helper.make_model(onnx.helper.make_graph([node], "value", graph_inputs, graph_outputs),
                                            opset_imports=[onnx.helper.make_opsetid("", self.opsets.get("", 18))])
            try:
                outputs = ReferenceEvaluator(single).run(None, {k: np.asarray(v) for k, v in feeds.items()})
            except Exception:  # an op the reference evaluator cannot fold here: the value stays unknown
                return None
            result = outputs[list(node.output).index(name)]
        self.constants[name] = result
        return result


def check_onnx(path: str | Path) -> CheckReport:
    path = Path(path)
    model = load_onnx(path)
    report = CheckReport(str(path))
    add = report.findings.append
    model = shape_inference.infer_shapes(model, data_prop=True)
    g = _Graph(model)
    functions = {(f.domain, f.name) for f in model.functions}
    meta = onnx_metadata(model, path, required=False)

    for node in model.graph.node:
        name = node.name or f"{node.op_type}:{node.output[0]}"
        if OP.matches(node):
            _check_attention(node, name, g, add)
        elif node.domain not in ("", "ai.onnx"):
            has_body = (node.domain, node.op_type) in functions
            add(Finding("warning" if has_body else "error", name,
                        f"custom op {node.domain}::{node.op_type} needs a TensorRT plugin"
                        + (" (else TensorRT inlines its local function)" if has_body else "")))
        elif node.op_type not in TENSORRT_OPS:
            add(Finding("error", name, f"{node.op_type} is not supported by TensorRT's ONNX parser"))
        elif node.op_type == "TopK":
            k = g.value(node.input[1])
            if k is None:
                add(Finding("warning", name, "TopK with a K TensorRT cannot see at build time"))
            elif int(np.max(k)) > TOPK_MAX_K:
                add(Finding("error", name, f"TopK K={int(np.max(k))} exceeds TensorRT's limit of {TOPK_MAX_K}: "
                            "export without --inline-attention and load the rgbir plugin"))
        elif node.op_type in QDQ_OPS:
            _check_qdq(node, name, g, add)
        elif node.op_type in ("Conv", "ConvTranspose") and g.value(node.input[1]) is None:
            if not _is_quantized_weight(node.input[1], g):
                add(Finding("error", name, f"{node.op_type} weights are computed at run time; TensorRT needs "
                            "constant weights for float convolutions (use shifted multiply-adds)"))
    for t in model.graph.initializer:
        if t.data_type == onnx.TensorProto.INT64:
            values = numpy_helper.to_array(t)
            if values.size and np.abs(values).max() > INT32_MAX and not _only_slice_bound(t.name, g):
                add(Finding("warning", t.name, "INT64 constant outside the INT32 range: TensorRT clamps it"))
    for v in [*model.graph.input, *model.graph.output]:
        elem, dims = g.shapes.get(v.name, (None, []))
        if elem == onnx.TensorProto.INT64:
            add(Finding("warning", v.name, "INT64 graph I/O: TensorRT 10 casts to INT32; prefer INT32"))
        dynamic = [i for i, d in enumerate(dims or []) if d is None]
        if dynamic and v in model.graph.input:
            bounded = meta is not None and meta.batch is None and dynamic == [0]
            add(Finding("info" if bounded else "warning", v.name,
                        f"dynamic dims {dynamic}: build with an optimisation profile "
                        "('rgbir build --batch MIN,OPT,MAX')"
                        + ("; rgbir metadata bounds the batch" if bounded else "")))
    if meta is not None and meta.precision == "fp16":
        add(Finding("info", "model", "FP16 graph: 'rgbir build' (--precision auto) builds it strongly typed, so it "
                                    "stays FP16 on TensorRT 10 and 11"))
    if meta is not None and meta.precision == "int8":
        add(Finding("info", "model", "INT8 Q/DQ graph: 'rgbir build' (--precision auto) builds it strongly typed on "
                                    "TensorRT 10 and 11 (layers without Q/DQ compute in FP32)"))
    return report


def _quantized_type(node, zero_point, g: _Graph) -> int | None:
    """The integer/FP8 type a Q produces or a DQ reads (from its constant zero point, the constant it reads or
    inferred types)."""
    if zero_point is not None:
        return onnx.helper.np_dtype_to_tensor_dtype(zero_point.dtype)
    tensor = node.output[0] if node.op_type == "QuantizeLinear" else node.input[0]
    if tensor in g.constants:
        return onnx.helper.np_dtype_to_tensor_dtype(g.constants[tensor].dtype)
    return g.shapes.get(tensor, (None, None))[0]


def _weight(node, g: _Graph):
    """The constant weight a DQ dequantizes (an INT8 initializer, or a float one behind a Q), else None."""
    source = g.producer.get(node.input[0])
    name = source.input[0] if source is not None and source.op_type == "QuantizeLinear" else node.input[0]
    return g.constants.get(name)


def _output_channel_axis(user, rank: int) -> int:
    """Where a weighted op keeps its output channels in its weight: Conv 0, ConvTranspose 1, Gemm 0 with transB
    (else 1), MatMul the last axis."""
    if user.op_type == "Gemm":
        return 0 if any(a.name == "transB" and a.i for a in user.attribute) else 1
    return {"Conv": 0, "ConvTranspose": 1}.get(user.op_type, rank - 1)


def _check_qdq(node, name, g: _Graph, add) -> None:
    zero_point = g.constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if zero_point is not None and np.any(zero_point != 0):
        add(Finding("error", name, "asymmetric quantization (a non-zero zero point): TensorRT takes symmetric "
                    "INT8 only; quantize with zero points 0 ('rgbir quantize', or ORT's ActivationSymmetric and "
                    "WeightSymmetric)"))
    weight = _weight(node, g) if node.op_type == "DequantizeLinear" else None
    kind = _quantized_type(node, zero_point, g)
    allowed = QUANTIZED_TYPES | (WEIGHT_ONLY_TYPES if weight is not None else frozenset())
    if kind is not None and kind not in allowed:
        what = onnx.TensorProto.DataType.Name(kind)
        add(Finding("error", name, f"{node.op_type} of {what}: TensorRT quantizes to INT8 or FP8 (INT4/FP4 weights "
                    "only)" + ("; keep biases float (ORT: QuantizeBias off)" if kind == onnx.TensorProto.INT32 else
                               "; quantize to INT8 (ORT: QuantType.QInt8)")))
    scale = g.constants.get(node.input[1])
    if weight is None or scale is None or scale.size <= 1:
        return
    attrs = {a.name: a.i for a in node.attribute}
    axis = attrs.get("axis", 1) % weight.ndim
    for user in g.users.get(node.output[0], []):
        expected = _output_channel_axis(user, weight.ndim)
        if user.op_type in WEIGHTED_OPS and user.input[1] == node.output[0] and axis != expected:
            given = f"axis {attrs['axis']}" if "axis" in attrs else "no axis attribute (ONNX's default 1)"
            add(Finding("error", name, f"per-channel weight scales with {given}: TensorRT needs the output-channel "
                        f"axis {expected} of {user.op_type} {user.name or user.output[0]}"))


def _check_attention(node, name, g: _Graph, add) -> None:
    for tensor in quantized_inputs(node, g.producer):
        add(Finding("error", name, f"input {tensor} comes from a Q/DQ: the TensorRT plugin takes float inputs; keep "
                    "the attention's producers in float (rgbir quantize does)"))
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    divisors = list(attrs.get("k_divisors", []))
    if not divisors or any(d < 1 for d in divisors) or len(divisors) != len(attrs.get("weights", [])):
        weights = list(attrs.get("weights", []))
        add(Finding("error", name, f"invalid attributes k_divisors={divisors} weights={weights}"))
        return
    shape = g.shapes.get(node.input[1], (None, None))[1]
    n_keys = shape[2] if shape and len(shape) == 4 else None
    if n_keys is None:
        add(Finding("warning", name, "TopKSparseAttention with an unknown key count"))
        return
    k = max(n_keys // min(divisors), 1)
    plugin = "maps to the rgbir plugin when it is loaded"
    if k > TOPK_MAX_K:
        add(Finding("warning", name, f"{plugin}; without it the function body's TopK (K={k}) exceeds "
                    f"TensorRT's limit of {TOPK_MAX_K} and the build fails"))
    else:
        add(Finding("info", name, f"{plugin}; else its function body runs (TopK K={k}, N1={n_keys})"))


def _is_quantized_weight(name: str, g: _Graph) -> bool:
    node = g.producer.get(name)
    return node is not None and node.op_type == "DequantizeLinear" and g.value(node.input[0]) is not None


def _only_slice_bound(name: str, g: _Graph) -> bool:
    users = g.users.get(name, [])
    return bool(users) and all(n.op_type == "Slice" for n in users)
