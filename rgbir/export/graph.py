"""Who writes and who reads each tensor of an ONNX graph, and the walks over them that the static check
(``check.py``) and the INT8 Q/DQ placement (``qdq_placement.py``) share."""

from __future__ import annotations

import onnx

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
DATA_MOVEMENT = frozenset({"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Split", "Slice",
                           "Concat", "Gather", "Cast"})  # ops that hand a tensor on with its values unchanged


def producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    """Tensor name → the node that writes it."""
    return {output: node for node in graph.node for output in node.output}


def consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """Tensor name → the nodes that read it, in graph order."""
    users: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    return users


def quantized_inputs(node: onnx.NodeProto, producer: dict[str, onnx.NodeProto]) -> list[str]:
    """Inputs of ``node`` that come from a QuantizeLinear/DequantizeLinear, directly or through ops that only
    move data (Reshape, Transpose, Split, ...)."""
    def quantized(name: str, depth: int = 0) -> bool:
        source = producer.get(name)
        if source is None or depth > 16:
            return False
        if source.op_type in QDQ_OPS:
            return True
        return source.op_type in DATA_MOVEMENT and any(quantized(i, depth + 1) for i in source.input if i)

    return [i for i in node.input if i and quantized(i)]
