"""TensorRT-RTX's real ONNX parser and builder on this CPU: every shipped config, both precisions, dynamic batch,
1-channel IR, in-graph attention at 1280, with and without rgbir's plugin library; what the edition cannot do is
refused in one line. (The INT8 Q/DQ model is built in test_quantize.py, beside its session fixture.)

The engines are compiled for the GPU when they are loaded (JIT), so nothing here runs them: the runtime side is
``test_an_rtx_engine_runs_on_an_rtx_gpu``, which needs one.
"""

from __future__ import annotations

import subprocess
import sys

import onnx
import pytest

from rgbir.errors import RgbirError
from rgbir.export import ExportOptions, export_onnx
from rgbir.models import build_model
from rgbir.trt import BatchProfile, EngineOptions, build_engine
from rgbir.trt.sidecar import RTX_DEFAULT_TARGETS, read_sidecar
from test_export import SHIPPED

DUPLICATE = "already exists"  # the parser's "A node named nNN already exists" warning
ATTENTION = "rgbir::TopKSparseAttention"


def attention_nodes(path) -> int:
    return sum(n.op_type == "TopKSparseAttention" for n in onnx.load(str(path), load_external_data=False).graph.node)


def rtx_build(onnx_path, engine_path, **options):
    return build_engine(onnx_path, engine_path, EngineOptions(edition="rtx", **options))


@pytest.fixture
def no_plugin_library(monkeypatch, tmp_path):
    """No rgbir plugin library on the search path (whatever this machine has compiled before)."""
    monkeypatch.delenv("RGBIR_PLUGIN_LIBRARY", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))


@pytest.fixture(scope="module")
def demo_export(demo_fp32):
    """The shipped demo detector (MSC at P4 and P5): the session's fp32 export at 160x192 (conftest.py; what is
    checked here does not depend on the input size, and nothing is written beside it)."""
    return demo_fp32


