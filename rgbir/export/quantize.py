"""``quantize_onnx``: an fp32 rgbir export → an INT8 Q/DQ ONNX, the only INT8 TensorRT 11 (JetPack 7) builds.

Tool: ONNX Runtime's own quantization tooling — its calibrators (``create_calibrator``) and ``quantize_static``
in ``QuantFormat.QDQ`` — because ONNX Runtime is already a dependency and also runs the result on the CPU, where
its accuracy is measured. NVIDIA ModelOpt drives this same ORT quantizer for INT8 but pulls in torch, cupy and
onnx-graphsurgeon; the settings below are the TensorRT ones ModelOpt passes it.

Placement, as TensorRT fuses it: Q/DQ on the inputs of Conv, Gemm and MatMul only (activations per tensor,
weights per output channel: axis 0 of Conv, ORT's transB-aware axis for Gemm), never on their outputs
(``OpTypesToExcludeOutputQuantization``), so TensorRT fuses the activation and the next layer's Quantize into
each convolution. Symmetric INT8 everywhere (zero point 0; ``ActivationSymmetric``, ``WeightSymmetric``); biases
stay float (``QuantizeBias`` off: TensorRT has no INT32 DequantizeLinear); weights are stored as INT8 initializers
behind a DequantizeLinear (``AddQDQPairToWeight`` off: a 4x smaller file, which TensorRT reads as pre-quantized
weights); one Q/DQ pair per tensor shared by its consumers (``DedicatedQDQPair`` off). Residual Adds stay float:
quantizing their inputs as well measured slightly worse on the demo model (box-decoding Adds must stay float). No
removable activations exist here (SiLU is Sigmoid·Mul), so ``QDQKeepRemovableActivations`` does not apply.

Kept in float (fp32), nothing quantized feeding them: the ``rgbir::TopKSparseAttention`` node (the TensorRT
plugin) and its inputs, Softmax, LayerNormalization, and the DFL with everything after it (box decoding, NMS).
Also float by default, because measuring said so: the Detect head's six output convolutions (box distributions
and class logits) — quantized, they were the largest share of the demo model's INT8 output error
(``sensitivity``) and about doubled its mAP50-95 loss on two synthetic validation sets. Nodes kept float read
the float tensor, not the output of a Q/DQ pair that ORT shares among all consumers of a quantized activation.
ORT's quantizer leaves ``model.functions`` and the custom node alone (checked after every run). Its
``quant_pre_process`` is not used: its ONNX Runtime optimisation step inlines the attention function, deleting
the node TensorRT maps to the plugin, and rgbir's exports already carry full shapes.

Calibration runs paired RGB + IR images through ``rgbir.trt.calibration`` (the run-time preprocessing), in
chunks (bounded memory), with TensorRT's histogram sizes (2048 bins; entropy compares 128-bin quantisations —
``quantize_static`` alone would give entropy 128 bins, the same as min/max). The ranges are computed once and
handed to ``quantize_static`` through its calibration cache, so ``--sensitivity`` re-quantizes without
re-calibrating.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx

from ..errors import RgbirError
from ..metadata import METADATA_KEY, ModelMetadata, check_choice, load_onnx, onnx_metadata
from ..ops import TOPK_SPARSE_ATTENTION as OP
from ..options import CommandLineOptions, option
from .check import DATA_MOVEMENT, QDQ_OPS, quantized_inputs

log = logging.getLogger(__name__)
METHODS = ("percentile", "entropy", "minmax")
PERCENTILE = 99.999  # percentile calibration keeps this share of |activation| values in range
QUANTIZED_OP_TYPES = ("Conv", "Gemm", "MatMul")
FLOAT_OP_TYPES = (OP.name, "Softmax", "LayerNormalization")
CHUNK = 4  # calibration batches held in memory at once (histograms: every tensor, ~270 MB per 640x640 pair)
ORT_OPTIONS = {
    "ActivationSymmetric": True,
    "WeightSymmetric": True,
    "QuantizeBias": False,
    "OpTypesToExcludeOutputQuantization": list(QUANTIZED_OP_TYPES),
    "QDQOpTypePerChannelSupportToAxis": {"Conv": 0},
    "AddQDQPairToWeight": False,
    "DedicatedQDQPair": False,
}


@dataclass
class QuantizeOptions(CommandLineOptions):
    """Where the calibration images come from and what stays in float."""

    calibration_data: str = option(flag="--calib", metavar="DATA", help="calibration images: data.yaml (train "
                                   "split, else val) or RGB_DIR,IR_DIR")
    method: str = option("percentile", choices=METHODS, help="activation ranges: percentile (99.999%% of |x|), "
                         "entropy (TensorRT's KL divergence; minutes: ONNX Runtime computes it in Python) or minmax")
    calibration_images: int = option(512, flag="--calib-images", parse=int, metavar="N",
                                     help="at most this many calibration pairs, spread over the set")
    skip_layers: tuple[str, ...] = option((), parse=lambda text: tuple(t.strip() for t in text.split(",") if t.strip()),
                                          metavar="NAME[,NAME…]", shown="none",
                                          help="keep these nodes or layers in float: node names or layer paths "
                                               "(model.22, model.42.cv2)")
    calibration_cache: Path | None = option(None, flag="--calib-cache", parse=Path, metavar="FILE",
                                            help="activation ranges (JSON): read if present, else written; skips "
                                                 "calibrating again")

    def validate(self) -> None:
        check_choice(self.method, METHODS, "calibration method")
        if self.calibration_images < 1:
            raise RgbirError(f"--calib-images {self.calibration_images} must be at least 1")


@dataclass
class QuantizeResult:
    path: Path
    metadata: ModelMetadata
    quantized: list[str]  # node names with INT8 inputs
    float_nodes: int  # Conv/Gemm/MatMul nodes kept in float (islands and --skip-layers)
    calibration_pairs: int  # 0 when the ranges came from the calibration cache
    size_bytes: int
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class GroupError:
    """How far one layer group, quantized alone, moves the outputs from fp32 (confident anchors only)."""

    group: str
    nodes: int
    box_error: float  # 1 - mean IoU of the boxes
    score_error: float  # mean |Δ| of the class scores

    @property
    def error(self) -> float:
        return self.box_error + self.score_error


# graph analysis ----------------------------------------------------------------------------------------------
def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    users: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    return users


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {output: node for node in graph.node for output in node.output}


def layer_paths(model: onnx.ModelProto) -> dict[str, str]:
    """Each node's layer path ('model.42.cv2.0.conv'): from its parameters' names, else inherited from the node
    that produces its first input with one (nodes are in topological order)."""
    initializers = {i.name for i in model.graph.initializer}
    producer = _producers(model.graph)
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
    producer, users = _producers(graph), _consumers(graph)
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
    producer = _producers(model.graph)
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


def _selection(model: onnx.ModelProto, options: QuantizeOptions) -> tuple[dict[str, str], set[str], list[str]]:
    """(layer paths, float islands, nodes to quantize): islands, head outputs and --skip-layers stay float."""
    paths = layer_paths(model)
    islands = float_islands(model)
    keep_float = islands | head_outputs(model) | skipped_nodes(model, options.skip_layers, paths)
    return paths, islands, quantizable_nodes(model, keep_float)


def kept_float(model: onnx.ModelProto, islands: set[str], quantized: list[str]) -> set[str]:
    """Nodes that compute in float: the islands and every Conv/Gemm/MatMul left out of ``quantized``."""
    return islands | {n.name for n in model.graph.node if n.op_type in QUANTIZED_OP_TYPES} - set(quantized)


def restore_float_inputs(model: onnx.ModelProto, names: set[str]) -> None:
    """Hand the nodes ``names`` the float tensor itself where ORT gave them the output of a shared Q → DQ pair
    (ORT routes every consumer of a quantized activation through its pair, not only the quantized ones)."""
    producer = _producers(model.graph)
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
    producer = _producers(model.graph)
    return [(n.name, i) for n in model.graph.node if n.name in node_names for i in quantized_inputs(n, producer)]


def _attention_nodes(model: onnx.ModelProto) -> int:
    return sum(n.domain == OP.domain and n.op_type == OP.name for n in model.graph.node)


# source model ------------------------------------------------------------------------------------------------
def load_fp32_export(path: str | Path) -> tuple[onnx.ModelProto, ModelMetadata]:
    """The fp32 rgbir export to quantize, or a one-line error saying which export to use instead."""
    model = load_onnx(path)
    meta = onnx_metadata(model, path)
    if meta.precision != "fp32" or any(n.op_type in QDQ_OPS for n in model.graph.node):
        raise RgbirError(f"{path} is {meta.precision}{' (already quantized)' if meta.precision == 'int8' else ''}: "
                         "quantize an fp32 export ('rgbir export --precision fp32')")
    if meta.attention_op == "inlined":
        raise RgbirError(f"{path} has its sparse attention inlined: quantize an export without --inline-attention, "
                         "so that the TopKSparseAttention node stays whole for TensorRT's plugin")
    return model, meta


# calibration -------------------------------------------------------------------------------------------------
def _ort_quantization():
    """onnxruntime.quantization, if it can hand precomputed ranges to quantize_static (calibration cache)."""
    from onnxruntime.quantization import calibrate

    if not hasattr(calibrate, "save_tensors_data"):
        import onnxruntime

        raise RgbirError(f"onnxruntime {onnxruntime.__version__} cannot pass calibration ranges to quantize_static "
                         "(no calibration cache): pip install -U onnxruntime")
    from onnxruntime import quantization

    return quantization


@contextlib.contextmanager
def _quiet_ort():
    """Hide what ORT's quantizer prints (histogram progress) and its advice to pre-process the model, which
    rgbir declines on purpose (see the module docstring)."""
    root = logging.getLogger()

    def keep(record: logging.LogRecord) -> bool:
        return "pre-process" not in record.getMessage()

    root.addFilter(keep)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.removeFilter(keep)


def _method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    return {"percentile": CalibrationMethod.Percentile, "entropy": CalibrationMethod.Entropy,
            "minmax": CalibrationMethod.MinMax}[name]


def _reader(batches: Iterable[dict[str, np.ndarray]]):
    """An ORT CalibrationDataReader over ready-made input batches."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(batches)

        def get_next(self):
            return next(self.batches, None)

    return Reader()


