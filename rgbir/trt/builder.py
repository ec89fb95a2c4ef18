"""Build a TensorRT engine from an rgbir ONNX export (TensorRT 10.x and 11.x, TensorRT-RTX; one Python API).

Flow: read the ONNX metadata → plan the version-specific flags (``plan.py``) → register the plugin library →
parse → configure (precision, profile, workspace, timing cache, DLA, compatibility, calibrator, compute
capabilities, progress) → ``build_serialized_network`` → write the plan atomically, the timing cache and the
sidecar JSON → summarise. TensorRT-RTX builds without a GPU; its engine is compiled for the GPU when loaded, so
its summary comes from the network (inputs, outputs, layers), not from the engine.
"""

from __future__ import annotations

import json
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import RgbirError
from ..files import atomic_write, file_sha256
from ..metadata import load_onnx, onnx_metadata
from ..ops import TOPK_SPARSE_ATTENTION as OP
from ..preflight import writable_file
from .cuda import DeviceInfo
from .options import EngineOptions
from .plan import BuildPlan, TensorRTFeatures, plan_build
from .sidecar import RTX_DEFAULT_TARGETS, EngineMetadata, sidecar_path, write_sidecar


@dataclass
class TensorInfo:
    name: str
    mode: str  # "input" | "output"
    dtype: str
    shape: tuple[int, ...]  # -1 for dynamic dimensions


@dataclass
class BuildResult:
    engine: Path
    sidecar: Path
    seconds: float
    size: int
    precision: str
    tensorrt_version: str
    edition: str = "standard"  # "standard" | "rtx"
    tensors: list[TensorInfo] = field(default_factory=list)
    plugin_layers: dict[str, int] = field(default_factory=dict)  # plugin type → layers of the parsed network
    inspected: bool = True  # tensors and layers from the built engine (False: from the network, not inspectable)
    layers: int = 0
    layer_precisions: dict[str, int] = field(default_factory=dict)  # output datatype → layer count
    fallbacks: list[str] = field(default_factory=list)  # layers computing wider than the engine precision
    notes: list[str] = field(default_factory=list)


def parse_errors(parser, onnx_path: Path) -> RgbirError:
    """One message naming every failing node (``IParserError.node_name/node_operator``, TensorRT >= 8.6)."""
    problems = []
    for i in range(parser.num_errors):
        e = parser.get_error(i)
        node = e.node_name() or f"#{e.node()}"
        problems.append(f"node '{node}' ({e.node_operator()}): {e.desc()}")
    hint = ""
    if any(f"({OP.name})" in p for p in problems):
        hint = f"; the {OP.name} node needs the rgbir plugin: 'rgbir plugins compile' (or --plugin PATH)"
    return RgbirError(f"TensorRT cannot parse {onnx_path}: " + "; ".join(problems or ["unknown parser error"]) + hint)


def onnx_bytes(model, plan: BuildPlan) -> bytes:
    """The model as the parser should see it: without the attention's local function when the plugin must win,
    with the function inlined (node names unique per call site) when no plugin is there. ``model`` is loaded
    without its external data: the parser reads that from the file's folder."""
    if plan.strip_attention_function:
        kept = [f for f in model.functions if (f.domain, f.name) != (OP.domain, OP.name)]
        del model.functions[:]
        model.functions.extend(kept)
    if plan.inline_attention_function:
        from ..export.topk_function import inline_functions

        inline_functions(model)
    return model.SerializeToString()


def _flag(trt, name: str):
    return getattr(trt.BuilderFlag, name)


def configure(trt, builder, options: EngineOptions, plan: BuildPlan, meta, plugin_library: Path | None):
    """The IBuilderConfig for this plan (the timing cache is attached by ``_timing_cache``)."""
    config = builder.create_builder_config()
    for name in plan.set_flags:
        config.set_flag(_flag(trt, name))
    for name in plan.clear_flags:
        config.clear_flag(_flag(trt, name))
    if options.workspace_mib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    batch = options.profile_batch(meta)
    if batch is not None:
        h, w = meta.imgsz
        profile = builder.create_optimization_profile()
        for spec in meta.inputs:
            profile.set_shape(spec.name, *[(b, spec.channels, h, w) for b in (batch.min, batch.opt, batch.max)])
        config.add_optimization_profile(profile)
        if plan.calibrate:
            config.set_calibration_profile(profile)  # TensorRT 10 only (removed in 11.0)
    if options.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = options.dla_core
    if options.version_compatible and plugin_library is not None:
        config.plugins_to_serialize = [str(plugin_library)]  # the plan carries the plugin: no library needed to load
    if options.hardware_compatible:
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    if options.optimization_level is not None:
        config.builder_optimization_level = options.optimization_level
    if plan.compute_capabilities:  # TensorRT-RTX; none given: the edition's own set
        config.num_compute_capabilities = len(plan.compute_capabilities)
        for i, cc in enumerate(plan.compute_capabilities):
            config.set_compute_capability(getattr(trt.ComputeCapability, "SM" + cc.replace(".", "")), i)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # layer names and types for the summary
    return config


