"""rgbir build: option validation, TensorRT 10/11 branching, paired INT8 calibration, progress, the build flow.

The full TensorRT builder does not install on our machines, so the 10.x/11.x branching runs against
``fake_tensorrt`` (the documented API surface, recording calls); the parts that can use the real lean runtime
bindings do (feature detection of an 11.x module, ``IProgressMonitor`` subclassing). Real parses and builds, by
TensorRT-RTX on the CPU, are in test_tensorrt_rtx.py; engine builds on a GPU in the gpu-marked test.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import fake_tensorrt
from attention_onnx import metadata, small_onnx
from media import frame_pair
from rgbir.errors import RgbirError
from rgbir.ops import TOPK_SPARSE_ATTENTION as OP
from rgbir.trt import BatchProfile, EngineOptions, TensorRTFeatures, build_engine, plan_build
from rgbir.trt.builder import layer_precisions
from rgbir.trt.calibration import CalibrationFeeder, calibration_batches, calibration_pairs, make_calibrator
from rgbir.trt.cuda import DeviceInfo
from rgbir.trt.sidecar import read_sidecar, version_tuple

GPU = DeviceInfo(0, "NVIDIA Orin (fake)", (8, 7), True, True, 8 << 30, 12060, 12060)


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
    (EngineOptions(batch=BatchProfile(1, 2, 4)), metadata(batch=1), "fixed batch of 1.*--batch dynamic"),
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
    for version, network_flags in (("10.3.0", ["STRONGLY_TYPED"]), ("11.4.0", [])):  # 11: deprecated, ignored
        plan = plan_build(EngineOptions(), metadata(), features(version), True)
        assert plan.engine_precision == "fp32" and plan.network_flags == network_flags
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


def test_compute_capabilities_are_tensorrt_rtx_targets_only():
    with pytest.raises(RgbirError, match="--compute-capability chooses TensorRT-RTX's targets.*--tensorrt rtx"):
        plan_build(EngineOptions(compute_capabilities=["8.6"]), metadata(), features("10.16.0"), True)
    parser = argparse.ArgumentParser()
    EngineOptions.add_arguments(parser)
    assert EngineOptions.from_args(parser.parse_args(["--compute-capability", "8.6,12.0"])).compute_capabilities \
        == ["8.6", "12.0"]
    with pytest.raises(RgbirError, match="--compute-capability '86' is not a list of compute capabilities"):
        EngineOptions.from_args(parser.parse_args(["--compute-capability", "86"]))


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

    from rgbir.trt.progress import make_progress_monitor

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
def build(tmp_path, version, options, meta=None, device=GPU, plugin_namespace=True, trt=None, **fake):
    onnx_path = small_onnx(tmp_path / "m.onnx", meta or metadata(), plugin_namespace)
    trt = trt or fake_tensorrt.make(version, **fake)
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
    assert record["importers"]["model.22/TopKSparseAttention"] == "plugin"
    assert ("load_library", str(tmp_path / "librgbir_plugins.so")) in trt.calls
    assert cache.read_bytes() == b"TRTC+timed" and record["timing_cache"] == ""
    result2, record2, _ = build(tmp_path, "10.3.0", options)  # the second build starts from the first's cache
    assert record2["timing_cache"] == "TRTC+timed"
    side = read_sidecar(result.engine)
    assert side.model.precision == "fp16" and side.tensorrt_version == "10.3.0"
    assert side.compute_capability == (8, 7) and side.build["precision"] == "fp16" and side.plugin_sha256
    assert result.fallbacks == ["softmax"] and result.layers == 2
    assert not list((tmp_path / "out").glob("*.partial"))


def test_build_on_tensorrt_11_is_strongly_typed_and_keeps_the_function(tmp_path):
    result, record, _ = build(tmp_path, "11.4.0", EngineOptions(version_compatible=True),
                              metadata(precision="fp16"))
    assert record["network_flags"] == 0 and "FP16" not in record["flags"]  # STRONGLY_TYPED is ignored on 11
    assert "VERSION_COMPATIBLE" in record["flags"] and record["functions"] == [OP.name]
    assert record["importers"]["model.22/TopKSparseAttention"] == "plugin"
    assert record["plugins_to_serialize"] == [str(tmp_path / "librgbir_plugins.so")]
    side = read_sidecar(result.engine)
    assert side.version_compatible and side.plugins_embedded and side.model.precision == "fp16"


@pytest.mark.parametrize("version, stripped, parser_flags", [
    ("10.3.0", True, []),  # 9.0-10.6: the local function always wins, so it is removed
    ("10.8.0", False, []),  # 10.7-10.14: a registered plugin wins
    ("10.15.1", False, []),  # 10.15: the plugin wins because the node has plugin_namespace (no flag yet)
    ("10.16.0", False, ["ENABLE_PLUGIN_OVERRIDE"]),  # 10.16+ and 11: the flag is set as well
    ("11.4.0", False, ["ENABLE_PLUGIN_OVERRIDE"])])
def test_every_parser_generation_maps_the_attention_to_the_plugin(tmp_path, version, stripped, parser_flags):
    meta = metadata(precision="fp16" if version.startswith("11") else "fp32")
    _, record, trt = build(tmp_path, version, EngineOptions(), meta)
    assert record["importers"]["model.22/TopKSparseAttention"] == "plugin"
    assert (record["functions"] == []) == stripped
    assert [c[3] for c in trt.calls if c[0] == "parse"] == [tuple(parser_flags)]


@pytest.mark.parametrize("version", ["10.16.0", "11.4.0"])
def test_the_parser_flag_alone_reaches_the_plugin_on_new_parsers(tmp_path, version):
    """Fails if the build stops setting ENABLE_PLUGIN_OVERRIDE: a node without plugin_namespace would then run
    the function body on 10.15+ (the export's own plugin_namespace is checked in test_export)."""
    meta = metadata(precision="fp16" if version.startswith("11") else "fp32")
    _, record, _ = build(tmp_path, version, EngineOptions(), meta, plugin_namespace=False)
    assert record["importers"]["model.22/TopKSparseAttention"] == "plugin"
    _, record, _ = build(tmp_path, "10.15.1", EngineOptions(), plugin_namespace=False)  # no flag in 10.15
    assert record["importers"]["model.22/TopKSparseAttention"] == "function"


def test_a_second_build_in_one_process_still_uses_and_embeds_the_plugin(tmp_path):
    """TensorRT's registry refuses a second load_library of registered plugins (returns None): the second build
    must still know the plugin (10.3: strip the function; 10.7+: plugins_to_serialize and the sidecar)."""
    trt = fake_tensorrt.make("10.3.0")
    for _ in range(2):
        build(tmp_path, "10.3.0", EngineOptions(), trt=trt)
    assert [c[2] for c in trt.calls if c[0] == "parse"] == [(), ()]  # the function was removed both times
    trt = fake_tensorrt.make("10.8.0")
    trt.get_plugin_registry().load_library("/elsewhere/librgbir_plugins.so")  # registered by someone else first
    result, record, _ = build(tmp_path, "10.8.0", EngineOptions(version_compatible=True), trt=trt)
    assert record["plugins_to_serialize"] == [str(tmp_path / "librgbir_plugins.so")]
    assert read_sidecar(result.engine).plugins_embedded and record["importers"]["model.22/TopKSparseAttention"] \
        == "plugin"


def test_int8_calibration_feeds_each_inputs_own_dtype(tmp_path):
    rgb_dir, ir_dir = write_pairs(tmp_path, 2)
    pairs = calibration_pairs(f"{rgb_dir},{ir_dir}", 8)
    for io_dtype, dtype in (("fp16", np.float16), ("fp32", np.float32)):
        meta = metadata()
        meta.io_dtype = io_dtype
        batch = next(calibration_batches(pairs, meta, 2))
        assert {a.dtype for a in batch.values()} == {np.dtype(dtype)}
        uploaded: dict[str, np.ndarray] = {}

        def upload(name, array, store=uploaded):
            store[name] = array
            return len(store)  # a "device pointer"

        assert CalibrationFeeder(iter([batch]), 2, None, upload).next_pointers(["ir", "rgb"]) == [1, 2]
        assert uploaded["rgb"].nbytes == 2 * 3 * 64 * 96 * np.dtype(dtype).itemsize  # the bytes TensorRT reads


def test_int8_build_on_tensorrt_10_feeds_the_calibrator_then_reuses_the_cache(tmp_path, monkeypatch):
    rgb_dir, ir_dir = write_pairs(tmp_path, 5)
    cache = tmp_path / "int8.cache"
    options = EngineOptions(precision="int8", batch=BatchProfile(1, 2, 2), calibration_data=f"{rgb_dir},{ir_dir}",
                            calibration_cache=cache)
    from rgbir.trt.calibration import DeviceUploader
    from rgbir.trt.cuda import CudaError

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


@pytest.mark.parametrize("content", [fake_tensorrt.TIMING_CACHE_MAGIC + b"foreign GPU",  # set_timing_cache: False
                                     b"not a timing cache"])  # create_timing_cache: None
def test_a_timing_cache_from_elsewhere_is_set_aside(tmp_path, content):
    cache = tmp_path / "timing.cache"
    cache.write_bytes(content)
    result, record, _ = build(tmp_path, "10.8.0", EngineOptions(timing_cache=cache))
    assert record["timing_cache"] == "" and any("another TensorRT or GPU" in n for n in result.notes)
    assert cache.read_bytes() == b"TRTC+timed"  # replaced by this build's


def test_parse_errors_name_the_failing_node(tmp_path):
    with pytest.raises(RgbirError, match=r"node 'model.22/TopKSparseAttention' \(TopKSparseAttention\): Plugin "
                                         r"not found.*rgbir plugins compile"):
        build(tmp_path, "10.8.0", EngineOptions(), fail_parse_on=OP.name)
    assert not (tmp_path / "out" / "m.engine").exists()


def test_dla_needs_one_batch_size_and_hardware_compatibility_a_discrete_ampere_gpu(tmp_path):
    with pytest.raises(RgbirError, match="DLA has no dynamic shapes"):
        EngineOptions(precision="fp16", dla_core=0, batch=BatchProfile(1, 2, 4)).validate(metadata())
    EngineOptions(precision="fp16", dla_core=0, batch=BatchProfile(2, 2, 2)).validate(metadata())
    with pytest.raises(RgbirError, match="discrete Ampere or newer"):
        build(tmp_path, "10.3.0", EngineOptions(precision="fp16", hardware_compatible=True))  # GPU is a Jetson


def test_dla_and_hardware_compatibility_reach_the_config(tmp_path):
    _, record, trt = build(tmp_path, "10.3.0", EngineOptions(precision="fp16", dla_core=1), dla_cores=2)  # Orin
    assert record["dla"] == [trt.DeviceType.DLA, 1] and "GPU_FALLBACK" in record["flags"]
    with pytest.raises(RgbirError, match="DLA core 0 is not available here .* 0 DLA cores"):  # desktop 10.x
        build(tmp_path, "10.8.0", EngineOptions(precision="fp16", dla_core=0))
    with pytest.raises(RgbirError, match="DLA core 0 is not available here .* 0 DLA cores"):
        build(tmp_path, "11.3.0", EngineOptions(dla_core=0), metadata(precision="fp16"))
    h100 = DeviceInfo(0, "NVIDIA H100", (9, 0), False, True, 80 << 30, 13000, 13000)
    _, record, trt = build(tmp_path, "11.4.0", EngineOptions(hardware_compatible=True), metadata(precision="fp16"),
                           device=h100)
    assert record["hardware"] == trt.HardwareCompatibilityLevel.AMPERE_PLUS


def test_build_cli_explains_what_is_missing_here(tmp_path, capsys):
    from rgbir.cli import main

    onnx_path = small_onnx(tmp_path / "m.onnx", metadata())
    assert main(["build", str(onnx_path), "--batch", "1,2"]) == 2
    assert "MIN,OPT,MAX" in capsys.readouterr().err
    assert main(["build", str(tmp_path / "missing.onnx")]) == 2
    assert "no such ONNX file" in capsys.readouterr().err
    if importlib.util.find_spec("tensorrt") is None:  # lean runtime, RTX or nothing: the build says so, in one line
        assert main(["build", str(onnx_path), "--tensorrt", "standard"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "no TensorRT builder is installed" in err and "rgbir[trt]" in err
