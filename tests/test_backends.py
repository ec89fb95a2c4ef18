"""Backends behind one interface: ONNX Runtime and PyTorch against each other on CPU, provider choice and IO
binding, engine sidecars and the refusal logic, the TensorRT backend (on a GPU with TensorRT only), doctor."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from rgbir.errors import RgbirError
from rgbir.metadata import InputSpec, ModelMetadata
from rgbir.runtime.backends import backend_kind, open_backend
from rgbir.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend, choose_providers
from rgbir.trt.sidecar import EngineMetadata, check_compatible, read_sidecar, sidecar_path, write_sidecar

SIZE = (128, 160)


@pytest.fixture(scope="module")
def exported(msc_export):
    """Weights file + its fp32 ONNX export (yolo11n-mm-mid-msc, 128x160, BN-calibrated random weights): conftest.py's
    msc_export, shared with test_export.py."""
    pytest.importorskip("torch")
    _, weights, result = msc_export
    assert result.metadata.imgsz == SIZE
    return weights, result.path


def test_backend_kind_follows_the_file():
    assert backend_kind("a.onnx") == "onnxruntime"
    assert [backend_kind(f"a.{s}") for s in ("engine", "plan", "trt")] == ["tensorrt"] * 3
    assert backend_kind("best.pt") == backend_kind("yolo11n-mm-mid") == "pytorch"
    with pytest.raises(RgbirError, match="backend must be one of"):
        open_backend("a.onnx", "tflite")
    for device in ("cpu", "cpu:0", "gpu"):
        with pytest.raises(RgbirError, match="TensorRT runs on a GPU"):
            open_backend("a.engine", device=device)
    with pytest.raises(RgbirError, match=r"--cuda-graph \(TensorRT and PyTorch only\), --gpu-preprocess \(TensorRT "
                                         r"and PyTorch only\) do not apply to the onnxruntime backend: leave them "
                                         r"out$"):
        open_backend("a.onnx", cuda_graph=True, gpu_preprocess=True)
    with pytest.raises(RgbirError, match=r"--half \(PyTorch only\) does not apply to the tensorrt backend: leave it "
                                         r"out$"):
        open_backend("a.engine", half=True)
    with pytest.raises(RgbirError, match=r"--device \(TensorRT and PyTorch only\) does not apply to the onnxruntime "
                                         r"backend: leave it out; ONNX Runtime picks its device through --providers"):
        open_backend("a.onnx", device="cuda")
    for model in ("a.engine", "yolo11n-mm-mid"):  # ONNX Runtime's options, refused before anything is opened
        with pytest.raises(RgbirError, match=r"--providers \(ONNX Runtime only\), threads \(ONNX Runtime only\) do "
                                             r"not apply"):
            open_backend(model, providers=["cpu"], threads=2)
    with pytest.raises(RgbirError, match=r"--imgsz \(PyTorch only\) does not apply to the tensorrt backend: leave it "
                                         r"out; an exported model has the input size it was exported with"):
        open_backend("a.engine", imgsz=(320, 320))


def test_onnxruntime_and_pytorch_backends_agree_end_to_end(exported):
    from rgbir.parity import compare, random_inputs

    weights, onnx_path = exported
    ort_backend = open_backend(onnx_path)
    torch_backend = open_backend(weights, imgsz=SIZE)
    assert ort_backend.name == "onnxruntime" and torch_backend.name == "pytorch"
    assert ort_backend.input_names == torch_backend.input_names == ["rgb", "ir"]
    assert ort_backend.output_names == torch_backend.output_names == ["predictions"]
    assert ort_backend.inputs[0].shape[1:] == (3, *SIZE) and ort_backend.inputs[0].dtype == np.float32
    meta = ort_backend.metadata
    report = compare(torch_backend, ort_backend, random_inputs(meta, 2, seed=3), meta)
    assert report.passed, report.outputs
    # the same inputs in float64 or non-contiguous are converted by the shared feeds(), not by each backend
    rgb, ir = random_inputs(meta, 1, seed=4)[0][1]
    a = ort_backend.infer(rgb.astype(np.float64), np.asfortranarray(ir))["predictions"]
    np.testing.assert_array_equal(a, ort_backend.infer(rgb, ir)["predictions"])
    with pytest.raises(RgbirError, match="needs an IR input"):
        ort_backend.infer(rgb)


def test_io_binding_gives_the_same_outputs(exported):
    _, onnx_path = exported
    plain = OnnxRuntimeBackend(onnx_path)
    bound = OnnxRuntimeBackend(onnx_path, io_binding=True)  # on CPU: bound to host memory, same code path
    assert not plain.io_binding and bound.io_binding
    rng = np.random.default_rng(0)
    rgb, ir = rng.random((1, 3, *SIZE), np.float32), rng.random((1, 3, *SIZE), np.float32)
    np.testing.assert_array_equal(plain.infer(rgb, ir)["predictions"], bound.infer(rgb, ir)["predictions"])


def test_provider_choice():
    cpu_only = ["AzureExecutionProvider", "CPUExecutionProvider"]
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers(None, cpu_only) == ["CPUExecutionProvider"]
    assert choose_providers(None, gpu) == ["CUDAExecutionProvider", "CPUExecutionProvider"]  # TensorRT EP: asked
    assert choose_providers(["tensorrt", "cuda"], gpu) == ["TensorrtExecutionProvider", "CUDAExecutionProvider",
                                                            "CPUExecutionProvider"]
    assert choose_providers(["CUDAExecutionProvider"], gpu) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(RgbirError, match="CUDAExecutionProvider not available.*onnxruntime-gpu"):
        choose_providers(["cuda"], cpu_only)


# engine sidecar ----------------------------------------------------------------------------------------------
def engine_meta(**kw) -> EngineMetadata:
    model = ModelMetadata("0.1.0", {0: "person"}, (512, 640), None, [InputSpec("rgb", 3, "RGB"),
                          InputSpec("ir", 1, "GRAY")], [8.0, 16.0, 32.0], precision="fp16", attention_op="function")
    base = dict(model=model, tensorrt_version="10.3.0.26", gpu_name="Orin", compute_capability=(8, 7),
                build={"precision": "fp16", "batch": {"min": 1, "opt": 2, "max": 4}}, plugin_sha256="ab" * 32)
    base.update(kw)
    return EngineMetadata(**base)


def test_sidecar_round_trip(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan")
    assert read_sidecar(engine) is None  # an engine from trtexec: no sidecar, no error
    meta = engine_meta()
    path = write_sidecar(engine, meta)
    assert path == sidecar_path(engine) == tmp_path / "m.engine.json"
    assert read_sidecar(engine) == meta
    assert json.loads(path.read_text())["model"]["names"] == {"0": "person"}
    assert engine.read_bytes() == b"plan"  # the plan itself stays plain
    path.write_text("{not json")
    with pytest.raises(RgbirError, match="not an rgbir engine sidecar"):
        read_sidecar(engine)


def test_refusal_logic():
    meta = engine_meta()
    assert check_compatible(meta, "10.3.0.26", "Orin", (8, 7)) == []
    with pytest.raises(RgbirError, match="built with TensorRT 10.3.0.26 and this is TensorRT 10.4.0"):
        check_compatible(meta, "10.4.0", "Orin", (8, 7))
    with pytest.raises(RgbirError, match="compute capability 8.7 .* this GPU is RTX 4090 \\(8.9\\)"):
        check_compatible(meta, "10.3.0.26", "RTX 4090", (8, 9))
    warnings = check_compatible(meta, "10.3.0.26", "Orin NX", (8, 7))
    assert len(warnings) == 1 and "built on Orin" in warnings[0]
    with pytest.raises(RgbirError, match="built with TensorRT 10.3.0.26 and this is TensorRT 10.3.0.30"):
        check_compatible(meta, "10.3.0.30", "Orin", (8, 7))  # plans are tied to the build number too
    compatible = engine_meta(version_compatible=True)
    assert check_compatible(compatible, "10.14.1.48", "Orin", (8, 7)) == []  # later 10.x: fine
    assert check_compatible(compatible, "11.4.0.106", "Orin", (8, 7)) == []  # and the next major
    with pytest.raises(RgbirError, match="version-compatible from TensorRT 10.3.0.26 to the next major"):
        check_compatible(compatible, "10.2.0", "Orin", (8, 7))  # older than the builder
    with pytest.raises(RgbirError, match="to the next major"):
        check_compatible(compatible, "12.0.0", "Orin", (8, 7))
    old = engine_meta(version_compatible=True, tensorrt_version="8.6.1.6")
    assert check_compatible(old, "10.3.0.26", "Orin", (8, 7)) == []
    with pytest.raises(RgbirError, match="to the next major"):
        check_compatible(old, "11.4.0", "Orin", (8, 7))
    hardware = engine_meta(hardware_compatible=True, compute_capability=(8, 6))
    assert check_compatible(hardware, "10.3.0.26", "H100", (9, 0)) == []
    with pytest.raises(RgbirError, match="Ampere and newer"):
        check_compatible(hardware, "10.3.0.26", "T4", (7, 5))
    with pytest.raises(RgbirError, match="Ampere and newer"):
        check_compatible(hardware, "10.3.0.26", "Orin", (8, 7), integrated=True)  # not on Jetson


# TensorRT backend --------------------------------------------------------------------------------------------
def _gpu_or_skip():
    from rgbir.trt import cuda

    try:
        return cuda.device_info()
    except RgbirError as e:
        pytest.skip(f"no CUDA GPU here ({e})")


def test_tensorrt_backend_without_a_gpu_says_why_in_one_line(tmp_path):
    pytest.importorskip("cuda.bindings", reason="cuda-python not installed")
    from rgbir.trt import cuda

    try:
        cuda.device_info()
        pytest.skip("a GPU is present: the refusal path is not reachable")
    except RgbirError:
        pass
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"ftrt" + bytes(4096))  # binary and long enough to pass for a plan: the GPU is what's missing
    with pytest.raises(RgbirError) as info:
        open_backend(engine)
    message = str(info.value)
    assert "\n" not in message and "not a TensorRT plan" not in message
    assert "CUDA" in message or "TensorRT" in message


@pytest.mark.gpu
def test_tensorrt_engine_matches_onnxruntime(exported, tmp_path, monkeypatch):
    """Full TensorRT + GPU: build the export, run it with and without CUDA graphs, several contexts, and with
    GPU preprocessing."""
    trt = pytest.importorskip("tensorrt", reason="full TensorRT not installed (engines cannot be built here)")
    if not hasattr(trt, "Builder"):
        pytest.skip("TensorRT builder not available")
    from media import frame_pair
    from rgbir.parity import compare, random_inputs
    from rgbir.plugins import CompileOptions, compile_library
    from rgbir.runtime.backends.tensorrt_backend import TensorRTBackend
    from rgbir.runtime.frames import Frame, FramePair
    from rgbir.runtime.inference import DetectSettings, PairDetector
    from rgbir.runtime.postprocess import Detections, match_detections
    from rgbir.trt import build_engine

    info = _gpu_or_skip()
    library = compile_library(CompileOptions(arch="".join(map(str, info.compute_capability)),
                                         output_dir=tmp_path / "plugins"))
    monkeypatch.setenv("RGBIR_PLUGIN_LIBRARY", str(library))  # the attention node maps to the plugin
    _, onnx_path = exported
    result = build_engine(onnx_path, tmp_path / "m.engine")
    reference = OnnxRuntimeBackend(onnx_path)
    inputs = random_inputs(reference.metadata, 2, seed=5)
    for graph in (False, True):
        backend = TensorRTBackend(result.engine, cuda_graph=graph, contexts=2)
        report = compare(reference, backend, inputs, backend.metadata)
        assert report.passed, report.outputs
        backend.close()
    # frames letterboxed on the GPU give the detections the CPU path gives
    pairs = [FramePair(0, Frame(r, i, 0.0, 0.0, "rgb"), Frame(ir, i, 0.0, 0.0, "ir"))
             for i, (r, ir) in enumerate(frame_pair(i, size=(120, 160), ir_size=(60, 80)) for i in range(4))]
    settings = DetectSettings(conf=0.01)
    cpu = PairDetector(reference, settings)(pairs)
    gpu = PairDetector(TensorRTBackend(result.engine, gpu_preprocess=True), settings)(pairs)

    def dets(results):
        return [Detections(np.array([d.box_rgb for d in r.detections], np.float32).reshape(-1, 4),
                           np.array([d.score for d in r.detections], np.float32),
                           np.array([d.cls for d in r.detections])) for r in results]

    agreement = match_detections(dets(cpu), dets(gpu), iou=0.9)
    assert agreement.matched >= 0.9 * max(agreement.reference, agreement.candidate)


def test_doctor_reports_every_component(capsys):
    from rgbir.cli import main
    from rgbir.doctor import run_checks

    checks = {c.name: c for c in run_checks()}
    assert {"rgbir", "numpy", "onnx", "onnxruntime", "CPU attention kernel", "opencv", "torch", "TensorRT",
            "nvcc"} <= set(checks)
    assert checks["onnxruntime"].status == "ok" and "CPUExecutionProvider" in checks["onnxruntime"].detail
    assert all(c.status in ("ok", "warn", "missing") for c in checks.values())
    assert all(c.hint for c in checks.values() if c.status == "missing")  # every problem comes with a fix
    assert main(["doctor", "--json"]) == 0
    assert {c["name"] for c in json.loads(capsys.readouterr().out)} == set(checks)


def test_doctor_says_whether_the_cpu_attention_kernel_can_be_had(tmp_path, monkeypatch):
    from rgbir.doctor import check_cpu_kernel
    from rgbir.plugins.cpu import COMPILERS

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    if any(shutil.which(c) for c in COMPILERS):  # a fresh cache: not compiled yet
        assert check_cpu_kernel().detail.startswith("compiled on first use with ")
    monkeypatch.setenv("CXX", "no-such-compiler")
    check = check_cpu_kernel()
    assert check.status == "missing" and check.detail == "CXX=no-such-compiler is not a program on this machine"
    assert "apt install g++" in check.hint


def test_doctor_reports_the_headers_the_plugin_compiler_will_use(tmp_path, monkeypatch):
    """Cached kernel-lens headers are what 'rgbir plugins compile' uses when no TensorRT is installed: doctor says
    so, and without them it says the compiler will fetch them (not 'missing')."""
    from rgbir.doctor import check_toolchain
    from rgbir.plugins import compiler

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    for name in ("RGBIR_TENSORRT_INCLUDE", "TENSORRT_ROOT", "TRT_ROOT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(compiler, "SYSTEM_INCLUDES", [str(tmp_path / "none")])
    headers = {c.name: c for c in check_toolchain()}["TensorRT headers"]
    assert headers.status == "warn" and "will fetch kernel-lens" in headers.detail
    include = compiler.kernel_lens_include()
    include.mkdir(parents=True)
    (include / "NvInferRuntime.h").write_text("// cached\n")
    headers = {c.name: c for c in check_toolchain()}["TensorRT headers"]
    assert headers.status == "ok" and str(include) in headers.detail and "kernel-lens" in headers.detail
    assert compiler.find_tensorrt_include()[0] == include  # the same directory the compiler takes


class FramesOnCpu(OnnxRuntimeBackend):
    """A backend that takes frames (a ``FramePreprocessor``) like the TensorRT backend with --gpu-preprocess,
    doing the letterbox on the CPU: checks what the pipeline hands over, not the kernel (tests/test_plugins.py)."""

    def preprocessor(self):
        from rgbir.runtime.preprocess import FramePreprocessor

        return FramePreprocessor(self.metadata)

    def infer_frames(self, rgb, ir=None):
        from rgbir.runtime.preprocess import preprocess_pair

        self.handed += list(zip(rgb, ir))
        done = [preprocess_pair(r, i, self.metadata) for r, i in zip(rgb, ir)]
        arrays = [np.concatenate([d[0][k] for d in done]) for k in range(2)]
        return self.infer(*arrays), [d[1] for d in done]


def test_frames_reach_a_device_preprocessing_backend_with_the_same_results(exported):
    from media import frame_pair
    from rgbir.runtime.frames import Frame, FramePair
    from rgbir.runtime.inference import DetectSettings, PairDetector

    _, onnx_path = exported
    pairs = []
    for i in range(3):
        rgb, ir = frame_pair(i, size=(120, 160), ir_size=(60, 80))
        pairs.append(FramePair(0, Frame(rgb, i, 0.0, 0.0, "rgb"), Frame(ir, i, 0.0, 0.0, "ir")))
    settings = DetectSettings(conf=0.01)
    cpu = PairDetector(OnnxRuntimeBackend(onnx_path), settings)(pairs)
    backend = FramesOnCpu(onnx_path)
    backend.handed = []
    device = PairDetector(backend, settings)(pairs)
    assert [(r.shape, i.shape[:2]) for r, i in backend.handed] == [((120, 160, 3), (60, 80))] * 3  # frames
    assert sum(len(r.detections) for r in cpu) > 0
    assert [[(d.cls, d.score, d.box_rgb, d.box_ir) for d in r.detections] for r in device] == \
        [[(d.cls, d.score, d.box_rgb, d.box_ir) for d in r.detections] for r in cpu]


# the TensorRT backend's own logic, on a CPU stand-in for the GPU (tests/fake_device.py) ----------------------
@pytest.fixture
def fake_gpu(monkeypatch, tmp_path):
    """An engine file + sidecar, with rgbir.trt.cuda and TensorRT replaced by CPU stand-ins."""
    import fake_device
    from rgbir.runtime.backends import tensorrt_backend
    from rgbir.trt import registry

    def setup(min_batch=1, max_batch=4, **sidecar):
        trt = fake_device.fake_tensorrt_runtime(min_batch, max_batch)
        info = DeviceInfo_(0, "Orin", (8, 7), False, True, 8 << 30, 12060, 12060)
        monkeypatch.setattr(tensorrt_backend, "cuda", fake_device.fake_cuda(info))
        monkeypatch.setattr(registry, "tensorrt_module", lambda edition="standard": trt)
        engine = tmp_path / "m.engine"
        engine.write_bytes(b"plan")
        meta = engine_meta(**sidecar)
        meta.model.inputs = [InputSpec("rgb", 3, "RGB"), InputSpec("ir", 1, "GRAY")]
        write_sidecar(engine, meta)
        return engine, trt

    from rgbir.trt.cuda import DeviceInfo as DeviceInfo_

    return setup


def _inputs(batch, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((batch, 3, 4, 4), np.float32), rng.random((batch, 1, 4, 4), np.float32)


def _expected(rgb, ir):
    return np.stack([rgb.reshape(len(rgb), -1).sum(1), ir.reshape(len(ir), -1).sum(1)], 1)


def test_tensorrt_backend_runs_batches_pads_to_the_smallest_and_refuses_the_rest(fake_gpu):
    from rgbir.runtime.backends.tensorrt_backend import TensorRTBackend

    engine, trt = fake_gpu(min_batch=2, max_batch=4)
    backend = TensorRTBackend(engine)
    assert (backend.min_batch, backend.max_batch) == (2, 4) and backend.input_names == ["rgb", "ir"]
    assert backend.metadata.precision == "fp16" and backend.warnings == []
    for batch in (3, 1, 4):  # 1 is padded to the engine's smallest batch of 2, and the padding's output dropped
        rgb, ir = _inputs(batch, batch)
        np.testing.assert_allclose(backend.infer(rgb, ir)["predictions"], _expected(rgb, ir), rtol=1e-6)
    with pytest.raises(RgbirError, match="outside the engine's optimisation profile"):
        backend.infer(*_inputs(5))
    rgb, ir = _inputs(2, 9)
    np.testing.assert_allclose(backend.infer(rgb, ir)["predictions"], _expected(rgb, ir), rtol=1e-6)
    with pytest.raises(RgbirError, match="2 RGB inputs but 5 IR inputs"):
        backend.infer(rgb, np.zeros((5, 1, 4, 4), np.float32))
    slot = backend.slots[0]
    with pytest.raises(RgbirError, match="outside the engine's optimisation profile"):  # rgb set, then ir refused
        slot.run({"rgb": _inputs(3)[0], "ir": _inputs(5)[1]})
    np.testing.assert_allclose(backend.infer(rgb, ir)["predictions"], _expected(rgb, ir), rtol=1e-6)  # not stale
    with pytest.raises(RgbirError, match=r"input 'ir' has shape 2x3x4x4; the model takes Nx1x4x4"):
        backend.infer(rgb, np.zeros((2, 3, 4, 4), np.float32))
    backend.close()
    with pytest.raises(RgbirError, match="closed"):
        backend.infer(rgb, ir)


def test_build_then_open_twice_in_one_process_with_the_real_plugin_registry(fake_gpu, plugin_library, lean_trt,
                                                                           tmp_path, monkeypatch):
    """The main job's first use: build an engine, then open it — twice, two backends at once — in one process,
    all against TensorRT's real (lean) plugin registry, which returns None for every load after the first."""
    monkeypatch.setenv("RGBIR_PLUGIN_LIBRARY", str(plugin_library))  # not another library compiled on this machine
    import fake_tensorrt
    from attention_onnx import metadata, small_onnx
    from rgbir.files import file_sha256
    from rgbir.runtime.backends.tensorrt_backend import TensorRTBackend
    from rgbir.trt import EngineOptions, build_engine
    from rgbir.trt.cuda import DeviceInfo

    onnx_path = small_onnx(tmp_path / "m.onnx", metadata(precision="fp16"))
    for _ in range(2):  # two builds, as two 'rgbir build' calls from one Python session would
        builder = fake_tensorrt.make("11.4.0")
        builder.get_plugin_registry = lean_trt.get_plugin_registry
        result = build_engine(onnx_path, tmp_path / "built.engine", EngineOptions(version_compatible=True,
                              plugin_library=plugin_library), trt=builder,
                              device=DeviceInfo(0, "H100", (9, 0), False, True, 80 << 30, 13000, 13000))
        record = json.loads(result.engine.read_bytes())
        assert record["plugins_to_serialize"] == [str(plugin_library.resolve())]
        assert record["importers"]["model.22/TopKSparseAttention"] == "plugin"
    assert read_sidecar(result.engine).plugin_library == str(plugin_library.resolve())
    engine, runtime = fake_gpu(plugin_library=str(plugin_library), plugin_sha256=file_sha256(plugin_library))
    runtime.get_plugin_registry = lean_trt.get_plugin_registry
    first, second = TensorRTBackend(engine), TensorRTBackend(engine)
    assert first.warnings == second.warnings == []
    rgb, ir = _inputs(2)
    np.testing.assert_allclose(second.infer(rgb, ir)["predictions"], _expected(rgb, ir), rtol=1e-6)
    first.close()
    second.close()


