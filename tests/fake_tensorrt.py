"""A stand-in for the TensorRT Python module's build API, version 10.x or 11.x, for testing rgbir's branching.

No engine can be built on our machines, so ``rgbir.trt`` is exercised against this: it implements the
documented surface that rgbir calls (names from the TensorRT 10/11 Python API reference) and records every
call. The 11.x flavour lacks exactly what 11.0 removed (BuilderFlag.FP16/INT8/..., IInt8EntropyCalibrator2,
IBuilderConfig.int8_calibrator / set_calibration_profile), so code that touches them fails as it would there.
The "engine" it builds is a JSON record of the configuration, not a plan.

Where the real API returns None, so does the fake: a repeated ``load_library`` of a library whose plugins are
registered, ``create_timing_cache`` on bytes that are not a timing cache. Its parser follows the three parser
generations for a node that has both a local function and a registered plugin (REFERENCE.md §2): < 10.7 the
function wins; 10.7-10.14 the plugin wins; 10.15+ the plugin wins only if the node has ``plugin_namespace`` or
the parser flag ``ENABLE_PLUGIN_OVERRIDE`` (bindings 10.16+) is set. ``tests/test_fakes.py`` checks the
runtime-side names against the real lean bindings and lists where each builder-side name is documented.
"""

from __future__ import annotations

import enum
import json
import types


class _Error:
    def __init__(self, node, name, op, desc):
        self._node, self._name, self._op, self._desc = node, name, op, desc

    def node(self):
        return self._node

    def node_name(self):
        return self._name

    def node_operator(self):
        return self._op

    def desc(self):
        return self._desc

    def code(self):
        return 8  # ErrorCode.UNSUPPORTED_NODE


TIMING_CACHE_MAGIC = b"TRTC"  # the fake's stand-in for TensorRT's kMAGIC_TAG


class PluginRegistry:
    """TensorRT's process-wide plugin registry: a library registers the rgbir creator; loading a library whose
    creator is already registered returns None (IPluginRegistry::loadLibrary returns nullptr)."""

    def __init__(self, calls: list):
        self._calls, self._creators = calls, {}

    def load_library(self, path):
        self._calls.append(("load_library", path))
        from rgbir.ops import TOPK_SPARSE_ATTENTION as OP

        key = (OP.name, OP.version, OP.domain)
        if key in self._creators:
            return None
        self._creators[key] = types.SimpleNamespace(name=OP.name, plugin_version=OP.version,
                                                   plugin_namespace=OP.domain, library=path)
        return object()

    def get_creator(self, name, version, namespace=""):
        return self._creators.get((name, version, namespace))

    @property
    def all_creators(self):
        return list(self._creators.values())