def _chunks(batches: Iterator, size: int) -> Iterator[list]:
    while chunk := [b for _, b in zip(range(size), batches)]:
        yield chunk


def calibration_inputs(options: QuantizeOptions, meta: ModelMetadata) -> tuple[int, Iterator[dict[str, np.ndarray]]]:
    """(pair count, input batches at the model's batch size), preprocessed as at run time."""
    from ..trt.calibration import calibration_batches, calibration_pairs

    batch = meta.batch or 1
    pairs = calibration_pairs(options.calibration_data, options.calibration_images)
    if len(pairs) < batch:
        raise RgbirError(f"{len(pairs)} calibration pairs cannot fill one batch of {batch}")
    return len(pairs) // batch * batch, calibration_batches(pairs, meta, batch)


def calibrate(model_path: Path, batches: Iterator[dict[str, np.ndarray]], method: str, workdir: Path):
    """Activation ranges (ORT ``TensorsData``) of every Conv/Gemm/MatMul tensor, collected chunk by chunk."""
    quantization = _ort_quantization()
    bins = {"entropy": {"num_bins": 2048, "num_quantized_bins": 128}, "percentile": {"num_bins": 2048}}
    calibrator = quantization.create_calibrator(
        model_path, list(QUANTIZED_OP_TYPES), augmented_model_path=str(workdir / "augmented.onnx"),
        calibrate_method=_method(method), providers=["CPUExecutionProvider"],
        extra_options={"symmetric": True, "percentile": PERCENTILE, **bins.get(method, {})})
    with _quiet_ort():
        for chunk in _chunks(batches, CHUNK):
            calibrator.collect_data(_reader(chunk))
        return calibrator.compute_data()