def test_tensorrt_backend_cuda_graphs_replay_new_inputs_and_recapture_after_a_shape_change(fake_gpu):
    import fake_device
    from rgbir.runtime.backends.tensorrt_backend import TensorRTBackend

    engine, trt = fake_gpu()
    backend = TensorRTBackend(engine, cuda_graph=True)
    fake_device.CAPTURED.clear()
    for batch, seed in ((2, 0), (2, 1), (2, 2), (3, 3), (2, 4)):
        rgb, ir = _inputs(batch, seed)
        np.testing.assert_allclose(backend.infer(rgb, ir)["predictions"], _expected(rgb, ir), rtol=1e-6)
    # captured at batch 2, replayed twice with new inputs, dropped for batch 3 (recaptured), again for batch 2
    assert [g.launches for g in fake_device.CAPTURED] == [3, 1, 1]
    assert [g.destroyed for g in fake_device.CAPTURED] == [True, True, False]
    backend.close()


def test_tensorrt_backend_zero_copy_slots_and_refusals(fake_gpu, tmp_path):
    import threading

    from rgbir.runtime.backends.tensorrt_backend import TensorRTBackend

    engine, trt = fake_gpu()
    backend = TensorRTBackend(engine, zero_copy=True, contexts=2)  # mapped buffers: no copies at all
    results = {}

    def call(seed):
        rgb, ir = _inputs(2, seed)
        results[seed] = np.allclose(backend.infer(rgb, ir)["predictions"], _expected(rgb, ir), rtol=1e-6)

    threads = [threading.Thread(target=call, args=(seed,)) for seed in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert results == {seed: True for seed in range(8)}
    backend.close()
    engine_v, _ = fake_gpu(tensorrt_version="10.4.0")  # the sidecar says another TensorRT built it
    with pytest.raises(RgbirError, match="built with TensorRT 10.4.0 and this is TensorRT 10.3.0.26"):
        TensorRTBackend(engine_v)
    engine_w, _ = fake_gpu(gpu_name="Orin NX")
    assert "built on Orin NX" in TensorRTBackend(engine_w).warnings[0]


def test_the_pipeline_closes_the_backend_it_opened(tmp_path, monkeypatch):
    from fakes import NumpyBackend, RecordingSink
    from media import write_folders
    from rgbir.runtime import pipeline
    from rgbir.runtime.config import PipelineConfig, StreamConfig

    class Closing(NumpyBackend):
        closed = 0

        def close(self):
            Closing.closed += 1

    rgb_dir, ir_dir = write_folders(tmp_path, 3)
    monkeypatch.setattr(pipeline, "open_backend", lambda *a, **k: Closing())
    config = PipelineConfig(model="m.onnx", streams=[StreamConfig(str(rgb_dir), str(ir_dir))], stats_interval=0)
    pipeline.Pipeline(config, sinks=[RecordingSink()]).run()
    assert Closing.closed == 1
    given = Closing()
    pipeline.Pipeline(config, backend=given, sinks=[RecordingSink()]).run()
    assert Closing.closed == 1  # a backend the caller passed in stays open for the caller
