"""``export_onnx``: a detector (weights or config) → a dual-input ONNX file with rgbir metadata.

Stages, each timed: prepare (fuse BN, fold IR, freeze, cast) → torch export → attention op body → NMS →
simplify → metadata → full onnx.checker + ONNX Runtime load → save.
"""

from __future__ import annotations

import ast
import copy
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import torch

from ..errors import RgbirError
from ..files import atomic_write
from ..metadata import METADATA_KEY, ModelMetadata
from ..models import Detector
from ..models.runtime_metadata import model_metadata
from ..ops import TOPK_SPARSE_ATTENTION as OP
from ..preflight import cannot_write
from . import nms, topk_function
from .options import ExportOptions
from .prepare import ExportWrapper, prepare

log = logging.getLogger(__name__)
DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


@dataclass
class ExportResult:
    path: Path
    metadata: ModelMetadata
    seconds: dict[str, float] = field(default_factory=dict)
    inputs: list[tuple[str, str, list]] = field(default_factory=list)  # (name, dtype, shape)
    outputs: list[tuple[str, str, list]] = field(default_factory=list)
    size_bytes: int = 0


def export_onnx(model: Detector, path: str | Path, options: ExportOptions | None = None) -> ExportResult:
    """Export ``model`` to ``path``, logging each stage as it finishes (``ExportResult.seconds`` keeps the times)."""
    options = options or ExportOptions()
    options.validate()
    path = Path(path)
    seconds: dict[str, float] = {}

    def stage(name: str, fn):
        start = time.perf_counter()
        try:
            value = fn()
        except RgbirError:
            raise
        except Exception as e:  # the exporters raise many types; name the stage and the cause in one line
            raise RgbirError(f"{name} failed: {type(e).__name__}: {str(e).strip().splitlines()[0][:300]}") from e
        seconds[name] = time.perf_counter() - start
        log.info(f"{name:<12} {seconds[name]:6.2f} s")
        return value

    net = stage("prepare", lambda: prepare(model, ir_channels=options.ir_channels,
                                           half=options.precision == "fp16"))
    proto = stage("torch export", lambda: _torch_export(net, options))
    _name_attention_nodes(proto)
    attention = stage("attention", lambda: topk_function.attach(proto, inline=options.inline_attention))
    if options.postprocess == "nms":
        stage("nms", lambda: nms.append_nms(proto, options.postprocess_spec))
    if options.simplify:
        proto = stage("simplify", lambda: _simplify(proto))
    metadata = model_metadata(model, options.imgsz, options.batch, options.precision, options.io_dtype,
                              options.postprocess_spec, attention_op(options, attention), net)
    onnx.helper.set_model_props(proto, {METADATA_KEY: metadata.to_json()})
    stage("check", lambda: _check(proto))
    stage("save", lambda: save_onnx(proto, path))
    return ExportResult(path, metadata, seconds, _signature(proto.graph.input), _signature(proto.graph.output),
                        path.stat().st_size)


def save_onnx(proto: onnx.ModelProto, path: Path) -> None:
    """Write the model whole or not at all: a failed write (full disk, Ctrl-C) keeps the file that was there."""
    try:
        atomic_write(path, proto.SerializeToString())
    except OSError as e:
        raise cannot_write(path, e) from e


def _torch_export(net: Detector, options: ExportOptions) -> onnx.ModelProto:
    h, w = options.imgsz
    io_dtype = DTYPES[options.io_dtype or options.precision]
    batch = options.batch or 2
    wrapper = ExportWrapper(net, io_dtype).eval()
    args = [torch.zeros(batch, 3, h, w, dtype=io_dtype)]
    names = ["rgb"]
    if net.multimodal:
        args.append(torch.zeros(batch, net.ir_channels, h, w, dtype=io_dtype))
        names.append("ir")
    dynamic = None
    if options.batch is None:
        dim = torch.export.Dim("batch", min=1, max=options.max_batch)
        dynamic = {name: {0: dim} for name in names}
    program = torch.onnx.export(
        wrapper, tuple(args), input_names=names, output_names=["predictions"], opset_version=options.opset,
        dynamo=True, dynamic_shapes=dynamic, optimize=True, verbose=False,
    )
    return program.model_proto


def _name_attention_nodes(proto: onnx.ModelProto) -> None:
    """Name each sparse-attention node after its layer ('model.22/TopKSparseAttention'), for logs and checks."""
    for node in proto.graph.node:
        if not OP.matches(node):
            continue
        props = {p.key: p.value for p in node.metadata_props}
        scopes = ast.literal_eval(props.get("pkg.torch.onnx.name_scopes", "[]"))
        if len(scopes) >= 2:  # [..., 'model.model.22', '_symbolic']: the wrapper adds one 'model.'
            node.name = f"{scopes[-2].removeprefix('model.')}/{OP.name}"


def _simplify(proto: onnx.ModelProto) -> onnx.ModelProto:
    import onnxslim

    functions = [copy.deepcopy(f) for f in proto.functions]
    _typed_constants(proto.graph)
    slim = onnxslim.slim(proto)
    del slim.functions[:]  # our function bodies are already minimal; the simplifier retypes their constants
    slim.functions.extend(functions)
    return slim


def _typed_constants(graph: onnx.GraphProto) -> None:
    """Rewrite Constant(value_float[s]/value_int[s]) as typed tensors; the simplifier reads them as float64."""
    kinds = {"value_float": onnx.TensorProto.FLOAT, "value_floats": onnx.TensorProto.FLOAT,
             "value_int": onnx.TensorProto.INT64, "value_ints": onnx.TensorProto.INT64}
    for node in graph.node:
        if node.op_type != "Constant" or node.domain not in ("", "ai.onnx") or len(node.attribute) != 1:
            continue
        attr = node.attribute[0]
        if attr.name not in kinds or attr.ref_attr_name:
            continue
        value = onnx.helper.get_attribute_value(attr)
        dims = [] if attr.name in ("value_float", "value_int") else [len(value)]
        tensor = onnx.helper.make_tensor("value", kinds[attr.name], dims, [value] if not dims else value)
        del node.attribute[:]
        node.attribute.append(onnx.helper.make_attribute("value", tensor))


def attention_op(options: ExportOptions, attention_nodes: int) -> str:
    """How the sparse attention is in the graph: a local function, inlined standard ops, or not at all."""
    if not attention_nodes:
        return "none"
    return "inlined" if options.inline_attention else "function"


def _check(proto: onnx.ModelProto) -> None:
    onnx.checker.check_model(proto, full_check=True)
    import onnxruntime as ort

    ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def _signature(values) -> list[tuple[str, str, list]]:
    out = []
    for v in values:
        t = v.type.tensor_type
        dims = [d.dim_value or d.dim_param or "?" for d in t.shape.dim]
        out.append((v.name, onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name, dims))
    return out