def _ranges_file(options: QuantizeOptions, model_path: Path, meta: ModelMetadata, workdir: Path) -> tuple[Path, int]:
    """A calibration cache holding the ranges (the user's, reused when present) and the pairs calibrated on."""
    quantization = _ort_quantization()
    cache = options.calibration_cache
    if cache is not None and Path(cache).is_file():
        log.info(f"activation ranges from {cache}")
        return Path(cache), 0
    count, batches = calibration_inputs(options, meta)
    ranges = calibrate(model_path, batches, options.method, workdir)
    path = Path(cache) if cache is not None else workdir / "ranges.json"
    quantization.calibrate.save_tensors_data(ranges, path)
    return path, count


# quantization ------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _workspace(source: Path) -> Iterator[tuple[Path, Path]]:
    """A temporary folder with a copy of the model to work on: ORT writes '<model>-inferred.onnx' beside the
    file it reads, which must not land next to the user's model (read-only folders, concurrent runs)."""
    with tempfile.TemporaryDirectory(prefix="rgbir-quantize-") as tmp:
        copy = Path(tmp) / "fp32.onnx"
        shutil.copyfile(source, copy)
        yield Path(tmp), copy


def _quantize(model_path: Path, output: Path, ranges: Path, method: str, nodes: list[str],
              keep_float: set[str]) -> onnx.ModelProto:
    """ORT's QDQ quantizer with TensorRT's settings on ``nodes`` (non-empty: ORT reads [] as 'all'); the
    ``keep_float`` nodes read float tensors."""
    quantization = _ort_quantization()
    if not nodes:
        raise RgbirError("nothing left to quantize: --skip-layers keeps every Conv/Gemm/MatMul in float")
    try:
        with _quiet_ort():
            quantization.quantize_static(
                str(model_path), str(output), None, quant_format=quantization.QuantFormat.QDQ,
                op_types_to_quantize=list(QUANTIZED_OP_TYPES), per_channel=True, reduce_range=False,
                activation_type=quantization.QuantType.QInt8, weight_type=quantization.QuantType.QInt8,
                nodes_to_quantize=nodes, calibrate_method=_method(method), extra_options=ORT_OPTIONS,
                calibration_cache_path=str(ranges))
    except (ValueError, KeyError) as e:  # a calibration cache of another model or method
        raise RgbirError(f"cannot quantize with the ranges in {ranges} ({str(e).splitlines()[0]}): delete the "
                         "calibration cache to calibrate again") from e
    model = onnx.load(str(output))
    restore_float_inputs(model, keep_float)
    return model