def test_the_demo_export_builds_with_the_plugin_through_the_real_parser(rtx_trt, plugin_library, demo_export,
                                                                        tmp_path):
    """The done-when of issue 22, as a user runs it: 'rgbir build' in a fresh process, on a CPU, the attention
    imported as rgbir's plugin (a process abort without the libtensorrt_rtx.so alias)."""
    engine = tmp_path / "demo.engine"
    run = subprocess.run([sys.executable, "-m", "rgbir", "build", str(demo_export), "-o", str(engine), "--plugin",
                          str(plugin_library), "--tensorrt", "rtx"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"2 {ATTENTION} plugin layers" in run.stdout and "TensorRT-RTX" in run.stdout
    assert DUPLICATE not in run.stdout + run.stderr
    side = read_sidecar(engine)
    assert side.edition == "rtx" and side.tensorrt_version == rtx_trt.__version__
    assert side.compute_targets == list(RTX_DEFAULT_TARGETS) and side.gpu_name == ""
    assert side.plugin_library == str(plugin_library.resolve()) and engine.stat().st_size > 1e6


def test_the_demo_export_builds_without_the_plugin_and_every_node_keeps_its_name(rtx_trt, demo_export,
                                                                                  no_plugin_library, tmp_path, capfd):
    result = rtx_build(demo_export, tmp_path / "demo.engine", compute_capabilities=["8.6", "12.0"])
    out, err = capfd.readouterr()
    assert DUPLICATE not in out + err  # the parser would repeat the function body's names at each call site
    assert result.plugin_layers == {} and not result.inspected and result.layers > 700
    assert [t.name for t in result.tensors] == ["rgb", "ir", "predictions"]
    assert any("function body" in note for note in result.notes)
    side = read_sidecar(result.engine)
    assert side.compute_targets == ["8.6", "12.0"] and side.plugin_library is None


def test_turing_is_refused_by_the_builder_with_the_reason(rtx_trt, demo_export, no_plugin_library, tmp_path):
    """TensorRT-RTX 1.7 compiles no float32 GEMM for SM75, and every YOLO11 has float32 attention scores (C2PSA);
    the day it can, this test fails and the README's limit goes."""
    with pytest.raises(RgbirError, match="cannot compile float32 matrix products for Turing"):
        rtx_build(demo_export, tmp_path / "demo.engine", compute_capabilities=["7.5"])
    assert not list(tmp_path.glob("demo.engine*"))


@pytest.mark.slow
@pytest.mark.parametrize("config, imgsz, precision", SHIPPED, ids=[f"{c}-{s[0]}x{s[1]}-{p}" for c, s, p in SHIPPED])
def test_every_shipped_config_builds_with_tensorrt_rtx(config, imgsz, precision, shipped_export, rtx_trt,
                                                        plugin_library, tmp_path, capfd):
    _, exported = shipped_export(config, imgsz, precision)
    result = rtx_build(exported.path, tmp_path / "m.engine", plugin_library=plugin_library)
    nodes = attention_nodes(exported.path)
    assert result.plugin_layers == ({ATTENTION: nodes} if nodes else {})
    assert result.precision == precision and result.size > 1e6
    assert DUPLICATE not in "".join(capfd.readouterr())


def test_dynamic_batch_with_a_profile_and_one_channel_ir(rtx_trt, plugin_library, tmp_path):
    model = build_model("yolo11n-mm-mid-msc", nc=2).eval()
    path = export_onnx(model, tmp_path / "dyn.onnx", ExportOptions(imgsz=(128, 160), batch=None, ir_channels=1)).path
    result = rtx_build(path, tmp_path / "dyn.engine", plugin_library=plugin_library, batch=BatchProfile(1, 2, 4))
    shapes = {t.name: t.shape for t in result.tensors}
    assert shapes["rgb"] == (-1, 3, 128, 160) and shapes["ir"] == (-1, 1, 128, 160)
    assert result.plugin_layers == {ATTENTION: 2}
    assert read_sidecar(result.engine).build["batch"] == {"min": 1, "opt": 2, "max": 4}


@pytest.mark.slow
def test_inlined_attention_at_1280_builds(rtx_trt, tmp_path):
    """At 1280 P4 has 6400 keys (TopK K = 3200 <= TensorRT's 3840): the standard-op body builds as it is."""
    model = build_model("yolo11n-mm-mid-msc", nc=2).eval()
    path = export_onnx(model, tmp_path / "big.onnx", ExportOptions(imgsz=(1280, 1280), inline_attention=True)).path
    result = rtx_build(path, tmp_path / "big.engine")
    assert result.plugin_layers == {} and result.tensors[-1].shape == (1, 6, 33600)


def test_what_tensorrt_rtx_cannot_do_is_refused_before_any_work(rtx_trt, nms_exports, tiny_onnx, tmp_path):
    """On the session's exports (conftest.py): an NMS export (test_export.py's) and a plain one (tiny_onnx)."""
    nms = nms_exports[2].path
    run = subprocess.run([sys.executable, "-m", "rgbir", "build", str(nms), "--tensorrt", "rtx"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert "no NMS layer" in run.stderr and "export without --postprocess nms" in run.stderr
    assert not nms.with_suffix(".engine").exists()  # the default output, beside the ONNX
    plain = tiny_onnx
    for options, message in ((dict(dla_core=0, precision="auto"), "--dla-core"),
                             (dict(version_compatible=True), "--version-compatible"),
                             (dict(hardware_compatible=True), "--hardware-compatible"),
                             (dict(timing_cache=tmp_path / "t.cache"), "--timing-cache"),
                             (dict(precision="fp16"), "strongly typed"),
                             (dict(compute_capabilities=["9.0"]), "cannot target compute capability 9.0")):
        with pytest.raises(RgbirError, match=message):
            rtx_build(plain, tmp_path / "x.engine", **options)
    assert not list(tmp_path.glob("x.engine*")) and not (tmp_path / "t.cache").exists()


def test_parse_errors_name_the_failing_node_with_the_real_parser(rtx_trt, tmp_path):
    from attention_onnx import metadata
    from rgbir.metadata import METADATA_KEY

    node = onnx.helper.make_node("NoSuchOp", ["rgb"], ["predictions"], domain="custom", name="model.9/NoSuchOp")
    graph = onnx.helper.make_graph(
        [node, onnx.helper.make_node("Identity", ["ir"], ["unused"])], "g",
        [onnx.helper.make_tensor_value_info("rgb", onnx.TensorProto.FLOAT, [1, 3, 64, 96]),
         onnx.helper.make_tensor_value_info("ir", onnx.TensorProto.FLOAT, [1, 1, 64, 96])],
        [onnx.helper.make_tensor_value_info("predictions", onnx.TensorProto.FLOAT, None)])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18),
                                                         onnx.helper.make_opsetid("custom", 1)])
    onnx.helper.set_model_props(model, {METADATA_KEY: metadata().to_json()})
    onnx.save(model, tmp_path / "bad.onnx")
    with pytest.raises(RgbirError, match=r"node 'model\.9/NoSuchOp' \(NoSuchOp\)"):
        rtx_build(tmp_path / "bad.onnx", tmp_path / "bad.engine")


def test_cancelling_a_real_build_writes_nothing(rtx_trt, tiny_onnx, tmp_path, monkeypatch):
    """Ctrl-C sets the progress monitor's flag; the real builder then stops at its next step and returns None."""
    from rgbir.trt import progress

    make = progress.make_progress_monitor

    def cancelled_monitor(trt, bar):
        monitor = make(trt, bar)
        monitor.cancelled = True
        return monitor

    monkeypatch.setattr(progress, "make_progress_monitor", cancelled_monitor)
    with pytest.raises(RgbirError, match="cancelled"):
        rtx_build(tiny_onnx, tmp_path / "m.engine")
    assert not list(tmp_path.glob("m.engine*"))


def test_an_rtx_engine_is_refused_in_one_line_without_an_rtx_gpu(rtx_trt, demo_export, no_plugin_library, tmp_path):
    from rgbir.runtime.backends.tensorrt_backend import TensorRTBackend
    from rgbir.trt.cuda import CudaError, device_info

    try:
        device_info()
        pytest.skip("a CUDA GPU is here: test_an_rtx_engine_runs_on_an_rtx_gpu covers it")
    except CudaError:
        pass
    engine = rtx_build(demo_export, tmp_path / "demo.engine").engine
    with pytest.raises(CudaError, match="is a TensorRT-RTX engine.*no usable GPU here") as error:
        TensorRTBackend(engine)
    assert "\n" not in str(error.value)


@pytest.mark.gpu
def test_an_rtx_engine_runs_on_an_rtx_gpu(rtx_trt, demo_export, plugin_library, tmp_path):
    """On a GPU that TensorRT-RTX supports: the engine JIT-compiles, runs, agrees with ONNX Runtime and leaves a
    runtime cache that the next open reads."""
    import numpy as np

    from rgbir.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
    from rgbir.runtime.backends.tensorrt_backend import TensorRTBackend
    from rgbir.trt.cuda import CudaError, device_info

    try:
        device_info()
    except CudaError as e:
        pytest.skip(f"no CUDA GPU: TensorRT-RTX engines are compiled for the GPU when loaded ({e})")
    engine = rtx_build(demo_export, tmp_path / "demo.engine", plugin_library=plugin_library).engine
    rng = np.random.default_rng(0)
    rgb, ir = (rng.random((1, 3, 160, 192), dtype=np.float32) for _ in range(2))  # demo_export's size
    with TensorRTBackend(engine) as backend:
        out = backend.infer(rgb, ir)["predictions"]
        cache = backend.runtime_cache.path
    ref = OnnxRuntimeBackend(demo_export).infer(rgb, ir)["predictions"]
    assert np.abs(out - ref).max() <= 1e-2 * np.abs(ref).max()
    assert cache.is_file() and cache.stat().st_size > 0


def test_the_runtime_checks_an_rtx_engine_against_its_release_and_targets():
    from attention_onnx import metadata
    from rgbir.trt.sidecar import EngineMetadata, check_compatible

    meta = EngineMetadata(metadata(), "1.7.1.116", "", (0, 0), edition="rtx", compute_targets=list(RTX_DEFAULT_TARGETS))
    assert check_compatible(meta, "1.7.1.116", "RTX 4090", (8, 9), edition="rtx") == []
    assert check_compatible(meta, "1.7.1.116", "RTX 5090", (12, 0), edition="rtx") == []
    assert check_compatible(meta, "1.7.1.116", "a later one", (12, 1), edition="rtx") == []  # "12.0 and later"
    for args, message in ((("1.8.0.1", "RTX 4090", (8, 9), "rtx"), "loads only its own engines"),
                          (("1.7.1.116", "RTX 2080", (7, 5), "rtx"), "--compute-capability 7.5"),
                          (("1.7.1.116", "H100", (9, 0), "rtx"), "targets compute capabilities 8.0, 8.6"),
                          (("10.3.0", "Orin", (8, 7), "standard"), "is a TensorRT-RTX engine")):
        version, gpu, cc, edition = args
        with pytest.raises(RgbirError, match=message):
            check_compatible(meta, version, gpu, cc, edition=edition)
    standard = EngineMetadata(metadata(), "10.3.0", "Orin", (8, 7))
    with pytest.raises(RgbirError, match="TensorRT-RTX cannot load it"):
        check_compatible(standard, "1.7.1.116", "RTX 4090", (8, 9), edition="rtx")