def _datatype(text: str) -> str | None:
    """Engine-inspector datatype text → fp32/fp16/bf16/int8/fp8, None for non-float tensors."""
    t = text.upper()
    for token, name in (("BF16", "bf16"), ("BFLOAT", "bf16"), ("FP32", "fp32"), ("FLOAT", "fp32"),
                        ("FP16", "fp16"), ("HALF", "fp16"), ("INT8", "int8"), ("FP8", "fp8")):
        if token in t:
            return name
    return None


WIDTH = {"int8": 1, "fp8": 1, "fp16": 2, "bf16": 2, "fp32": 4}


def layer_precisions(info: dict, precision: str) -> tuple[int, dict[str, int], list[str]]:
    """From the engine inspector's JSON: layer count, layers per output datatype, layers wider than ``precision``."""
    layers = [layer for layer in info.get("Layers", []) if isinstance(layer, dict)]
    counts: dict[str, int] = {}
    wider = []
    for layer in layers:
        # TensorRT 10: "Format/Datatype"; TensorRT 11 split it into "Format" and "DataType"
        types = {_datatype(o.get("Format/Datatype") or o.get("DataType") or o.get("Format", ""))
                 for o in layer.get("Outputs", []) if isinstance(o, dict)} - {None}
        for t in types:
            counts[t] = counts.get(t, 0) + 1
        if types and min(WIDTH[t] for t in types) > WIDTH[precision]:
            wider.append(layer.get("Name", "?"))
    return len(layers), counts, wider


def network_summary(trt, network) -> tuple[list[TensorInfo], int, dict[str, int]]:
    """I/O tensors, layer count and plugin layers (by plugin type) of the parsed network."""
    tensors = [TensorInfo(t.name, "input", t.dtype.name.lower(), tuple(t.shape))
               for t in map(network.get_input, range(network.num_inputs))]
    tensors += [TensorInfo(t.name, "output", t.dtype.name.lower(), tuple(t.shape))
                for t in map(network.get_output, range(network.num_outputs))]
    plugins: dict[str, int] = {}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type == trt.LayerType.PLUGIN_V3:
            layer.__class__ = trt.IPluginV3Layer  # the Python API's way to reach a layer's own interface
            core = layer.plugin.get_capability_interface(trt.PluginCapabilityType.CORE)
            kind = f"{core.plugin_namespace}::{core.plugin_name}"
            plugins[kind] = plugins.get(kind, 0) + 1
    return tensors, network.num_layers, plugins


def inspect_engine(trt, logger, plan_bytes, precision: str, host_code: bool):
    """I/O tensors and per-layer precisions of the built plan (deserialised on the build GPU)."""
    runtime = trt.Runtime(logger)
    runtime.engine_host_code_allowed = host_code  # version-compatible plans embed the lean runtime
    engine = runtime.deserialize_cuda_engine(plan_bytes)
    if engine is None:
        return [], 0, {}, []
    tensors = []
    context = engine.create_execution_context()  # at the profile's opt shapes: dynamic layers then have formats
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        shape = tuple(engine.get_tensor_shape(name))
        mode = "input" if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else "output"
        if mode == "input" and -1 in shape:
            context.set_input_shape(name, tuple(engine.get_tensor_profile_shape(name, 0)[1]))
        tensors.append(TensorInfo(name, mode, engine.get_tensor_dtype(name).name.lower(), shape))
    inspector = engine.create_engine_inspector()
    inspector.execution_context = context
    info = json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    return (tensors, *layer_precisions(info, precision))