def _verify(source: onnx.ModelProto, quantized: onnx.ModelProto, islands: set[str]) -> None:
    """The plugin node and its function survived, and no Q/DQ feeds a node that must stay float."""
    if _attention_nodes(quantized) != _attention_nodes(source) or len(quantized.functions) != len(source.functions):
        raise RgbirError("ONNX Runtime's quantizer dropped the TopKSparseAttention node or its function: this "
                         "onnxruntime cannot quantize rgbir models; try another version")
    fed = qdq_fed(quantized, islands)
    if fed:
        node, tensor = fed[0]
        raise RgbirError(f"quantization put a Q/DQ in front of {node} (input {tensor}), which must stay float: "
                         f"keep its producer in float with --skip-layers")


def _int8_metadata(meta: ModelMetadata, options: QuantizeOptions, pairs: int) -> ModelMetadata:
    import onnxruntime

    quantization = {"tool": f"onnxruntime {onnxruntime.__version__}", "method": options.method,
                    "calibration_pairs": pairs, "skip_layers": list(options.skip_layers)}
    return replace(meta, precision="int8", source={**meta.source, "quantization": quantization})


def quantize_onnx(source: str | Path, output: str | Path, options: QuantizeOptions) -> QuantizeResult:
    """Calibrate ``source`` (an fp32 rgbir export) on paired images and write the INT8 Q/DQ model to ``output``;
    Each finished stage is logged."""
    options.validate()
    source, output = Path(source), Path(output)
    model, meta = load_fp32_export(source)
    _, islands, nodes = _selection(model, options)
    seconds: dict[str, float] = {}
    with _workspace(source) as (workdir, copy):
        start = time.perf_counter()
        ranges, pairs = _ranges_file(options, copy, meta, workdir)
        seconds["calibrate"] = time.perf_counter() - start
        if pairs:
            log.info(f"calibrated on {pairs} pairs ({options.method}) in {seconds['calibrate']:.1f} s")
        start = time.perf_counter()
        quantized = _quantize(copy, workdir / "int8.onnx", ranges, options.method, nodes,
                              kept_float(model, islands, nodes))
    _verify(model, quantized, islands)
    metadata = _int8_metadata(meta, options, pairs)
    onnx.helper.set_model_props(quantized, {METADATA_KEY: metadata.to_json()})
    output.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(quantized, str(output))
    seconds["quantize"] = time.perf_counter() - start
    log.info(f"quantized {len(nodes)} nodes in {seconds['quantize']:.1f} s")
    float_nodes = sum(n.op_type in QUANTIZED_OP_TYPES for n in model.graph.node) - len(nodes)
    return QuantizeResult(output, metadata, nodes, float_nodes, pairs, output.stat().st_size, seconds)


