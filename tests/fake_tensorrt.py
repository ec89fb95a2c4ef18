"""A stand-in for the TensorRT Python module's build API, version 10.x or 11.x, for testing rgbir's branching.

No engine can be built on our machines, so ``rgbir.build`` is exercised against this: it implements the
documented surface that rgbir calls (names from the TensorRT 10/11 Python API reference) and records every
call. The 11.x flavour lacks exactly what 11.0 removed (BuilderFlag.FP16/INT8/..., IInt8EntropyCalibrator2,
IBuilderConfig.int8_calibrator / set_calibration_profile), so code that touches them fails as it would there.
The "engine" it builds is a JSON record of the configuration, not a plan.
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


def make(version: str, progress_base=None, fail_parse_on: str | None = None):
    """A fake ``tensorrt`` module of this version; ``fail_parse_on``: op_type the parser cannot import."""
    import onnx

    major = int(version.split(".")[0])
    calls: list[tuple] = []
    flag_names = ["TF32", "GPU_FALLBACK", "VERSION_COMPATIBLE", "DEBUG", "REFIT"]
    if major < 11:
        flag_names += ["FP16", "INT8", "BF16", "FP8", "OBEY_PRECISION_CONSTRAINTS", "DIRECT_IO"]
    BuilderFlag = enum.IntEnum("BuilderFlag", flag_names)
    NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", {"STRONGLY_TYPED": 5})
    MemoryPoolType = enum.IntEnum("MemoryPoolType", ["WORKSPACE", "DLA_MANAGED_SRAM"])
    DeviceType = enum.IntEnum("DeviceType", ["GPU", "DLA"])
    HardwareCompatibilityLevel = enum.IntEnum("HardwareCompatibilityLevel", ["NONE", "AMPERE_PLUS"])
    ProfilingVerbosity = enum.IntEnum("ProfilingVerbosity", ["LAYER_NAMES_ONLY", "DETAILED", "NONE"])
    LayerInformationFormat = enum.IntEnum("LayerInformationFormat", ["ONELINE", "JSON"])
    TensorIOMode = enum.IntEnum("TensorIOMode", ["NONE", "INPUT", "OUTPUT"])

    class Logger:
        WARNING = 2

        def __init__(self, severity=2):
            self.severity = severity

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
            return self.data + b"+timed"

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
            return TimingCache(data)

        def set_timing_cache(self, cache, ignore_mismatch):
            if cache.data.startswith(b"foreign") and not ignore_mismatch:
                return False  # a cache from another TensorRT/GPU
            self.cache = cache
            return True

        def get_timing_cache(self):
            return self.cache

        if major < 11:
            def set_calibration_profile(self, profile):
                self.calibration_profile = profile

    class Network:
        def __init__(self, flags):
            self.flags = flags

    class OnnxParser:
        def __init__(self, network, logger):
            self.network, self.errors = network, []

        def parse(self, model, path=None):
            proto = onnx.load_from_string(bytes(model))
            self.network.functions = [f.name for f in proto.functions]
            calls.append(("parse", path, tuple(self.network.functions)))
            for i, node in enumerate(proto.graph.node):
                if node.op_type == fail_parse_on:
                    self.errors.append(_Error(i, node.name, node.op_type, "Plugin not found"))
            return not self.errors

        @property
        def num_errors(self):
            return len(self.errors)

        def get_error(self, i):
            return self.errors[i]

    class Builder:
        num_DLA_cores = 2 if major < 11 else 0  # a Jetson Orin on TensorRT 10; none on 11.0-11.3

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
            self.record = record
            self.num_io_tensors = 0

        def create_execution_context(self):
            return types.SimpleNamespace(set_input_shape=lambda name, shape: True)

        def create_engine_inspector(self):
            return types.SimpleNamespace(execution_context=None, get_engine_information=lambda fmt: json.dumps({"Layers": [
                {"Name": "conv", "Outputs": [{"Format/Datatype": "Channel major FP16 format"}]},
                {"Name": "softmax", "Outputs": [{"Format/Datatype": "Row major linear FP32"}]}]}))

    class Runtime:
        def __init__(self, logger):
            self.engine_host_code_allowed = False

        def deserialize_cuda_engine(self, data):
            return Engine(json.loads(bytes(data)))

    class _Registry:
        def load_library(self, path):
            calls.append(("load_library", path))
            return object()

    registry = _Registry()
    module = types.SimpleNamespace(
        __version__=version, __name__="tensorrt", calls=calls, Logger=Logger, Builder=Builder, OnnxParser=OnnxParser,
        Runtime=Runtime, BuilderFlag=BuilderFlag, NetworkDefinitionCreationFlag=NetworkDefinitionCreationFlag,
        MemoryPoolType=MemoryPoolType, DeviceType=DeviceType, HardwareCompatibilityLevel=HardwareCompatibilityLevel,
        ProfilingVerbosity=ProfilingVerbosity, LayerInformationFormat=LayerInformationFormat,
        TensorIOMode=TensorIOMode, get_plugin_registry=lambda: registry,
        IProgressMonitor=progress_base or type("IProgressMonitor", (), {"__init__": lambda self: None}))
    if major < 11:
        module.IInt8EntropyCalibrator2 = type("IInt8EntropyCalibrator2", (), {"__init__": lambda self: None})
    return module
