"""rgbir build: option validation, TensorRT 10/11 branching, paired INT8 calibration, progress, the build flow.

No TensorRT builder exists on our machines: the flow runs against ``fake_tensorrt`` (the documented 10.x/11.x
API surface, recording calls); the parts that can use the real lean runtime bindings do (feature detection of
an 11.x module, ``IProgressMonitor`` subclassing). Engine builds on a GPU are covered by the gpu-marked test.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import fake_tensorrt
from media import frame_pair
from rgbir.build import BatchProfile, EngineOptions, TensorRTFeatures, build_engine, plan_build
from rgbir.build.calibration import CalibrationFeeder, calibration_batches, calibration_pairs, make_calibrator
from rgbir.build.engine import layer_precisions
from rgbir.engine_metadata import read_sidecar, version_tuple
from rgbir.errors import RgbirError
from rgbir.metadata import METADATA_KEY, InputSpec, ModelMetadata
from rgbir.ops import TOPK_SPARSE_ATTENTION as OP
from rgbir.runtime.cuda import DeviceInfo

GPU = DeviceInfo(0, "NVIDIA Orin (fake)", (8, 7), True, True, 8 << 30, 12060, 12060)


def metadata(batch=None, precision="fp32", attention="function") -> ModelMetadata:
    return ModelMetadata("test", {0: "person", 1: "car"}, (64, 96), batch,
                         [InputSpec("rgb", 3, "RGB"), InputSpec("ir", 1, "GRAY")], [8.0, 16.0, 32.0],
                         precision=precision, attention_op=attention)


def small_onnx(path: Path, meta: ModelMetadata) -> Path:
    """A graph with the rgbir attention node and its local function, carrying rgbir metadata."""
    pytest.importorskip("onnxscript")
    from rgbir.export.topk_function import attach

    b = meta.batch or "batch"
    node = helper.make_node(OP.name, ["q", "k", "v"], ["predictions"], domain=OP.domain,
                            name="model.22/TopKSparseAttention", scale=0.5, k_divisors=[2, 3], weights=[0.5, 0.5],
                            plugin_version="1", plugin_namespace="rgbir")
    graph = helper.make_graph(
        [helper.make_node("Identity", ["rgb"], ["q"]), helper.make_node("Identity", ["ir"], ["k"]),
         helper.make_node("Identity", ["ir"], ["v"]), node], "g",
        [helper.make_tensor_value_info("rgb", TensorProto.FLOAT, [b, 3, 64, 96]),
         helper.make_tensor_value_info("ir", TensorProto.FLOAT, [b, 1, 64, 96])],
        [helper.make_tensor_value_info("predictions", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    attach(model)
    helper.set_model_props(model, {METADATA_KEY: meta.to_json()})
    onnx.save(model, path)
    return path


def features(version: str) -> TensorRTFeatures:
    return TensorRTFeatures.of(fake_tensorrt.make(version))


# options ---------------------------------------------------------------------------------------------------
def test_batch_profile_parsing_and_validation():
    assert BatchProfile.parse("4") == BatchProfile(1, 4, 4)
    assert BatchProfile.parse("1,2,8") == BatchProfile(1, 2, 8)
    with pytest.raises(RgbirError, match="MIN,OPT,MAX"):
        BatchProfile.parse("1,2")
    with pytest.raises(RgbirError, match="min <= opt <= max"):
        BatchProfile(2, 1, 4).validate()


@pytest.mark.parametrize("options, meta, message", [
    (EngineOptions(precision="bf16"), metadata(), "not one of"),
    (EngineOptions(precision="fp32"), metadata(precision="fp16"), "needs an fp32 export"),
    (EngineOptions(batch=BatchProfile(1, 2, 4)), metadata(batch=1), "fixed batch of 1"),
    (EngineOptions(workspace_mib=0), metadata(), "must be positive"),
    (EngineOptions(dla_core=0), metadata(), "DLA runs FP16 or INT8"),
    (EngineOptions(dla_core=0, precision="fp16", hardware_compatible=True), metadata(), "cannot use DLA"),
    (EngineOptions(precision="int8"), metadata(), "INT8 needs calibration images"),
    (EngineOptions(optimization_level=7), metadata(), "not in 0..5"),
    (EngineOptions(calibration_data="data.yaml"), metadata(), "only applies to --precision int8"),
    (EngineOptions(precision="int8", calibration_data="d.yaml", calibration_images=0), metadata(), "at least 1"),
])
def test_options_are_refused_with_the_fix(options, meta, message):
    with pytest.raises(RgbirError, match=message):
        options.validate(meta)


def test_dynamic_models_get_a_default_profile_and_fixed_ones_none():
    assert EngineOptions().profile_batch(metadata(batch=None)) == BatchProfile(1, 1, 1)
    assert EngineOptions(batch=BatchProfile(1, 2, 8)).profile_batch(metadata()) == BatchProfile(1, 2, 8)
    assert EngineOptions().profile_batch(metadata(batch=2)) is None


# TensorRT 10 vs 11 -----------------------------------------------------------------------------------------
def test_features_of_the_real_tensorrt_11_lean_module():
    trt = pytest.importorskip("tensorrt_lean_bindings", reason="TensorRT lean bindings not installed")
    f = TensorRTFeatures.of(trt)
    assert version_tuple(f.version) >= (10, 14)
    assert not f.builder  # the lean runtime cannot build: rgbir build says so
    if version_tuple(f.version) >= (11,):  # 11.0 removed the weak-typing flags and calibrators
        assert not f.weak_typing and not f.calibrators
        with pytest.raises(RgbirError, match="runtime-only flavour"):
            plan_build(EngineOptions(), metadata(), f, plugin_available=True)


def test_auto_precision_is_strongly_typed_on_both_versions_and_fp32_clears_tf32():
    for version in ("10.3.0", "11.4.0"):
        plan = plan_build(EngineOptions(), metadata(), features(version), True)
        assert plan.engine_precision == "fp32" and plan.network_flags == ["STRONGLY_TYPED"]
        assert plan.clear_flags == ["TF32"] and "FP16" not in plan.set_flags
    plan = plan_build(EngineOptions(), metadata(precision="fp16"), features("11.4.0"), True)
    assert plan.engine_precision == "fp16" and not plan.set_flags and not plan.clear_flags


def test_fp16_flag_on_tensorrt_10_and_an_explanation_on_11():
    plan = plan_build(EngineOptions(precision="fp16"), metadata(), features("10.3.0"), True)
    assert plan.set_flags == ["FP16"] and plan.network_flags == [] and plan.engine_precision == "fp16"
    with pytest.raises(RgbirError, match=r"strongly typed.*rgbir export --precision fp16"):
        plan_build(EngineOptions(precision="fp16"), metadata(), features("11.4.0"), True)


def test_int8_calibrates_on_tensorrt_10_and_asks_for_qdq_on_11(tmp_path):
    cache = tmp_path / "calib.cache"
    cache.write_bytes(b"x")
    options = EngineOptions(precision="int8", calibration_cache=cache)
    plan = plan_build(options, metadata(), features("10.3.0"), True)
    assert plan.calibrate and set(plan.set_flags) == {"INT8", "FP16"} and plan.engine_precision == "int8"
    with pytest.raises(RgbirError, match="Q/DQ|QuantizeLinear"):
        plan_build(options, metadata(), features("11.4.0"), True)
    with pytest.raises(RgbirError, match="QuantizeLinear"):  # said first, not "needs calibration images"
        plan_build(EngineOptions(precision="int8"), metadata(), features("11.4.0"), True)


def test_the_attention_function_is_stripped_only_before_tensorrt_10_7():
    assert plan_build(EngineOptions(), metadata(), features("10.3.0"), True).strip_attention_function
    assert not plan_build(EngineOptions(), metadata(), features("10.7.0"), True).strip_attention_function
    assert not plan_build(EngineOptions(), metadata(), features("11.4.0"), True).strip_attention_function
    plan = plan_build(EngineOptions(), metadata(), features("10.3.0"), plugin_available=False)
    assert not plan.strip_attention_function and any("K <= 3840" in n for n in plan.notes)


# INT8 calibration ------------------------------------------------------------------------------------------
def write_pairs(root: Path, count: int, ir_16bit: bool = False) -> tuple[Path, Path]:
    rgb_dir, ir_dir = root / "visible", root / "infrared"
    rgb_dir.mkdir(parents=True)
    ir_dir.mkdir(parents=True)
    for i in range(count):
        rgb, ir = frame_pair(i, size=(48, 80))
        cv2.imwrite(str(rgb_dir / f"{i:03d}.png"), rgb)
        grey = ir if ir.ndim == 2 else cv2.cvtColor(ir, cv2.COLOR_BGR2GRAY)
        cv2.imwrite(str(ir_dir / f"{i:03d}.png"), grey.astype(np.uint16) * 200 if ir_16bit else grey)
    (ir_dir / "999.png").write_bytes(b"")  # no RGB partner: not a pair
    return rgb_dir, ir_dir


def test_calibration_batches_carry_both_inputs_in_order_and_dtype(tmp_path):
    rgb_dir, ir_dir = write_pairs(tmp_path, 7, ir_16bit=True)
    pairs = calibration_pairs(f"{rgb_dir},{ir_dir}", limit=100)
    assert [(r.name, i.name) for r, i in pairs] == [(f"{k:03d}.png",) * 2 for k in range(7)]
    spread = calibration_pairs(f"{rgb_dir},{ir_dir}", limit=3)  # spread over the set, not its first frames
    assert [r.stem for r, _ in spread] == ["000", "002", "004"]
    meta = metadata()
    batches = list(calibration_batches(pairs, meta, batch=3))
    assert len(batches) == 2  # 7 pairs → two full batches of 3; the partial one is left out
    for batch in batches:
        assert list(batch) == ["rgb", "ir"]
        assert batch["rgb"].shape == (3, 3, 64, 96) and batch["ir"].shape == (3, 1, 64, 96)
        assert batch["rgb"].dtype == np.float32 and batch["ir"].dtype == np.float32
        assert 0 <= batch["ir"].min() and batch["ir"].max() <= 1 and batch["ir"].std() > 0.05  # AGC'd 16-bit
    # the same preprocessing as the runtime: the first pair, alone
    from rgbir.runtime.preprocess import preprocess_pair
    from rgbir.runtime.thermal import ThermalAGC

    rgb = cv2.imread(str(pairs[0][0]))
    ir = ThermalAGC()(cv2.imread(str(pairs[0][1]), cv2.IMREAD_UNCHANGED))
    expected, _ = preprocess_pair(rgb, ir, meta)
    np.testing.assert_array_equal(batches[0]["rgb"][:1], expected[0])
    np.testing.assert_array_equal(batches[0]["ir"][:1], expected[1])


def test_calibration_pairs_from_a_data_yaml(tmp_path):
    from rgbir.data.synthetic import SceneConfig, write_dataset

    data = write_dataset(tmp_path / "ds", 4, 2, SceneConfig(size=(64, 96), seed=1))
    pairs = calibration_pairs(str(data), limit=3)
    assert len(pairs) == 3 and all(r.is_file() and i.is_file() for r, i in pairs)
    assert all("images_ir" in i.parts and "images" in r.parts for r, i in pairs)
    with pytest.raises(RgbirError, match="neither a data.yaml nor two existing folders"):
        calibration_pairs(str(tmp_path / "nowhere"), 3)


def test_calibrator_answers_in_tensorrts_name_order_and_reuses_its_cache(tmp_path):
    rgb_dir, ir_dir = write_pairs(tmp_path, 4)
    meta = metadata()
    uploads = []

    def upload(name, array):
        uploads.append((name, array.dtype, array.shape, array.flags["C_CONTIGUOUS"]))
        return 1000 + len(uploads)

    cache = tmp_path / "cache" / "calib.cache"
    batches = calibration_batches(calibration_pairs(f"{rgb_dir},{ir_dir}", 10), meta, 2)
    calibrator = make_calibrator(fake_tensorrt.make("10.3.0"), CalibrationFeeder(batches, 2, cache, upload))
    assert calibrator.get_batch_size() == 2 and calibrator.read_calibration_cache() is None
    assert calibrator.get_batch(["ir", "rgb"]) == [1001, 1002]  # pointers in the order TensorRT asked
    assert [u[0] for u in uploads] == ["ir", "rgb"]
    assert uploads[0][1:] == (np.float32, (2, 1, 64, 96), True) and uploads[1][2] == (2, 3, 64, 96)
    assert calibrator.get_batch(["rgb", "ir"]) is not None
    assert calibrator.get_batch(["rgb", "ir"]) is None  # done
    with pytest.raises(RgbirError, match="asked for calibration input"):
        CalibrationFeeder(iter([{"rgb": np.zeros(1)}]), 1, None, upload).next_pointers(["thermal"])
    calibrator.write_calibration_cache(memoryview(b"table"))
    fresh = make_calibrator(fake_tensorrt.make("10.3.0"), CalibrationFeeder(iter([]), 2, cache, upload))
    assert fresh.read_calibration_cache() == b"table"


# progress ----------------------------------------------------------------------------------------------------
def test_progress_monitor_subclasses_the_real_tensorrt_interface():
    trt = pytest.importorskip("tensorrt_lean_bindings", reason="TensorRT lean bindings not installed")
    from rich.progress import Progress

    from rgbir.build.progress import make_progress_monitor

    progress = Progress(disable=True)
    monitor = make_progress_monitor(trt, progress)
    assert isinstance(monitor, trt.IProgressMonitor)
    monitor.phase_start("Building engine", None, 2)  # TensorRT's order: phase_name, parent_phase, num_steps
    monitor.phase_start("Tactic timing", "Building engine", 4)
    assert monitor.step_complete("Tactic timing", 1) is True
    task = progress.tasks[-1]
    assert task.description == "  Tactic timing" and task.completed == 2 and task.total == 4
    monitor.phase_finish("Tactic timing")
    assert [t.description for t in progress.tasks] == ["Building engine"]
    monitor.cancelled = True
    assert monitor.step_complete("Building engine", 1) is False  # TensorRT then cancels the build


def test_layer_precisions_from_the_engine_inspector():
    info = {"Layers": [{"Name": "conv", "Outputs": [{"Format/Datatype": "Channel major FP16 format"}]},
                       {"Name": "softmax", "Outputs": [{"Format/Datatype": "Row major linear FP32"}]},
                       {"Name": "nms", "Outputs": [{"Format/Datatype": "Row major linear Int32"}]}]}
    assert layer_precisions(info, "fp16") == (3, {"fp16": 1, "fp32": 1}, ["softmax"])
    assert layer_precisions(info, "fp32")[2] == []
    trt11 = {"Layers": [{"Name": "a", "Outputs": [{"Format": "Row major linear", "DataType": "BFloat16"}]},
                        {"Name": "b", "Outputs": [{"Format": "Row major linear", "DataType": "Float"}]}]}
    assert layer_precisions(trt11, "bf16") == (2, {"bf16": 1, "fp32": 1}, ["b"])


# the build flow --------------------------------------------------------------------------------------------
def build(tmp_path, version, options, meta=None, device=GPU, **fake):
    onnx_path = small_onnx(tmp_path / "m.onnx", meta or metadata())
    trt = fake_tensorrt.make(version, **fake)
    plugin = tmp_path / "librgbir_plugins.so"
    plugin.write_bytes(b"\x7fELF fake")
    options.plugin_library = plugin
    result = build_engine(onnx_path, tmp_path / "out" / "m.engine", options, trt=trt, device=device)
    return result, json.loads(result.engine.read_bytes()), trt


def test_build_on_tensorrt_10_fp16_with_profile_workspace_cache_and_sidecar(tmp_path):
    cache = tmp_path / "timing.cache"
    options = EngineOptions(precision="fp16", batch=BatchProfile(1, 2, 4), workspace_mib=256, timing_cache=cache)
    result, record, trt = build(tmp_path, "10.3.0", options)
    assert record["flags"] == ["FP16", "TF32"] and record["network_flags"] == 0  # weakly typed
    assert record["profiles"] == [{"rgb": [[1, 3, 64, 96], [2, 3, 64, 96], [4, 3, 64, 96]],
                                   "ir": [[1, 1, 64, 96], [2, 1, 64, 96], [4, 1, 64, 96]]}]
    assert record["pools"] == {"WORKSPACE": 256 << 20}
    assert record["functions"] == []  # 10.3 would prefer the local function: removed so the plugin wins
    assert ("load_library", str(tmp_path / "librgbir_plugins.so")) in trt.calls
    assert cache.read_bytes() == b"+timed" and record["timing_cache"] == ""
    result2, record2, _ = build(tmp_path, "10.3.0", options)  # the second build starts from the first's cache
    assert record2["timing_cache"] == "+timed"
    side = read_sidecar(result.engine)
    assert side.model.precision == "fp16" and side.tensorrt_version == "10.3.0"
    assert side.compute_capability == (8, 7) and side.build["precision"] == "fp16" and side.plugin_sha256
    assert result.fallbacks == ["softmax"] and result.layers == 2
    assert not list((tmp_path / "out").glob("*.partial"))


def test_build_on_tensorrt_11_is_strongly_typed_and_keeps_the_function(tmp_path):
    result, record, _ = build(tmp_path, "11.4.0", EngineOptions(version_compatible=True),
                              metadata(precision="fp16"))
    assert record["network_flags"] == 1 << 5 and "FP16" not in record["flags"]
    assert "VERSION_COMPATIBLE" in record["flags"] and record["functions"] == [OP.name]
    assert record["plugins_to_serialize"] == [str(tmp_path / "librgbir_plugins.so")]
    side = read_sidecar(result.engine)
    assert side.version_compatible and side.plugins_embedded and side.model.precision == "fp16"


def test_int8_build_on_tensorrt_10_feeds_the_calibrator_then_reuses_the_cache(tmp_path, monkeypatch):
    rgb_dir, ir_dir = write_pairs(tmp_path, 5)
    cache = tmp_path / "int8.cache"
    options = EngineOptions(precision="int8", batch=BatchProfile(1, 2, 2), calibration_data=f"{rgb_dir},{ir_dir}",
                            calibration_cache=cache)
    from rgbir.build.calibration import DeviceUploader
    from rgbir.runtime.cuda import CudaError

    def failing_upload(self, name, array):
        raise CudaError("cudaMemcpyAsync failed: out of memory")

    monkeypatch.setattr(DeviceUploader, "__call__", failing_upload)
    with pytest.raises(RgbirError, match="out of memory"):  # raised after TensorRT gave up, not inside it
        build(tmp_path, "10.3.0", options)
    monkeypatch.undo()
    assert not cache.exists()  # a failed calibration leaves no table behind
    cache.write_bytes(b"calibration-table")  # with a cache TensorRT never asks for images
    result, record, _ = build(tmp_path, "10.3.0", options)
    assert record["calibration_batches"] == 0 and set(record["flags"]) >= {"INT8", "FP16"}
    assert any("from the calibration cache" in n for n in result.notes)
    assert read_sidecar(result.engine).model.precision == "int8"


def test_outputs_are_checked_before_building_and_a_failed_build_keeps_the_old_engine(tmp_path):
    first, _, _ = build(tmp_path, "10.8.0", EngineOptions())
    engine, sidecar = first.engine.read_bytes(), first.sidecar.read_text()
    (tmp_path / "cache-dir").mkdir()
    with pytest.raises(RgbirError, match="timing cache .* is a directory"):
        build(tmp_path, "10.8.0", EngineOptions(precision="fp16", timing_cache=tmp_path / "cache-dir"))
    assert first.engine.read_bytes() == engine and first.sidecar.read_text() == sidecar
    (tmp_path / "not.onnx").write_text("hello")
    with pytest.raises(RgbirError, match="not a readable ONNX file"):
        build_engine(tmp_path / "not.onnx", tmp_path / "x.engine", trt=fake_tensorrt.make("10.8.0"), device=GPU)


def test_a_timing_cache_from_elsewhere_is_set_aside(tmp_path):
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"foreign GPU")
    result, record, _ = build(tmp_path, "10.8.0", EngineOptions(timing_cache=cache))
    assert record["timing_cache"] == "" and any("another TensorRT or GPU" in n for n in result.notes)
    assert cache.read_bytes() == b"+timed"  # replaced by this build's


def test_parse_errors_name_the_failing_node(tmp_path):
    with pytest.raises(RgbirError, match=r"node 'model.22/TopKSparseAttention' \(TopKSparseAttention\): Plugin "
                                         r"not found.*rgbir plugins build"):
        build(tmp_path, "10.8.0", EngineOptions(), fail_parse_on=OP.name)
    assert not (tmp_path / "out" / "m.engine").exists()


def test_dla_needs_one_batch_size_and_hardware_compatibility_a_discrete_ampere_gpu(tmp_path):
    with pytest.raises(RgbirError, match="DLA has no dynamic shapes"):
        EngineOptions(precision="fp16", dla_core=0, batch=BatchProfile(1, 2, 4)).validate(metadata())
    EngineOptions(precision="fp16", dla_core=0, batch=BatchProfile(2, 2, 2)).validate(metadata())
    with pytest.raises(RgbirError, match="discrete Ampere or newer"):
        build(tmp_path, "10.3.0", EngineOptions(precision="fp16", hardware_compatible=True))  # GPU is a Jetson


def test_dla_and_hardware_compatibility_reach_the_config(tmp_path):
    _, record, trt = build(tmp_path, "10.3.0", EngineOptions(precision="fp16", dla_core=1))
    assert record["dla"] == [trt.DeviceType.DLA, 1] and "GPU_FALLBACK" in record["flags"]
    with pytest.raises(RgbirError, match="DLA core 0 is not available here .* 0 DLA cores"):
        build(tmp_path, "11.3.0", EngineOptions(dla_core=0), metadata(precision="fp16"))
    h100 = DeviceInfo(0, "NVIDIA H100", (9, 0), False, True, 80 << 30, 13000, 13000)
    _, record, trt = build(tmp_path, "11.4.0", EngineOptions(hardware_compatible=True), metadata(precision="fp16"),
                           device=h100)
    assert record["hardware"] == trt.HardwareCompatibilityLevel.AMPERE_PLUS


def test_cancelling_writes_nothing(tmp_path):
    class Cancelling:
        def __init__(self):
            pass

    onnx_path = small_onnx(tmp_path / "m.onnx", metadata())
    trt = fake_tensorrt.make("10.8.0", progress_base=Cancelling)
    original = trt.Builder.build_serialized_network

    def cancel_then_build(self, network, config):
        config.progress_monitor.cancelled = True  # what Ctrl-C does during a build
        return original(self, network, config)

    trt.Builder.build_serialized_network = cancel_then_build
    with pytest.raises(RgbirError, match="cancelled"):
        build_engine(onnx_path, tmp_path / "m.engine", EngineOptions(), trt=trt, device=GPU)
    assert not (tmp_path / "m.engine").exists() and not (tmp_path / "m.engine.json").exists()


def test_build_cli_explains_what_is_missing_here(tmp_path, capsys):
    from rgbir.cli import main

    onnx_path = small_onnx(tmp_path / "m.onnx", metadata())
    assert main(["build", str(onnx_path), "--batch", "1,2"]) == 2
    assert "MIN,OPT,MAX" in capsys.readouterr().err
    assert main(["build", str(tmp_path / "missing.onnx")]) == 2
    assert "no such ONNX file" in capsys.readouterr().err
    if importlib.util.find_spec("tensorrt") is None:  # lean runtime or nothing: the build says so, in one line
        assert main(["build", str(onnx_path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and ("cannot build engines" in err or "not installed" in err)