# per-layer sensitivity ---------------------------------------------------------------------------------------
def _xywh_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise IoU of two (4, N) xywh box arrays."""
    a0, a1 = a[:2] - a[2:] / 2, a[:2] + a[2:] / 2
    b0, b1 = b[:2] - b[2:] / 2, b[:2] + b[2:] / 2
    inter = np.clip(np.minimum(a1, b1) - np.maximum(a0, b0), 0, None).prod(0)
    union = a[2:].prod(0) + b[2:].prod(0) - inter
    return inter / np.maximum(union, 1e-9)


def output_error(reference: np.ndarray, candidate: np.ndarray, conf: float = 0.25) -> tuple[float, float]:
    """(1 - mean box IoU, mean |Δ class score|) of raw predictions (B, 4+nc, A), over the anchors whose best
    fp32 score reaches ``conf`` (the most confident anchor per image when none does)."""
    best = reference[:, 4:].max(1)  # (B, A)
    keep = (best >= conf) | (best == best.max(1, keepdims=True))
    ref, cand = reference.transpose(1, 0, 2)[:, keep], candidate.transpose(1, 0, 2)[:, keep]
    return 1.0 - float(_xywh_iou(ref[:4], cand[:4]).mean()), float(np.abs(ref[4:] - cand[4:]).mean())


def _predictions(model: str | Path | onnx.ModelProto, batches: list[dict[str, np.ndarray]]) -> np.ndarray:
    import onnxruntime as ort

    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(["predictions"], batch)[0] for batch in batches])


def sensitivity(source: str | Path, options: QuantizeOptions, batches: int = 8,
                groups: Iterable[str] | None = None) -> list[GroupError]:
    """Quantize one layer group ('model.N') at a time, everything else float, and measure how far each moves
    the outputs from fp32 on the first ``batches`` calibration batches; the first entry, 'all', quantizes
    every group (as ``quantize_onnx`` would). Worst groups first after 'all'."""
    options.validate()
    source = Path(source)
    model, meta = load_fp32_export(source)
    if "predictions" not in [o.name for o in model.graph.output]:
        raise RgbirError("--sensitivity compares raw predictions: use an export without --postprocess nms")
    paths, islands, nodes = _selection(model, options)
    by_group: dict[str, list[str]] = {}
    for name in nodes:
        by_group.setdefault(layer_group(paths.get(name, name)), []).append(name)
    wanted = list(by_group) if groups is None else list(groups)
    unknown = [g for g in wanted if g not in by_group]
    if unknown:
        raise RgbirError(f"no quantizable layer group {', '.join(unknown)}: choose from {', '.join(by_group)}")
    inputs = [b for _, b in zip(range(batches), calibration_inputs(options, meta)[1])]
    reference = _predictions(source, inputs)
    results = []
    with _workspace(source) as (workdir, copy):
        ranges, _ = _ranges_file(options, copy, meta, workdir)
        for group, members in [("all", nodes)] + [(g, by_group[g]) for g in wanted]:
            quantized = _quantize(copy, workdir / "int8.onnx", ranges, options.method, members,
                                  kept_float(model, islands, members))
            results.append(GroupError(group, len(members), *output_error(reference, _predictions(quantized, inputs))))
            log.info(f"{group:<10} {results[-1].error:.4f}")
    return results[:1] + sorted(results[1:], key=lambda r: -r.error)
