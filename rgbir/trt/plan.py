"""Which TensorRT API a build uses: the 10.x/11.x differences decided in one pure function.

TensorRT 11 removed the weak-typing precision flags (``BuilderFlag.FP16``, ``BuilderFlag.INT8``, ...) and the
INT8 calibrators (``IBuilderConfig.int8_calibrator``): every network is strongly typed, so precision comes from
the ONNX (an fp16 export, or Q/DQ nodes for INT8). TensorRT 10 still has both, plus the opt-in
``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` (deprecated and ignored in 11, so not set there).

An INT8 ONNX with QuantizeLinear/DequantizeLinear nodes ('rgbir quantize', metadata precision "int8") is built as
it is, strongly typed, on both: explicit quantization needs no precision flag and no calibrator (TensorRT's
"Explicit Quantization": use it with strong typing). On TensorRT 10, ``--precision fp16`` builds it weakly typed
with the INT8 and FP16 flags instead, so that the layers without Q/DQ may run in FP16 rather than FP32.

How the ONNX parser imports a node that has both a local function and a registered plugin depends on its
generation (onnx-tensorrt sources, TensorRT changelog): 9.0-10.6 the function always wins, so it is removed for
the node to reach the plugin; 10.7-10.14 the plugin wins; 10.15+ and 11.x the plugin wins only if the node carries
a ``plugin_namespace`` attribute (rgbir's exports do) or ``OnnxParserFlag.ENABLE_PLUGIN_OVERRIDE`` is set
(bindings 10.16+; set whenever present).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..errors import RgbirError
from ..metadata import ModelMetadata, check_choice
from .options import PRECISIONS, EngineOptions
from .sidecar import version_tuple


@dataclass(frozen=True)
class TensorRTFeatures:
    """What the installed TensorRT Python module offers, read from the module itself."""

    version: str
    builder: bool  # trt.Builder: the full TensorRT (the lean/dispatch runtimes only deserialize)
    weak_typing: bool  # BuilderFlag.FP16 / BuilderFlag.INT8 (removed in 11.0)
    calibrators: bool  # trt.IInt8EntropyCalibrator2 (removed in 11.0)
    strongly_typed_flag: bool  # NetworkDefinitionCreationFlag.STRONGLY_TYPED opt-in (10.x; ignored in 11)
    plugin_override_flag: bool  # OnnxParserFlag.ENABLE_PLUGIN_OVERRIDE (bindings 10.16+)

    @classmethod
    def of(cls, trt) -> TensorRTFeatures:
        flags = getattr(trt, "BuilderFlag", None)
        creation = getattr(trt, "NetworkDefinitionCreationFlag", None)
        version = str(getattr(trt, "__version__", "0"))
        return cls(
            version=version,
            builder=hasattr(trt, "Builder"),
            weak_typing=flags is not None and hasattr(flags, "FP16") and hasattr(flags, "INT8"),
            calibrators=hasattr(trt, "IInt8EntropyCalibrator2"),
            strongly_typed_flag=hasattr(creation, "STRONGLY_TYPED") and version_tuple(version) < (11,),
            plugin_override_flag=hasattr(getattr(trt, "OnnxParserFlag", None), "ENABLE_PLUGIN_OVERRIDE"),
        )

    @property
    def plugin_beats_local_function(self) -> bool:
        """TensorRT >= 10.7's parser can map a node to a registered plugin even when a local function has its
        name (from 10.15 only when asked: ``plugin_namespace`` on the node or ENABLE_PLUGIN_OVERRIDE)."""
        return version_tuple(self.version) >= (10, 7)


@dataclass
class BuildPlan:
    engine_precision: str  # "fp32" | "fp16" | "int8": what the engine computes in (recorded in the sidecar)
    network_flags: list[str] = field(default_factory=list)  # NetworkDefinitionCreationFlag names
    set_flags: list[str] = field(default_factory=list)  # BuilderFlag names to set
    clear_flags: list[str] = field(default_factory=list)  # BuilderFlag names to clear
    parser_flags: list[str] = field(default_factory=list)  # OnnxParserFlag names to set
    calibrate: bool = False  # attach the paired-image INT8 calibrator (TensorRT 10)
    strip_attention_function: bool = False  # remove the local function so the parser picks the plugin (< 10.7)
    notes: list[str] = field(default_factory=list)


def _precision_error(trt_version: str, precision: str, onnx_precision: str) -> RgbirError:
    if precision == "int8":
        return RgbirError(
            f"TensorRT {trt_version} has no INT8 calibration (BuilderFlag.INT8 and IInt8Calibrator were removed in "
            "11.0): INT8 needs an explicitly quantised ONNX with QuantizeLinear/DequantizeLinear nodes: 'rgbir "
            "quantize model.onnx --calib data.yaml', then 'rgbir build model-int8.onnx' (--precision auto)")
    if onnx_precision == "int8":
        return RgbirError(
            f"this ONNX is INT8 (Q/DQ) and TensorRT {trt_version} builds it strongly typed, as the graph says (INT8 "
            "where the Q/DQ nodes are, FP32 elsewhere): build it with --precision auto")
    return RgbirError(
        f"TensorRT {trt_version} builds networks strongly typed (BuilderFlag.FP16 was removed in 11.0), so this "
        f"{onnx_precision} ONNX gives an {onnx_precision} engine: for {precision}, export with "
        "'rgbir export --precision fp16' "
        "and build that file with --precision auto")


def plan_build(options: EngineOptions, meta: ModelMetadata, features: TensorRTFeatures,
               plugin_available: bool) -> BuildPlan:
    """Decide flags and steps for this TensorRT; raises ``RgbirError`` for what this version cannot do (first, so
    that an option it cannot honour at all is named before the option's own requirements)."""
    check_choice(options.precision, PRECISIONS, "precision")
    if not features.builder:
        raise RgbirError(f"this TensorRT ({features.version}) is a runtime-only flavour (lean/dispatch) and cannot "
                         "build engines: install the full TensorRT (pip install 'rgbir[trt]'; on Jetson, JetPack's "
                         "python3-libnvinfer)")
    onnx_precision = meta.precision
    if onnx_precision == "int8":  # a Q/DQ graph ('rgbir quantize'): its scales are in the graph
        if options.calibration_data is not None or options.calibration_cache is not None:
            raise RgbirError("this ONNX is already INT8 (Q/DQ scales from 'rgbir quantize'): drop --calib and "
                             "--calib-cache")
        options = replace(options, precision="auto") if options.precision == "int8" else options
    wanted = onnx_precision if options.precision == "auto" else options.precision
    if wanted != onnx_precision and (not features.weak_typing or (wanted == "int8" and not features.calibrators)):
        raise _precision_error(features.version, wanted, onnx_precision)
    options.validate(meta)
    if wanted == onnx_precision:
        # precision exactly as the graph says: strongly typed (opt-in flag on 10.x, always on in 11.x)
        plan = BuildPlan(wanted, network_flags=["STRONGLY_TYPED"] if features.strongly_typed_flag else [])
    elif onnx_precision == "int8":  # fp16 on TensorRT 10: the Q/DQ graph weakly typed, its float layers in FP16
        plan = BuildPlan("int8", set_flags=["INT8", "FP16"])
        plan.notes.append("weakly typed Q/DQ graph (TensorRT 10): INT8 where the Q/DQ nodes are (no calibrator), "
                          "FP16 allowed elsewhere, softmax and normalisation included")
    elif wanted == "fp16":
        plan = BuildPlan("fp16", set_flags=["FP16"])
        plan.notes.append("weakly typed FP16 (TensorRT 10 BuilderFlag.FP16): TensorRT may also run softmax and "
                          "normalisation in FP16; an 'rgbir export --precision fp16' model keeps them in FP32")
    else:  # int8 on TensorRT 10: implicit quantisation, FP16 for the layers INT8 cannot run
        plan = BuildPlan("int8", set_flags=["INT8", "FP16"], calibrate=True)
    if plan.engine_precision == "fp32":
        plan.clear_flags.append("TF32")  # TF32 is on by default and would miss the fp32 parity tolerances
    if options.dla_core is not None:
        plan.set_flags.append("GPU_FALLBACK")
    if options.version_compatible:
        plan.set_flags.append("VERSION_COMPATIBLE")
    if meta.attention_op == "function":
        if not plugin_available:
            plan.notes.append("no rgbir plugin library: the sparse attention is built from its standard-op "
                              "function body (TopK limited to K <= 3840); 'rgbir plugins compile' for the fused kernel")
        elif not features.plugin_beats_local_function:
            plan.strip_attention_function = True
            plan.notes.append(f"TensorRT {features.version} < 10.7 prefers local functions over plugins: the "
                              "function body is removed before parsing so the nodes map to the plugin")
        elif features.plugin_override_flag:
            plan.parser_flags.append("ENABLE_PLUGIN_OVERRIDE")
    return plan
