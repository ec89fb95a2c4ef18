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
(bindings 10.16+; set whenever present). TensorRT-RTX's parser is of the newest generation.

TensorRT-RTX (``features.rtx``) builds ahead of time without a GPU, strongly typed only, for a set of compute
capabilities; it has no NMS layer, no DLA, no timing cache that works without a GPU (and none that affects its
engines), and its engines load only in the release that built them: what needs those is refused before any work.

Without the plugin the parser inlines the attention's local function at every call site under the function's
own node names ("A node named nNN already exists"); rgbir inlines it first (``onnx.inliner``: names unique per
call site), so every layer keeps a distinct name.
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
    edition: str  # "standard" (TensorRT) | "rtx" (TensorRT-RTX)
    builder: bool  # trt.Builder: the full TensorRT (the lean/dispatch runtimes only deserialize)
    weak_typing: bool  # BuilderFlag.FP16 / BuilderFlag.INT8 (removed in 11.0)
    calibrators: bool  # trt.IInt8EntropyCalibrator2 (removed in 11.0)
    strongly_typed_flag: bool  # NetworkDefinitionCreationFlag.STRONGLY_TYPED opt-in (10.x; ignored in 11)
    plugin_override_flag: bool  # OnnxParserFlag.ENABLE_PLUGIN_OVERRIDE (bindings 10.16+)
    compute_targets: tuple[str, ...] = ()  # TensorRT-RTX: the compute capabilities it can target ("7.5", ...)

    @classmethod
    def of(cls, trt) -> TensorRTFeatures:
        from .registry import edition_of

        flags = getattr(trt, "BuilderFlag", None)
        creation = getattr(trt, "NetworkDefinitionCreationFlag", None)
        version = str(getattr(trt, "__version__", "0"))
        return cls(
            version=version,
            edition=edition_of(trt),
            builder=hasattr(trt, "Builder"),
            weak_typing=flags is not None and hasattr(flags, "FP16") and hasattr(flags, "INT8"),
            calibrators=hasattr(trt, "IInt8EntropyCalibrator2"),
            strongly_typed_flag=hasattr(creation, "STRONGLY_TYPED") and version_tuple(version) < (11,),
            plugin_override_flag=hasattr(getattr(trt, "OnnxParserFlag", None), "ENABLE_PLUGIN_OVERRIDE"),
            compute_targets=tuple(f"{m[2:-1]}.{m[-1]}" for m in getattr(getattr(trt, "ComputeCapability", None),
                                                                          "__members__", {}) if m[2:].isdigit()),
        )

    @property
    def rtx(self) -> bool:
        return self.edition == "rtx"

    @property
    def label(self) -> str:
        from .registry import edition_label

        return edition_label(self.edition, self.version)

    @property
    def plugin_beats_local_function(self) -> bool:
        """TensorRT >= 10.7's parser (and TensorRT-RTX's) can map a node to a registered plugin even when a local
        function has its name (from 10.15 only when asked: ``plugin_namespace`` on the node or
        ENABLE_PLUGIN_OVERRIDE)."""
        return self.rtx or version_tuple(self.version) >= (10, 7)


@dataclass
class BuildPlan:
    engine_precision: str  # "fp32" | "fp16" | "int8": what the engine computes in (recorded in the sidecar)
    network_flags: list[str] = field(default_factory=list)  # NetworkDefinitionCreationFlag names
    set_flags: list[str] = field(default_factory=list)  # BuilderFlag names to set
    clear_flags: list[str] = field(default_factory=list)  # BuilderFlag names to clear
    parser_flags: list[str] = field(default_factory=list)  # OnnxParserFlag names to set
    calibrate: bool = False  # attach the paired-image INT8 calibrator (TensorRT 10)
    strip_attention_function: bool = False  # remove the local function so the parser picks the plugin (< 10.7)
    inline_attention_function: bool = False  # no plugin: inline the function body with names unique per call site
    compute_capabilities: list[str] = field(default_factory=list)  # TensorRT-RTX targets, e.g. ["7.5"]; []: its own
    notes: list[str] = field(default_factory=list)


