"""The fakes are honest. Every name that ``fake_tensorrt`` and ``fake_device`` offer for TensorRT's *runtime*
side exists under the same name in the real lean bindings (TensorRT 11.4 here), every enum member they offer
exists in the real enum, and where the real API answers None the fakes do too. The CUDA stand-in offers only
what ``rgbir.trt.cuda`` itself offers.

The full TensorRT builder does not install on our machines; TensorRT-RTX's does, so the builder-side names are
checked against the real TensorRT-RTX module, except those only the full TensorRT has (``ONLY_IN_FULL``: the INT8
calibrators, the weak-typing flags, EXPLICIT_BATCH, DLA memory), and ``BUILDER_SIDE`` says where each one is
documented. A name that is in neither list fails the test.
"""

from __future__ import annotations

import json

import pytest

import fake_device
import fake_tensorrt
from rgbir.trt import cuda
from rgbir.trt.cuda import DeviceInfo

lean = pytest.importorskip("tensorrt_lean_bindings", reason="TensorRT lean runtime bindings not installed")

# builder-side names (absent from the lean bindings) → where the real API documents them
BUILDER_SIDE = {
    "Builder": "Python API reference, tensorrt.Builder (num_DLA_cores, create_network, create_builder_config, "
               "create_optimization_profile, build_serialized_network); NvInfer.h IBuilder",
    "OnnxParser": "Python API reference, tensorrt.OnnxParser (set_flag, parse, num_errors, get_error); "
                  "NvOnnxParser.h IParser, IParserError::node/nodeName/nodeOperator/desc/code",
    "NetworkDefinitionCreationFlag": "NvInfer.h 10.3: kEXPLICIT_BATCH = 0, kSTRONGLY_TYPED = 1 (both deprecated "
                                     "and ignored in 11.x)",
    "OnnxParserFlag": "NvOnnxParser.h: kNATIVE_INSTANCENORM = 0, kENABLE_PLUGIN_OVERRIDE (Python bindings 10.16+)",
    "IInt8EntropyCalibrator2": "NvInfer.h 10.x IInt8EntropyCalibrator2 (removed in 11.0); Python API reference, "
                               "Int8 calibrators: get_batch_size, get_batch, read/write_calibration_cache",
    "IBuilderConfig": "Python API reference, tensorrt.IBuilderConfig (set_flag, clear_flag, set_memory_pool_limit, "
                      "add_optimization_profile, create_timing_cache — None on bytes that are not a cache, "
                      "set_timing_cache, get_timing_cache, set_calibration_profile and int8_calibrator (10.x), "
                      "default_device_type, DLA_core, plugins_to_serialize, hardware_compatibility_level, "
                      "builder_optimization_level, profiling_verbosity, progress_monitor)",
    "INetworkDefinition": "Python API reference, tensorrt.INetworkDefinition (the fake only records what was parsed)",
    "EngineInspector": "Python API reference, tensorrt.EngineInspector (execution_context, "
                        "get_engine_information); the lean bindings do not export it",
}
# enum members that exist only in TensorRT 10.x (the fake's 10.x flavour offers them)
ONLY_IN_10 = {"BuilderFlag": {"FP16", "INT8", "BF16", "FP8", "OBEY_PRECISION_CONSTRAINTS"}}
TEST_ONLY = {"calls", "LOG"}  # what the fakes record for assertions


def public(obj) -> set[str]:
    return {n for n in dir(obj) if not n.startswith("_")}


def members(enum) -> set[str]:
    return set(getattr(enum, "__members__", {}))


def fake_runtime_objects(module, plan: bytes):
    """(fake object, name of the real class) for each runtime-side object a fake module hands out."""
    runtime = module.Runtime(module.Logger())
    engine = runtime.deserialize_cuda_engine(plan)
    return [(runtime, "Runtime"), (engine, "ICudaEngine"), (engine.create_execution_context(), "IExecutionContext"),
            (module.get_plugin_registry(), "IPluginRegistry"), (module.Logger(), "Logger")]


@pytest.mark.parametrize("version", ["10.16.0", "11.4.0"])
def test_fake_tensorrt_module_names_exist_in_the_real_bindings_or_are_documented(version):
    fake = fake_tensorrt.make(version)
    for name in public(fake) - TEST_ONLY:
        assert name in BUILDER_SIDE or hasattr(lean, name), \
            f"fake_tensorrt.{name} is not in TensorRT {lean.__version__}"
        real = getattr(lean, name, None)
        if real is not None and members(getattr(fake, name)):
            extra = members(getattr(fake, name)) - members(real)
            if version.startswith("10"):
                extra -= ONLY_IN_10.get(name, set())
            assert not extra, f"{name} members {extra} do not exist in TensorRT {lean.__version__}"


@pytest.mark.parametrize("fake, plan", [
    (fake_tensorrt.make("11.4.0"), json.dumps({}).encode()),
    (fake_device.fake_tensorrt_runtime(), b"plan")])
