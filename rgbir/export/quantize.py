"""``quantize_onnx``: an fp32 rgbir export → an INT8 Q/DQ ONNX, the only INT8 TensorRT 11 (JetPack 7) builds.

Tool: ONNX Runtime's own quantization tooling — its calibrators (``create_calibrator``) and ``quantize_static``
in ``QuantFormat.QDQ`` — because ONNX Runtime is already a dependency and also runs the result on the CPU, where
its accuracy is measured. NVIDIA ModelOpt drives this same ORT quantizer for INT8 but pulls in torch, cupy and
onnx-graphsurgeon; the settings below are the TensorRT ones ModelOpt passes it.

Placement, as TensorRT fuses it (which nodes, and what stays float: ``qdq_placement.py``): activations per
tensor, weights per output channel (axis 0 of Conv, ORT's transB-aware axis for Gemm), never on the outputs of
Conv/Gemm/MatMul (``OpTypesToExcludeOutputQuantization``), so TensorRT fuses the activation and the next layer's
Quantize into each convolution. Symmetric INT8 everywhere (zero point 0; ``ActivationSymmetric``,
``WeightSymmetric``); biases stay float (``QuantizeBias`` off: TensorRT has no INT32 DequantizeLinear); weights are
stored as INT8 initializers behind a DequantizeLinear (``AddQDQPairToWeight`` off: a 4x smaller file, which TensorRT
reads as pre-quantized weights); one Q/DQ pair per tensor shared by its consumers (``DedicatedQDQPair`` off).
Residual Adds stay float: quantizing their inputs as well measured slightly worse on the demo model (box-decoding
Adds must stay float). No removable activations exist here (SiLU is Sigmoid·Mul), so
``QDQKeepRemovableActivations`` does not apply. ORT's quantizer leaves ``model.functions`` and the custom node
alone (checked after every run). Its ``quant_pre_process`` is not used: its ONNX Runtime optimisation step inlines
the attention function, deleting the node TensorRT maps to the plugin, and rgbir's exports already carry full
shapes.

The activation ranges come from paired calibration images (``activation_ranges.py``), computed once per run and
reused by every quantization of ``--sensitivity``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
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
from ..options import CommandLineOptions, option
from .activation_ranges import METHODS, calibration_inputs, calibration_method, ort_quantization, quiet_ort, ranges_file
from .graph import QDQ_OPS
from .qdq_placement import (
    QUANTIZED_OP_TYPES,
    attention_nodes,
    kept_float,
    layer_group,
    qdq_fed,
    restore_float_inputs,
    select_nodes,
)

log = logging.getLogger(__name__)
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
    quantization = ort_quantization()
    if not nodes:
        raise RgbirError("nothing left to quantize: --skip-layers keeps every Conv/Gemm/MatMul in float")
    try:
        with quiet_ort():
            quantization.quantize_static(
                str(model_path), str(output), None, quant_format=quantization.QuantFormat.QDQ,
                op_types_to_quantize=list(QUANTIZED_OP_TYPES), per_channel=True, reduce_range=False,
                activation_type=quantization.QuantType.QInt8, weight_type=quantization.QuantType.QInt8,
                nodes_to_quantize=nodes, calibrate_method=calibration_method(method), extra_options=ORT_OPTIONS,
                calibration_cache_path=str(ranges))
    except (ValueError, KeyError) as e:  # a calibration cache of another model or method
        raise RgbirError(f"cannot quantize with the ranges in {ranges} ({str(e).splitlines()[0]}): delete the "
                         "calibration cache to calibrate again") from e
    model = onnx.load(str(output))
    restore_float_inputs(model, keep_float)
    return model


def _verify(source: onnx.ModelProto, quantized: onnx.ModelProto, islands: set[str]) -> None:
    """The plugin node and its function survived, and no Q/DQ feeds a node that must stay float."""
    if attention_nodes(quantized) != attention_nodes(source) or len(quantized.functions) != len(source.functions):
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
    _, islands, nodes = select_nodes(model, options.skip_layers)
    seconds: dict[str, float] = {}
    with _workspace(source) as (workdir, copy):
        start = time.perf_counter()
        ranges, pairs = ranges_file(options.calibration_cache, options.method, copy, workdir,
                                    lambda: calibration_inputs(options.calibration_data, options.calibration_images,
                                                               meta))
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
    paths, islands, nodes = select_nodes(model, options.skip_layers)
    by_group: dict[str, list[str]] = {}
    for name in nodes:
        by_group.setdefault(layer_group(paths.get(name, name)), []).append(name)
    wanted = list(by_group) if groups is None else list(groups)
    unknown = [g for g in wanted if g not in by_group]
    if unknown:
        raise RgbirError(f"no quantizable layer group {', '.join(unknown)}: choose from {', '.join(by_group)}")
    count, stream = calibration_inputs(options.calibration_data, options.calibration_images, meta)
    inputs = list(itertools.islice(stream, batches))  # preprocessed once: compared here, then calibrated on
    reference = _predictions(source, inputs)
    results = []
    with _workspace(source) as (workdir, copy):
        ranges, _ = ranges_file(options.calibration_cache, options.method, copy, workdir,
                                lambda: (count, itertools.chain(inputs, stream)))
        for group, members in [("all", nodes)] + [(g, by_group[g]) for g in wanted]:
            quantized = _quantize(copy, workdir / "int8.onnx", ranges, options.method, members,
                                  kept_float(model, islands, members))
            results.append(GroupError(group, len(members), *output_error(reference, _predictions(quantized, inputs))))
            log.info(f"{group:<10} {results[-1].error:.4f}")
    return results[:1] + sorted(results[1:], key=lambda r: -r.error)
