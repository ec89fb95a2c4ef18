"""A tiny ONNX with rgbir's attention node, its local function and rgbir metadata: what ``rgbir build`` parses."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from rgbir.metadata import METADATA_KEY, InputSpec, ModelMetadata
from rgbir.ops import TOPK_SPARSE_ATTENTION as OP


def metadata(batch=None, precision="fp32", attention="function") -> ModelMetadata:
    return ModelMetadata("test", {0: "person", 1: "car"}, (64, 96), batch,
                         [InputSpec("rgb", 3, "RGB"), InputSpec("ir", 1, "GRAY")], [8.0, 16.0, 32.0],
                         precision=precision, attention_op=attention)


def small_onnx(path: Path, meta: ModelMetadata, plugin_namespace: bool = True) -> Path:
    """A graph with the rgbir attention node and its local function, carrying rgbir metadata (the node carries
    ``plugin_namespace`` as rgbir's exports do, unless told otherwise)."""
    pytest.importorskip("onnxscript")
    from rgbir.export.topk_function import attach

    b = meta.batch or "batch"
    parser_attrs = {"plugin_version": "1", "plugin_namespace": "rgbir"} if plugin_namespace else {}
    node = helper.make_node(OP.name, ["q", "k", "v"], ["predictions"], domain=OP.domain,
                            name="model.22/TopKSparseAttention", scale=0.5, k_divisors=[2, 3], weights=[0.5, 0.5],
                            **parser_attrs)
    graph = helper.make_graph(
        [helper.make_node("Identity", ["rgb"], ["q"]), helper.make_node("Identity", ["ir"], ["k"]),
         helper.make_node("Identity", ["ir"], ["v"]), node], "g",
        [helper.make_tensor_value_info("rgb", TensorProto.FLOAT, [b, 3, 64, 96]),
         helper.make_tensor_value_info("ir", TensorProto.FLOAT, [b, 1, 64, 96])],
        [helper.make_tensor_value_info("predictions", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    attach(model)
    helper.set_model_props(model, {METADATA_KEY: meta.to_json()})
    onnx.save(model, path)
    return path