def test_fake_runtime_objects_offer_only_real_methods(fake, plan):
    for obj, real_name in fake_runtime_objects(fake, plan):
        missing = public(obj) - public(getattr(lean, real_name))
        assert not missing, f"fake {real_name} offers {missing}, which TensorRT {lean.__version__} does not have"
    assert members(fake.TensorIOMode) <= members(lean.TensorIOMode)


def test_fake_build_side_objects_that_the_lean_bindings_do_have_match_them():
    fake = fake_tensorrt.make("11.4.0")
    builder = fake.Builder(fake.Logger())
    config = builder.create_builder_config()
    pairs = [(builder.create_optimization_profile(), "IOptimizationProfile"),
             (config.create_timing_cache(b""), "ITimingCache")]
    for obj, real_name in pairs:
        missing = public(obj) - TEST_ONLY - {"shapes", "data"} - public(getattr(lean, real_name))
        assert not missing, f"fake {real_name} offers {missing}"
    monitor = fake_tensorrt.make("11.4.0", progress_base=lean.IProgressMonitor).IProgressMonitor
    assert monitor is lean.IProgressMonitor


def test_fakes_answer_none_where_the_real_api_does():
    fake = fake_tensorrt.make("10.8.0")
    registry = fake.get_plugin_registry()
    assert registry.load_library("/a/librgbir_plugins.so") is not None
    assert registry.load_library("/a/librgbir_plugins.so") is None  # as the real registry (test_plugins checks it)
    assert registry.load_library("/b/librgbir_plugins.so") is None  # same plugins from another file
    config = fake.Builder(fake.Logger()).create_builder_config()
    assert config.create_timing_cache(b"not a timing cache") is None  # "magicTagRead == kMAGIC_TAG failed"
    assert fake.Builder.num_DLA_cores == 0  # a desktop GPU; Jetson Orin on 10.x: make(..., dla_cores=2)
    assert fake_device.fake_tensorrt_runtime().Runtime(None).deserialize_cuda_engine(b"junk") is None


def test_fake_cuda_offers_only_what_rgbir_trt_cuda_offers():
    info = DeviceInfo(0, "Orin", (8, 7), True, True, 8 << 30, 12060, 12060)
    fake = fake_device.fake_cuda(info)
    for name in public(fake):
        assert hasattr(cuda, name), f"fake_cuda.{name} is not in rgbir.trt.cuda"
        real = getattr(cuda, name)
        if isinstance(real, type):
            missing = public(getattr(fake, name)) - public(real) - {"handle"}
            assert not missing, f"fake {name} offers {missing}, which rgbir.trt.cuda.{name} does not"
    bindings = pytest.importorskip("cuda.bindings.runtime", reason="cuda-bindings not installed")
    assert public(fake.runtime_api()) <= public(bindings)


# what the fake's build side offers that only the full TensorRT has (TensorRT-RTX, like 11.x, is strongly typed)
ONLY_IN_FULL = {"IInt8EntropyCalibrator2"}  # INT8 calibrators: TensorRT 10.x
ONLY_IN_FULL_MEMBERS = {"BuilderFlag": ONLY_IN_10["BuilderFlag"], "NetworkDefinitionCreationFlag": {"EXPLICIT_BATCH"},
                        "MemoryPoolType": {"DLA_MANAGED_SRAM"}}
ONLY_IN_FULL_METHODS = {"IBuilderConfig": {"int8_calibrator", "set_calibration_profile", "calibration_profile"}}
RECORDS = {"pools", "profiles", "cache", "functions", "importers", "errors", "network"}  # what the fakes remember


def test_fake_builder_side_names_exist_in_the_real_tensorrt_rtx_builder(rtx_trt):
    """The builder side checked against a real builder: every name and member the fake offers exists in
    TensorRT-RTX under the same name, except the ones listed as the full TensorRT's own (which RTX must lack)."""
    fake = fake_tensorrt.make("10.16.0")
    for name in BUILDER_SIDE:
        assert hasattr(rtx_trt, name) != (name in ONLY_IN_FULL), f"{name}: fix BUILDER_SIDE or ONLY_IN_FULL"
    for name in public(fake) - TEST_ONLY - ONLY_IN_FULL:
        assert hasattr(rtx_trt, name), f"fake_tensorrt.{name} is not in TensorRT-RTX {rtx_trt.__version__}"
        extra = members(getattr(fake, name)) - members(getattr(rtx_trt, name)) - ONLY_IN_FULL_MEMBERS.get(name, set())
        assert not extra, f"{name} members {extra} are not in TensorRT-RTX"
    builder = fake.Builder(fake.Logger())
    network = builder.create_network(0)
    objects = [(builder, "Builder"), (builder.create_builder_config(), "IBuilderConfig"),
               (network, "INetworkDefinition"), (fake.OnnxParser(network, fake.Logger()), "OnnxParser")]
    for obj, real_name in objects:
        network.functions = network.importers = None  # what a parse records
        extra = public(obj) - TEST_ONLY - RECORDS - ONLY_IN_FULL_METHODS.get(real_name, set()) \
            - public(getattr(rtx_trt, real_name))
        assert not extra, f"fake {real_name} offers {extra}, which TensorRT-RTX {rtx_trt.__version__} does not have"
