"""ONNX Runtime runs ``rgbir::TopKSparseAttention`` with rgbir's CPU kernel instead of the op's function body (the
body sorts and masks every row with generic ops: 7 to 12x slower per call at P4 640, most of an MSC model's time).

How: onnxruntime-extensions lets Python ops into a session. The in-memory copy of the model has each attention node
turned into that domain's op (float16 nodes between Casts: the kernel computes in float32, as the op does), and the
Python op hands the arrays to the kernel, whose ctypes call releases the GIL. The file on disk is not changed.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from ...errors import RgbirError
from ...ops import TOPK_SPARSE_ATTENTION as OP

ATTENTIONS = ("auto", "kernel", "function")
DOMAIN = "ai.onnx.contrib"  # onnxruntime-extensions' domain for Python ops
OP_TYPE = "RgbirTopKSparseAttention"


def attention_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if OP.matches(n)]


def has_attention(path: Path) -> bool:
    """Whether the model file has top-k attention nodes (read without its weights; False for a file ONNX cannot
    parse, which ONNX Runtime then names)."""
    try:
        return bool(attention_nodes(onnx.load(str(path), load_external_data=False)))
    except Exception:  # protobuf's DecodeError and friends
        return False


def implementation(path: Path, attention: str, on_cpu: bool) -> str | None:
    """How the model's top-k attention is to run: "kernel", "function" (the op's ONNX body) or None (the model has
    none). auto: the kernel on the CPU provider; on a GPU provider the body (it runs there)."""
    if attention not in ATTENTIONS:
        raise RgbirError(f"--attention '{attention}' is not one of {', '.join(ATTENTIONS)} for ONNX Runtime")
    if not has_attention(path):
        return None
    return "kernel" if attention == "kernel" or (attention == "auto" and on_cpu) else "function"


def kernel_model(path: Path, threads: int | None) -> bytes:
    """The model at ``path`` with its attention on the CPU kernel, serialised for ONNX Runtime."""
    from ...plugins.cpu import default_threads

    return with_kernel(onnx.load(str(path)), threads or default_threads()).SerializeToString()


@functools.lru_cache(maxsize=1)
def custom_ops_library() -> str:
    """onnxruntime-extensions' library with rgbir's Python op registered in it."""
    try:
        from onnxruntime_extensions import PyOp, get_library_path, onnx_op
    except ImportError as e:
        raise RgbirError("onnxruntime-extensions is not installed (pip install onnxruntime-extensions): it lets "
                         "rgbir's CPU attention kernel into ONNX Runtime") from e
    from ...plugins.cpu import cpu_library, topk_sparse_attention

    cpu_library()  # compiled now, so that a missing compiler is reported here rather than inside a run

    @onnx_op(op_type=OP_TYPE, inputs=[PyOp.dt_float] * 3, outputs=[PyOp.dt_float],
             attrs={"scale": PyOp.dt_float, "k_divisors": PyOp.dt_string, "weights": PyOp.dt_string,
                    "threads": PyOp.dt_int64})
    def _attention(q, k, v, scale, k_divisors, weights, threads):
        return topk_sparse_attention(q, k, v, scale, [int(x) for x in k_divisors.split()],
                                     [float(x) for x in weights.split()], threads)

    return get_library_path()


def use_kernel(options) -> None:
    """Session options for a model whose attention runs the kernel: the Python-op library registered, and ONNX
    Runtime's idle pool threads sleeping instead of spinning, so that they leave the kernel's threads the cores
    (measured on 2 cores with the demo at 640: 474 ms a run with spinning, 300 ms without)."""
    library = custom_ops_library()
    try:
        options.register_custom_ops_library(library)
    except Exception as e:  # ONNX Runtime's own exception types
        raise RgbirError(f"onnxruntime-extensions' library does not load into this ONNX Runtime: "
                         f"{str(e).splitlines()[0]}") from e
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")


def _kernel_nodes(node: onnx.NodeProto, elem_type: int, threads: int) -> list[onnx.NodeProto]:
    """The attention node as the Python op (between Casts for float16)."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    # repr of a float32 value as a Python float is exact, so the weights reach the kernel bit for bit
    call = {"scale": float(attrs["scale"]), "k_divisors": " ".join(str(int(x)) for x in attrs["k_divisors"]),
            "weights": " ".join(repr(float(np.float32(x))) for x in attrs["weights"]), "threads": threads}
    name = node.name or node.output[0]
    if elem_type == TensorProto.FLOAT:
        return [helper.make_node(OP_TYPE, list(node.input), list(node.output), name=name, domain=DOMAIN, **call)]
    casts = [helper.make_node("Cast", [x], [f"{name}/{x}_float"], name=f"{name}/cast_{i}", to=TensorProto.FLOAT)
             for i, x in enumerate(node.input)]
    out = f"{name}/out_float"
    return [*casts, helper.make_node(OP_TYPE, [c.output[0] for c in casts], [out], name=name, domain=DOMAIN, **call),
            helper.make_node("Cast", [out], list(node.output), name=f"{name}/cast_out", to=elem_type)]


def with_kernel(model: onnx.ModelProto, threads: int) -> onnx.ModelProto:
    """A copy of ``model`` whose attention nodes run the CPU kernel with ``threads`` threads."""
    types = {v.name: v.type.tensor_type.elem_type for v in (*model.graph.input, *model.graph.value_info,
                                                             *model.graph.output)}
    if any(n.input[0] not in types for n in attention_nodes(model)):
        model = onnx.shape_inference.infer_shapes(model)
        types.update({v.name: v.type.tensor_type.elem_type for v in model.graph.value_info})
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    nodes = []
    for node in copy.graph.node:
        nodes += _kernel_nodes(node, types.get(node.input[0], TensorProto.FLOAT), threads) if OP.matches(node) \
            else [node]
    del copy.graph.node[:]
    copy.graph.node.extend(nodes)  # the function stays: unused here, it is what nodes in subgraphs would still call
    if not any(o.domain == DOMAIN for o in copy.opset_import):
        copy.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    return copy