def _timing_cache(config, options: EngineOptions, notes: list[str]):
    """Start from the timing cache file when there is one; a cache from another TensorRT/GPU is set aside."""
    if options.timing_cache is None:
        return None
    data = options.timing_cache.read_bytes() if options.timing_cache.is_file() else b""
    cache = config.create_timing_cache(data)  # None: not a timing cache of this TensorRT (its log says why)
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        notes.append(f"timing cache {options.timing_cache} is not usable here (made by another TensorRT or GPU, or "
                     "not a timing cache): starting a new one")
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


def _publish(engine_path: Path, serialized, meta: EngineMetadata) -> Path:
    """Engine then sidecar, each written whole and renamed into place; an old sidecar never describes a new
    engine (it is removed before the swap)."""
    try:
        atomic_write(engine_path, serialized, before_replace=lambda: sidecar_path(engine_path).unlink(missing_ok=True))
        return write_sidecar(engine_path, meta)
    except OSError as e:
        raise RgbirError(f"cannot write {engine_path} ({e.strerror}): free space or choose another -o") from e


def _build(builder, network, config, trt, console):
    """build_serialized_network with the progress bar; Ctrl-C asks TensorRT to stop (returns None, cancelled)."""
    from .progress import build_progress, make_progress_monitor

    progress = build_progress(console)
    monitor = make_progress_monitor(trt, progress)
    config.progress_monitor = monitor
    previous = signal.getsignal(signal.SIGINT)
    try:
        signal.signal(signal.SIGINT, lambda *_: setattr(monitor, "cancelled", True))
    except ValueError:  # not the main thread: Ctrl-C stays Python's
        previous = None
    try:
        with progress:
            serialized = builder.build_serialized_network(network, config)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    return serialized, monitor.cancelled


def build_engine(onnx_path: str | Path, engine_path: str | Path, options: EngineOptions | None = None, trt=None,
                 device: DeviceInfo | None = None, console=None) -> BuildResult:
    """Build ``engine_path`` (+ its sidecar) from ``onnx_path``; ``trt`` defaults to the installed TensorRT.
    Steps: check the outputs, plan, parse, configure and calibrate, build, publish, summarise."""
    from . import registry

    options = options or EngineOptions()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    model = load_onnx(onnx_path, load_external_data=False)
    meta = onnx_metadata(model, onnx_path)
    for path, what in ((engine_path, "engine"), (options.timing_cache, "timing cache"),
                       (options.calibration_cache, "calibration cache")):
        if path is not None:
            writable_file(path, what)  # fail before a long build, not after it
    trt = trt or registry.builder_module(options.edition)
    features = TensorRTFeatures.of(trt)
    plugin_library = registry.register_if_present(options.plugin_library, trt, required=False) \
        if meta.attention_op == "function" or options.plugin_library is not None else None
    plan = plan_build(options, meta, features, plugin_library is not None)
    device = None if features.rtx else _build_device(options, device)  # TensorRT-RTX needs no GPU to build

    start = time.perf_counter()
    notes = list(plan.notes)
    logger = trt.Logger(trt.Logger.WARNING)
    builder, network, _parser = parse(trt, logger, model, onnx_path, plan, options, features)  # kept alive
    config = configure(trt, builder, options, plan, meta, plugin_library)
    cache = _timing_cache(config, options, notes)
    with calibration(trt, config, options, meta, plan) as feeder:
        serialized, cancelled = _build(builder, network, config, trt, console)
    if cancelled:
        raise RgbirError("build cancelled (Ctrl-C): nothing was written")
    if feeder is not None and feeder.error is not None:
        raise feeder.error
    if serialized is None:
        turing = "; TensorRT-RTX cannot compile float32 matrix products for Turing (7.5), and rgbir's exports keep " \
                 "attention scores in float32 (fp16 exports too): target 8.0 or newer" \
            if "7.5" in plan.compute_capabilities else ""
        raise RgbirError(f"{features.label} could not build an engine from {onnx_path} (its log above says why)"
                         + turing)
    if feeder is not None:
        notes.append(f"INT8 calibrated on {feeder.fed} batches of {feeder.batch_size} pairs" if feeder.fed
                     else f"INT8 scales from the calibration cache {options.calibration_cache}")
    seconds = time.perf_counter() - start

    targets = (plan.compute_capabilities or list(RTX_DEFAULT_TARGETS)) if features.rtx else []
    sidecar = _publish(engine_path, serialized, EngineMetadata(
        model=replace(meta, precision=plan.engine_precision), tensorrt_version=features.version,
        gpu_name=device.name if device else "", compute_capability=device.compute_capability if device else (0, 0),
        build=options.to_dict(),
        version_compatible=options.version_compatible, hardware_compatible=options.hardware_compatible,
        plugin_library=str(plugin_library) if plugin_library else None,
        plugin_sha256=file_sha256(plugin_library) if plugin_library else None,
        plugins_embedded=options.version_compatible and plugin_library is not None,
        onnx_sha256=file_sha256(onnx_path), edition=features.edition, compute_targets=targets))
    _save_timing_cache(config, cache, options, notes)
    result = BuildResult(engine_path, sidecar, seconds, engine_path.stat().st_size, plan.engine_precision,
                         features.version, features.edition, notes=notes)
    tensors, layers, result.plugin_layers = network_summary(trt, network)
    if features.rtx:  # the plan is compiled for the GPU when it is loaded: the network is all there is to show
        result.tensors, result.layers, result.inspected = tensors, layers, False
        notes.append(f"built ahead of time for compute capabilities {', '.join(targets)}: TensorRT-RTX compiles it "
                     "for the GPU when it is loaded (JIT), so the tensors and layers shown are the network's and the "
                     "layers' precisions are only known there")
    else:
        result.tensors, result.layers, result.layer_precisions, result.fallbacks = inspect_engine(
            trt, logger, serialized, plan.engine_precision, options.version_compatible)
    return result