def _precision_error(features: TensorRTFeatures, precision: str, onnx_precision: str) -> RgbirError:
    why = "TensorRT-RTX builds networks strongly typed only" if features.rtx else \
        "BuilderFlag.FP16/INT8 and IInt8Calibrator were removed in 11.0"
    if precision == "int8":
        return RgbirError(
            f"{features.label} has no INT8 calibration ({why}): INT8 needs an explicitly quantised ONNX with "
            "QuantizeLinear/DequantizeLinear nodes: 'rgbir quantize model.onnx --calib data.yaml', then 'rgbir build "
            "model-int8.onnx' (--precision auto)")
    if onnx_precision == "int8":
        return RgbirError(
            f"this ONNX is INT8 (Q/DQ) and {features.label} builds it strongly typed, as the graph says (INT8 "
            "where the Q/DQ nodes are, FP32 elsewhere): build it with --precision auto")
    return RgbirError(
        f"{features.label} builds networks strongly typed ({why}), so this {onnx_precision} ONNX gives an "
        f"{onnx_precision} engine: for {precision}, export with 'rgbir export --precision fp16' and build that file "
        "with --precision auto")


def _refuse_for_rtx(options: EngineOptions, meta: ModelMetadata, features: TensorRTFeatures) -> None:
    """What TensorRT-RTX cannot do, named with the way out before any work is done."""
    if meta.postprocess.kind == "nms":
        raise RgbirError(f"{features.label} has no NMS layer (NonMaxSuppression has no runners there; "
                         "NVIDIA/TensorRT-RTX issue 5): export without --postprocess nms, and rgbir run decodes and "
                         "runs NMS on the host")
    refusals = (
        (options.dla_core is not None, "--dla-core: RTX GPUs have no DLA (Jetson: build with TensorRT 10)"),
        (options.hardware_compatible, "--hardware-compatible: a TensorRT-RTX engine runs on every GPU of its "
                                      "--compute-capability targets already"),
        (options.version_compatible, "--version-compatible: TensorRT-RTX engines load only in the release that "
                                     "built them"),
        (options.timing_cache is not None, "--timing-cache: TensorRT-RTX's timing cache needs a GPU at build time "
                                           "and does not change its engines"),
    )
    for refused, why in refusals:
        if refused:
            raise RgbirError(f"{features.label} cannot use {why}: drop it")


def plan_build(options: EngineOptions, meta: ModelMetadata, features: TensorRTFeatures,
               plugin_available: bool) -> BuildPlan:
    """Decide flags and steps for this TensorRT; raises ``RgbirError`` for what this version cannot do (first, so
    that an option it cannot honour at all is named before the option's own requirements)."""
    check_choice(options.precision, PRECISIONS, "precision")
    if not features.builder:
        raise RgbirError(f"this TensorRT ({features.version}) is a runtime-only flavour (lean/dispatch) and cannot "
                         "build engines: install the full TensorRT (pip install 'rgbir[trt]'; on Jetson, JetPack's "
                         "python3-libnvinfer) or TensorRT-RTX (pip install 'rgbir[rtx]')")
    if features.rtx:
        _refuse_for_rtx(options, meta, features)
    elif options.compute_capabilities is not None:
        raise RgbirError(f"--compute-capability chooses TensorRT-RTX's targets; {features.label} builds for the GPU "
                         "it runs on: drop it, or build with --tensorrt rtx")
    onnx_precision = meta.precision
    if onnx_precision == "int8":  # a Q/DQ graph ('rgbir quantize'): its scales are in the graph
        if options.calibration_data is not None or options.calibration_cache is not None:
            raise RgbirError("this ONNX is already INT8 (Q/DQ scales from 'rgbir quantize'): drop --calib and "
                             "--calib-cache")
        options = replace(options, precision="auto") if options.precision == "int8" else options
    wanted = onnx_precision if options.precision == "auto" else options.precision
    if wanted != onnx_precision and (not features.weak_typing or (wanted == "int8" and not features.calibrators)):
        raise _precision_error(features, wanted, onnx_precision)
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
    if features.rtx:
        plan.compute_capabilities = list(options.compute_capabilities or [])
        unknown = [cc for cc in plan.compute_capabilities if cc not in features.compute_targets]
        if unknown:
            raise RgbirError(f"{features.label} cannot target compute capability {', '.join(unknown)}: choose from "
                             f"{', '.join(features.compute_targets)}")
    if meta.attention_op == "function":
        if not plugin_available:
            plan.inline_attention_function = True
            plan.notes.append("no rgbir plugin library: the sparse attention is built from its standard-op "
                              "function body (TopK limited to K <= 3840); 'rgbir plugins compile' for the fused kernel")
        elif not features.plugin_beats_local_function:
            plan.strip_attention_function = True
            plan.notes.append(f"TensorRT {features.version} < 10.7 prefers local functions over plugins: the "
                              "function body is removed before parsing so the nodes map to the plugin")
        elif features.plugin_override_flag:
            plan.parser_flags.append("ENABLE_PLUGIN_OVERRIDE")
    return plan
