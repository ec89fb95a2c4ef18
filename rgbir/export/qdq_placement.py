"""Where an INT8 rgbir export gets its Q/DQ pairs and what stays float (``rgbir quantize``).

Placement, as TensorRT fuses it: Q/DQ on the inputs of Conv, Gemm and MatMul only (the quantizer's settings are in
``quantize.py``). Kept in float (fp32), nothing quantized feeding them: the ``rgbir::TopKSparseAttention`` node (the
TensorRT plugin) and its inputs, Softmax, LayerNormalization, and the DFL with everything after it (box decoding,
NMS). Also float by default, because measuring said so: the Detect head's six output convolutions (box
distributions and class logits) — quantized, they were the largest share of the demo model's INT8 output error
(``sensitivity``) and about doubled its mAP50-95 loss on two synthetic validation sets. Nodes kept float read the
float tensor, not the output of a Q/DQ pair that ORT shares among all consumers of a quantized activation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import onnx

from ..errors import RgbirError
from ..ops import TOPK_SPARSE_ATTENTION as OP
from .graph import DATA_MOVEMENT, consumers, producers, quantized_inputs

QUANTIZED_OP_TYPES = ("Conv", "Gemm", "MatMul")
FLOAT_OP_TYPES = (OP.name, "Softmax", "LayerNormalization")


def layer_paths(model: onnx.ModelProto) -> dict[str, str]:
    """Each node's layer path ('model.42.cv2.0.conv'): from its parameters' names, else inherited from the node
    that produces its first input with one (nodes are in topological order)."""
    initializers = {i.name for i in model.graph.initializer}
    producer = producers(model.graph)
    paths: dict[str, str] = {}
    for node in model.graph.node:
        for name in node.input:
            match = re.match(r"(?:model\.)?(model\.\d+(?:\.\w+)*)\.\w+$", name) if name in initializers else None
            if match:
                paths[node.name] = match.group(1)
                break
        else:
            inherited = (paths.get(producer[name].name) for name in node.input if name in producer)
            path = next((p for p in inherited if p), None)
            if path:
                paths[node.name] = path
    return paths


def layer_group(path: str) -> str:
    """'model.42.cv2.0.conv' → 'model.42': the unit of the sensitivity report."""
    return ".".join(path.split(".")[:2])


def _dfl_convs(graph: onnx.GraphProto, producer: dict[str, onnx.NodeProto]) -> list[onnx.NodeProto]:
    """The DFL: the Conv that reads a Softmax (the expectation over the 16 distance bins)."""
    return [n for n in graph.node if n.op_type == "Conv" and n.input[0] in producer
            and producer[n.input[0]].op_type == "Softmax"]


def float_islands(model: onnx.ModelProto) -> set[str]:
    """Nodes that must compute in float: the attention plugin node, softmaxes, LayerNorms, and the DFL with
    everything downstream of it (box decoding, NMS)."""
    graph = model.graph
    producer, users = producers(graph), consumers(graph)
    islands = {n.name for n in graph.node if n.op_type in FLOAT_OP_TYPES}
    stack = _dfl_convs(graph, producer)
    while stack:
        node = stack.pop()
        if node.name not in islands:
            islands.add(node.name)
            stack += [user for output in node.output for user in users.get(output, [])]
    return islands


def head_outputs(model: onnx.ModelProto) -> set[str]:
    """The Detect head's output convolutions (box distributions, class logits): the Convs whose outputs reach the
    DFL's Softmax through data movement alone (they share one Concat with the class branch)."""
    producer = producers(model.graph)
    found: set[str] = set()
    stack = [producer[dfl.input[0]] for dfl in _dfl_convs(model.graph, producer)]
    while stack:
        node = stack.pop()
        for name in node.input:
            source = producer.get(name)
            if source is not None and source.op_type == "Conv":
                found.add(source.name)
            elif source is not None and source.op_type in DATA_MOVEMENT:
                stack.append(source)
    return found


def skipped_nodes(model: onnx.ModelProto, tokens: Iterable[str], paths: dict[str, str]) -> set[str]:
    """Nodes named by ``--skip-layers``: a node name, or a layer path and everything under it."""
    names = {n.name for n in model.graph.node}
    skipped: set[str] = set()
    for token in tokens:
        hits = {n for n in names if n == token or paths.get(n) == token or paths.get(n, "").startswith(token + ".")}
        if not hits:
            groups = sorted({layer_group(p) for p in paths.values()}, key=lambda g: int(g.split(".")[1]))
            examples = f" such as {', '.join(groups[:3])} … {groups[-1]}" if groups else ""
            raise RgbirError(f"--skip-layers '{token}' names no node or layer of this model: give a node name or a "
                             f"layer{examples}")
        skipped |= hits
    return skipped


def quantizable_nodes(model: onnx.ModelProto, keep_float: set[str]) -> list[str]:
    """Conv/Gemm/MatMul nodes that get INT8 inputs, in graph order."""
    return [n.name for n in model.graph.node if n.op_type in QUANTIZED_OP_TYPES and n.name not in keep_float]


def select_nodes(model: onnx.ModelProto, skip_layers: Iterable[str]) -> tuple[dict[str, str], set[str], list[str]]:
    """(layer paths, float islands, nodes to quantize): islands, head outputs and --skip-layers stay float."""
    paths = layer_paths(model)
    islands = float_islands(model)
    keep_float = islands | head_outputs(model) | skipped_nodes(model, skip_layers, paths)
    return paths, islands, quantizable_nodes(model, keep_float)


def kept_float(model: onnx.ModelProto, islands: set[str], quantized: list[str]) -> set[str]:
    """Nodes that compute in float: the islands and every Conv/Gemm/MatMul left out of ``quantized``."""
    return islands | {n.name for n in model.graph.node if n.op_type in QUANTIZED_OP_TYPES} - set(quantized)


def restore_float_inputs(model: onnx.ModelProto, names: set[str]) -> None:
    """Hand the nodes ``names`` the float tensor itself where ORT gave them the output of a shared Q → DQ pair
    (ORT routes every consumer of a quantized activation through its pair, not only the quantized ones)."""
    producer = producers(model.graph)
    for node in model.graph.node:
        if node.name not in names:
            continue
        for k, name in enumerate(node.input):
            dq = producer.get(name)
            q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[k] = q.input[0]


def qdq_fed(model: onnx.ModelProto, node_names: set[str]) -> list[tuple[str, str]]:
    """(node, input) pairs where one of ``node_names`` reads a Quantize/DequantizeLinear output, directly or
    through ops that only move data."""
    producer = producers(model.graph)
    return [(n.name, i) for n in model.graph.node if n.name in node_names for i in quantized_inputs(n, producer)]


def attention_nodes(model: onnx.ModelProto) -> int:
    """How many TopKSparseAttention nodes the graph holds (the quantizer must leave every one whole)."""
    return sum(OP.matches(n) for n in model.graph.node)