def _build_device(options: EngineOptions, device: DeviceInfo | None) -> DeviceInfo:
    """The GPU the engine is built on (and tied to), checked against what the options ask of it."""
    if device is None:
        from .cuda import device_info

        device = device_info()
    if options.hardware_compatible and (device.compute_capability < (8, 0) or device.integrated):
        raise RgbirError(f"hardware-compatible engines need a discrete Ampere or newer GPU to build on, and this is "
                         f"{device.name}: drop --hardware-compatible")
    return device


def parse(trt, logger, model, onnx_path: Path, plan: BuildPlan, options: EngineOptions, features):
    """(builder, network, parser) with the ONNX parsed as the plan says; the parser owns the network's weights,
    so it must live until the build is done."""
    builder = trt.Builder(logger)
    if options.dla_core is not None and options.dla_core >= builder.num_DLA_cores:
        # DLA depends on the release and platform: 10.x to 10.7 on Jetson Orin, none in 11.0-11.3, 11.4.1+ on AGX
        # Orin with JetPack 7.2.2; the builder knows what this machine has
        raise RgbirError(f"DLA core {options.dla_core} is not available here (TensorRT {features.version} sees "
                         f"{builder.num_DLA_cores} DLA cores): drop --dla-core, or build on a Jetson Orin with a "
                         "TensorRT that supports DLA there (JetPack 6: TensorRT 10.x)")
    flags = 0
    for name in plan.network_flags:
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    for name in plan.parser_flags:
        parser.set_flag(getattr(trt.OnnxParserFlag, name))
    if not parser.parse(onnx_bytes(model, plan), str(onnx_path)):
        raise parse_errors(parser, onnx_path)
    return builder, network, parser


@contextmanager
def calibration(trt, config, options: EngineOptions, meta, plan: BuildPlan):
    """The INT8 calibrator attached to ``config`` for the build (TensorRT 10 only; removed in 11.0), yielding its
    feeder (None when the plan does not calibrate); its device buffers are freed when the build is done."""
    if not plan.calibrate:
        yield None
        return
    from .calibration import CalibrationFeeder, DeviceUploader, calibration_batches, calibration_pairs, make_calibrator

    profile = options.profile_batch(meta)
    batch_size = profile.opt if profile else meta.batch  # calibration runs at the profile's opt shape
    pairs = calibration_pairs(options.calibration_data, options.calibration_images, batch_size) \
        if options.calibration_data else []
    uploader = DeviceUploader()
    feeder = CalibrationFeeder(calibration_batches(pairs, meta, batch_size), batch_size, options.calibration_cache,
                               uploader)
    config.int8_calibrator = make_calibrator(trt, feeder)
    try:
        yield feeder
    finally:
        uploader.free()


def _save_timing_cache(config, cache, options: EngineOptions, notes: list[str]) -> None:
    """Keep what this build timed for the next one; a failure costs only that head start."""
    timing = config.get_timing_cache() if cache is not None else None
    if timing is not None:
        try:
            atomic_write(options.timing_cache, timing.serialize())
        except OSError as e:  # the engine is built and written
            notes.append(f"could not save the timing cache {options.timing_cache}: {e.strerror}")