def make(version: str, progress_base=None, fail_parse_on: str | None = None, dla_cores: int = 0):
    """A fake ``tensorrt`` module of this version; ``fail_parse_on``: op_type the parser cannot import;
    ``dla_cores``: 0 as on a desktop GPU, 2 for a Jetson AGX Orin on TensorRT 10."""
    import onnx

    from rgbir.ops import TOPK_SPARSE_ATTENTION as OP

    numbers = tuple(int(p) for p in version.split(".")[:2])
    major = numbers[0]
    calls: list[tuple] = []
    registry = PluginRegistry(calls)
    flag_names = ["TF32", "GPU_FALLBACK", "VERSION_COMPATIBLE", "DEBUG", "REFIT"]
    if major < 11:
        flag_names += ["FP16", "INT8", "BF16", "FP8", "OBEY_PRECISION_CONSTRAINTS", "DIRECT_IO"]
    BuilderFlag = enum.IntEnum("BuilderFlag", flag_names)
    # values as in NvInfer.h (10.3: kEXPLICIT_BATCH = 0, kSTRONGLY_TYPED = 1; both deprecated and ignored in 11)
    NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag",
                                                 {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1})
    parser_flags = {"NATIVE_INSTANCENORM": 0}
    if numbers >= (10, 16):
        parser_flags["ENABLE_PLUGIN_OVERRIDE"] = 2
    OnnxParserFlag = enum.IntEnum("OnnxParserFlag", parser_flags)
    MemoryPoolType = enum.IntEnum("MemoryPoolType", ["WORKSPACE", "DLA_MANAGED_SRAM"])
    DeviceType = enum.IntEnum("DeviceType", ["GPU", "DLA"])
    HardwareCompatibilityLevel = enum.IntEnum("HardwareCompatibilityLevel", ["NONE", "AMPERE_PLUS"])
    ProfilingVerbosity = enum.IntEnum("ProfilingVerbosity", ["LAYER_NAMES_ONLY", "DETAILED", "NONE"])
    LayerInformationFormat = enum.IntEnum("LayerInformationFormat", ["ONELINE", "JSON"])
    TensorIOMode = enum.IntEnum("TensorIOMode", ["NONE", "INPUT", "OUTPUT"])

    class Logger:
        WARNING = 2

        def __init__(self, severity=2):
            self.min_severity = severity

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, min, opt, max):
            self.shapes[name] = (tuple(min), tuple(opt), tuple(max))
            calls.append(("profile.set_shape", name, tuple(min), tuple(opt), tuple(max)))

    class TimingCache:
        def __init__(self, data):
            self.data = bytes(data)

        def serialize(self):
            return (self.data or TIMING_CACHE_MAGIC) + b"+timed"

    config_attrs = ["flags", "pools", "profiles", "cache", "default_device_type", "DLA_core", "plugins_to_serialize",
                    "hardware_compatibility_level", "builder_optimization_level", "profiling_verbosity",
                    "progress_monitor"]
    if major < 11:
        config_attrs += ["int8_calibrator", "calibration_profile"]

    class Config:
        __slots__ = config_attrs

        def __init__(self):
            self.flags, self.pools, self.profiles, self.cache = {"TF32"}, {}, [], None
            self.progress_monitor = None
            if major < 11:
                self.int8_calibrator = None

        def set_flag(self, flag):
            self.flags.add(BuilderFlag(flag).name)

        def clear_flag(self, flag):
            self.flags.discard(BuilderFlag(flag).name)

        def set_memory_pool_limit(self, pool, size):
            self.pools[MemoryPoolType(pool).name] = size

        def add_optimization_profile(self, profile):
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def create_timing_cache(self, data):
            if data and not bytes(data).startswith(TIMING_CACHE_MAGIC):
                return None  # TensorRT logs "magicTagRead == kMAGIC_TAG failed" and returns nullptr
            return TimingCache(data)

        def set_timing_cache(self, cache, ignore_mismatch):
            if cache.data.startswith(TIMING_CACHE_MAGIC + b"foreign") and not ignore_mismatch:
                return False  # a cache from another TensorRT/GPU
            self.cache = cache
            return True

        def get_timing_cache(self):
            return self.cache

        if major < 11:
            def set_calibration_profile(self, profile):
                self.calibration_profile = profile

    class Network:
        num_inputs = num_outputs = num_layers = 0  # the fake records what was parsed, not a network

        def __init__(self, flags):
            self.flags = flags

        def get_input(self, index):
            return None  # as the real network answers for an index past its tensors or layers

        get_output = get_layer = get_input

    class OnnxParser:
        def __init__(self, network, logger):
            self.network, self.errors, self.flags = network, [], set()

        def set_flag(self, flag):
            self.flags.add(OnnxParserFlag(flag).name)

        def _importer(self, node, functions) -> str:
            """How this parser generation imports a custom node: 'plugin', 'function' or '' (no importer)."""
            registered = module.get_plugin_registry().get_creator(node.op_type, "1", node.domain) is not None
            has_function = (node.domain, node.op_type) in functions
            if numbers < (10, 7):
                plugin_first = False
            elif numbers < (10, 15):
                plugin_first = True
            else:
                plugin_first = "ENABLE_PLUGIN_OVERRIDE" in self.flags or \
                    any(a.name == "plugin_namespace" for a in node.attribute)
            if has_function and not (plugin_first and registered):
                return "function"
            return "plugin" if registered else ""

        def parse(self, model, path=None):
            proto = onnx.load_from_string(bytes(model))
            functions = {(f.domain, f.name) for f in proto.functions}
            self.network.functions = [f.name for f in proto.functions]
            self.network.importers = {}
            calls.append(("parse", path, tuple(self.network.functions), tuple(sorted(self.flags))))
            for i, node in enumerate(proto.graph.node):
                importer = self._importer(node, functions) if node.domain == OP.domain else "builtin"
                self.network.importers[node.name] = importer
                if node.op_type == fail_parse_on or not importer:
                    self.errors.append(_Error(i, node.name, node.op_type, "Plugin not found"))
            return not self.errors

        @property
        def num_errors(self):
            return len(self.errors)

        def get_error(self, i):
            return self.errors[i]

    class Builder:
        num_DLA_cores = dla_cores

        def __init__(self, logger):
            pass

        def create_network(self, flags=0):
            calls.append(("create_network", flags))
            return Network(flags)

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            monitor = config.progress_monitor
            if monitor is not None:  # what TensorRT reports: nested phases with steps
                monitor.phase_start("Building engine", None, 2)  # (phase_name, parent_phase, num_steps)
                monitor.phase_start("Tactic timing", "Building engine", 3)
                for step in range(3):
                    if not monitor.step_complete("Tactic timing", step):
                        return None
                monitor.phase_finish("Tactic timing")
                monitor.step_complete("Building engine", 1)
                monitor.phase_finish("Building engine")
            calibrator = getattr(config, "int8_calibrator", None)
            batches = []
            if calibrator is not None and calibrator.read_calibration_cache() is None:
                names = list(config.profiles[0].shapes) if config.profiles else ["rgb", "ir"]
                while (pointers := calibrator.get_batch(names)) is not None:
                    batches.append(pointers)
                calibrator.write_calibration_cache(b"calibration-table")
            record = {"version": version, "network_flags": network.flags, "functions": network.functions,
                      "importers": network.importers,
                      "flags": sorted(config.flags), "pools": config.pools,
                      "profiles": [p.shapes for p in config.profiles],
                      "calibration_batches": len(batches),
                      "dla": [getattr(config, "default_device_type", None), getattr(config, "DLA_core", None)],
                      "plugins_to_serialize": getattr(config, "plugins_to_serialize", None),
                      "hardware": getattr(config, "hardware_compatibility_level", None),
                      "timing_cache": config.cache.data.decode() if config.cache else None}
            return json.dumps(record, default=str).encode()

    class Engine:
        def __init__(self, record):
            self._record = record
            self.num_io_tensors = 0

        def create_execution_context(self):
            return types.SimpleNamespace(set_input_shape=lambda name, shape: True)

        def create_engine_inspector(self):
            layers = {"Layers": [{"Name": "conv", "Outputs": [{"Format/Datatype": "Channel major FP16 format"}]},
                                 {"Name": "softmax", "Outputs": [{"Format/Datatype": "Row major linear FP32"}]}]}
            return types.SimpleNamespace(execution_context=None, get_engine_information=lambda fmt: json.dumps(layers))

    class Runtime:
        def __init__(self, logger):
            self.engine_host_code_allowed = False

        def deserialize_cuda_engine(self, data):
            return Engine(json.loads(bytes(data)))

    module = types.SimpleNamespace(
        __version__=version, __name__="tensorrt", calls=calls, Logger=Logger, Builder=Builder, OnnxParser=OnnxParser,
        Runtime=Runtime, BuilderFlag=BuilderFlag, NetworkDefinitionCreationFlag=NetworkDefinitionCreationFlag,
        OnnxParserFlag=OnnxParserFlag,
        MemoryPoolType=MemoryPoolType, DeviceType=DeviceType, HardwareCompatibilityLevel=HardwareCompatibilityLevel,
        ProfilingVerbosity=ProfilingVerbosity, LayerInformationFormat=LayerInformationFormat,
        TensorIOMode=TensorIOMode, get_plugin_registry=lambda: registry,
        IProgressMonitor=progress_base or type("IProgressMonitor", (), {"__init__": lambda self: None}))
    if major < 11:
        module.IInt8EntropyCalibrator2 = type("IInt8EntropyCalibrator2", (), {"__init__": lambda self: None})
    return module
