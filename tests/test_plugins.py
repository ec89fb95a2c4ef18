"""The TensorRT plugin library: compiled with nvcc against TensorRT headers, checked in TensorRT's lean runtime
on the CPU (load, creator fields, creation from an exported node's attributes, serialisation, bad attributes);
the kernel itself against the PyTorch reference on a GPU when there is one."""

import ctypes
import shutil
import subprocess

import numpy as np
import pytest

from rgbir.errors import RgbirError
from rgbir.ops import TOPK_SPARSE_ATTENTION as OP
from rgbir.plugins import CompileOptions, compile_library, find_library, load
from rgbir.plugins.compiler import cuda_architectures

needs_toolchain = pytest.mark.skipif(not (shutil.which("nvcc") and shutil.which("cmake")),
                                     reason="nvcc and cmake are needed to compile the plugin library")
ONNX_TO_FIELD = {"FLOAT": "FLOAT32", "INTS": "INT32", "FLOATS": "FLOAT32"}


@pytest.fixture(scope="session")
def creator(lean_trt):
    found = lean_trt.get_plugin_registry().get_creator(OP.name, OP.version, OP.domain)
    assert found is not None
    return found


def fields(trt, **values):
    kinds = {"FLOAT32": (trt.PluginFieldType.FLOAT32, np.float32), "INT32": (trt.PluginFieldType.INT32, np.int32)}
    out = []
    for name, value in values.items():
        onnx_type = dict(OP.attributes)[name]
        kind, dtype = kinds[ONNX_TO_FIELD[onnx_type]]
        out.append(trt.PluginField(name, np.atleast_1d(np.asarray(value, dtype)), kind))
    return trt.PluginFieldCollection(out)


def test_library_links_no_tensorrt_and_exports_only_its_entry_points(plugin_library):
    needed = subprocess.run(["readelf", "-d", str(plugin_library)], capture_output=True, text=True).stdout
    assert "libnvinfer" not in needed and "libcudart.so" not in needed  # headers only, static CUDA runtime
    exported = subprocess.run(["nm", "-D", "--defined-only", str(plugin_library)], capture_output=True, text=True).stdout
    names = {line.split()[-1] for line in exported.splitlines() if " T " in line}
    assert names == {"getCreators", "setLoggerFinder", "rgbirTopKSparseAttentionLaunch",
                     "rgbirTopKSparseAttentionWorkspaceSize", "rgbirTopKSparseAttentionTiledLaunch",
                     "rgbirLetterboxLaunch"}


def test_letterbox_launch_rejects_bad_arguments_before_touching_the_gpu(plugin_library):
    from rgbir.metadata import InputSpec, ModelMetadata
    from rgbir.runtime.gpu_preprocess import DeviceLetterbox

    meta = ModelMetadata("t", {0: "a"}, (64, 96), 1, [InputSpec("rgb", 3, "RGB")], [8.0])
    launch = DeviceLetterbox(meta, plugin_library).launch  # the ctypes signature the backend uses
    good = [None, 48, 80, 240, 3, None, 64, 96, 3, 0, 58, 96, 3, 0, 1, 114.0, 1 / 255, None]

    def call(**changes):
        args = list(good)
        for index, value in changes.items():
            args[int(index[1:])] = value
        return launch(*args)

    assert call(a12=10) == -1  # placed outside the output
    assert call(a3=100) == -1  # pitch shorter than a row
    assert call(a4=4) == -2 and call(a8=2) == -2
    assert call(a9=2) == -3


def test_workspace_is_needed_only_for_long_rows(plugin_library):
    lib = ctypes.CDLL(str(plugin_library))
    lib.rgbirTopKSparseAttentionWorkspaceSize.restype = ctypes.c_size_t
    assert lib.rgbirTopKSparseAttentionWorkspaceSize(1600) == 0
    assert lib.rgbirTopKSparseAttentionWorkspaceSize(16384) == 1024 * 16384 * 4


LAUNCHERS = ["rgbirTopKSparseAttentionLaunch", "rgbirTopKSparseAttentionTiledLaunch"]  # current, tiled


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_invalid_launch_arguments_are_rejected_before_touching_the_gpu(plugin_library, launcher):
    """Both launchers share one argument check (topkLaunchArgs.h): same codes, nothing reaches the GPU."""
    call = getattr(ctypes.CDLL(str(plugin_library)), launcher)
    divisors, weights = (ctypes.c_int32 * 2)(2, 3), (ctypes.c_float * 2)(0.5, 0.5)
    args = [None, None, None, None, 1, 8, 16, 16, 16, 16, ctypes.c_float(0.25), divisors, weights]
    assert call(*args[:4], 1, 8, 16, 16, 300, 16, *args[10:], 2, 0, None, 0, None) == -1
    assert call(*args[:4], 0, 8, 16, 16, 16, 16, *args[10:], 2, 0, None, 0, None) == -1
    assert call(*args, 0, 0, None, 0, None) == -2
    assert call(*args, 9, 0, None, 0, None) == -2
    assert call(*args, 2, 7, None, 0, None) == -3
    assert call(*args[:11], (ctypes.c_int32 * 2)(2, 0), weights, 2, 0, None, 0, None) == -2
    if launcher == "rgbirTopKSparseAttentionLaunch":  # the tiled kernel needs no workspace
        assert call(*args[:7], 16384, *args[8:], 2, 0, None, 0, None) == -4


@pytest.fixture(scope="session")
def letterbox_harness(tmp_path_factory):
    """tests/letterbox_harness.cu: the GPU letterbox's per-pixel function compiled for and run on the CPU."""
    if not shutil.which("nvcc"):
        pytest.skip("nvcc is needed to compile the letterbox harness")
    from pathlib import Path

    import rgbir.plugins

    exe = tmp_path_factory.mktemp("letterbox") / "harness"
    csrc = Path(rgbir.plugins.__file__).parent / "csrc"
    subprocess.run(["nvcc", "-std=c++17", "-I", str(csrc), "-o", str(exe),
                    str(Path(__file__).parent / "letterbox_harness.cu")], check=True, capture_output=True)
    return exe


@pytest.mark.parametrize("frame_shape, size, channels, order", [
    ((480, 640, 3), (640, 640), 3, "RGB"),   # no resize, only padding: must be exact
    ((512, 640), (512, 640), 1, "GRAY"),     # nothing to do at all
    ((240, 320, 3), (640, 640), 3, "RGB"),   # 2x upscale
    ((480, 640, 3), (320, 384), 3, "BGR"),   # downscale, channel order kept
    ((123, 457, 3), (256, 320), 3, "RGB"),   # odd sizes and ratios
    ((120, 160), (480, 640), 3, "BGR"),      # grey IR into a 3-channel input
    ((96, 128), (256, 320), 1, "GRAY"),      # grey IR into a 1-channel input
    ((100, 150, 3), (320, 320), 1, "GRAY"),  # colour frame into a 1-channel input (BGR2GRAY)
])
def test_gpu_letterbox_pixel_code_matches_opencv_on_the_cpu(letterbox_harness, tmp_path, frame_shape, size,
                                                            channels, order):
    """The kernel's own per-pixel code against rgbir.runtime.preprocess (OpenCV): identical, resizing included
    (the kernel reproduces OpenCV's 11-bit fixed-point INTER_LINEAR and 15-bit BGR2GRAY)."""
    from rgbir.metadata import InputSpec
    from rgbir.runtime.preprocess import letterbox, letterbox_geometry, to_input

    rng = np.random.default_rng(sum(frame_shape))
    frame = cv2_smooth(rng.integers(0, 256, frame_shape, dtype=np.uint8))
    spec = InputSpec("x", channels, order)
    boxed, info = letterbox(frame, size)
    expected = to_input(boxed, spec)[0]
    (rh, rw), geometry = letterbox_geometry(frame.shape[:2], size)
    assert geometry == info
    (tmp_path / "in.u8").write_bytes(frame.tobytes())
    src_c = 1 if frame.ndim == 2 else 3
    subprocess.run([str(letterbox_harness), str(tmp_path / "in.u8"), str(tmp_path / "out.f32"), *map(str, (
        *frame.shape[:2], src_c, *size, channels, rh, rw, info.pad_top, info.pad_left,
        int(channels == 3 and order == "RGB")))], check=True)
    got = np.fromfile(tmp_path / "out.f32", np.float32).reshape(expected.shape)
    np.testing.assert_array_equal(got, expected)  # bit for bit, resizing included


def cv2_smooth(noise: np.ndarray) -> np.ndarray:
    """Camera-like content (smooth regions and edges), not pure noise."""
    import cv2

    return cv2.GaussianBlur(noise, (0, 0), 3)


def test_registering_twice_is_idempotent_in_the_real_registry(plugin_library, lean_trt, tmp_path):
    """TensorRT's registry returns None for a second load of registered plugins (NvInferRuntimeCommon.h); rgbir's
    registration does not fail on it, whether the library is the same file or another copy of it."""
    assert lean_trt.get_plugin_registry().load_library(str(plugin_library)) is None  # the real API's answer
    assert load(plugin_library, lean_trt) == load(plugin_library, lean_trt) == plugin_library.resolve()
    copy = tmp_path / "copy" / "librgbir_plugins.so"
    copy.parent.mkdir()
    shutil.copy(plugin_library, copy)
    assert load(copy, lean_trt) == copy.resolve()  # its creator is registered already: it counts as loaded


def test_creator_fields_are_exactly_the_exported_attributes(creator):
    assert (creator.name, creator.plugin_version, creator.plugin_namespace) == (OP.name, OP.version, OP.domain)
    declared = [(f.name, f.type.name) for f in creator.field_names]
    assert declared == [(name, ONNX_TO_FIELD[kind]) for name, kind in OP.attributes]


def test_plugin_from_an_exported_nodes_attributes(creator, lean_trt, tmp_path):
    """Build the field collection the way TensorRT's ONNX parser does: only attributes named by the creator."""
    import onnx
    import torch

    from rgbir.export import topk_function
    from rgbir.models.fusion import MSC

    msc = MSC(32, 4).eval()
    with torch.no_grad():
        msc.attn1.fill_(0.25)
    msc.prepare_export()
    proto = torch.onnx.export(msc, ([torch.randn(1, 32, 4, 6), torch.randn(1, 32, 4, 6)],), dynamo=True,
                              verbose=False).model_proto
    topk_function.attach(proto)
    (node,) = [n for n in proto.graph.node if n.domain == OP.domain]
    names = {f.name for f in creator.field_names}
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute if a.name in names}
    assert set(attrs) == names  # plugin_version / plugin_namespace go to the parser, not the plugin
    plugin = creator.create_plugin(node.name, fields(lean_trt, **attrs), lean_trt.TensorRTPhase.BUILD)
    assert plugin is not None
    core = plugin.get_capability_interface(lean_trt.PluginCapabilityType.CORE)
    assert (core.plugin_name, core.plugin_version, core.plugin_namespace) == (OP.name, OP.version, OP.domain)


@pytest.fixture(scope="session")
def harness(plugin_library, tmp_path_factory):
    """tests/plugin_harness.cpp, compiled against the same TensorRT headers, run on the library."""
    from pathlib import Path

    from rgbir.plugins.compiler import find_tensorrt_include

    include, _ = find_tensorrt_include()
    exe = tmp_path_factory.mktemp("harness") / "harness"
    source = Path(__file__).parent / "plugin_harness.cpp"
    subprocess.run(["nvcc", "-std=c++17", "-Xcompiler", "-Wno-deprecated-declarations", f"-I{include}", str(source),
                    "-o", str(exe), "-ldl"], check=True, capture_output=True)
    result = subprocess.run([str(exe), str(plugin_library)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    return {" ".join(parts[:2]) if parts[0] in ("saved", "restored", "clone", "supports", "workspace") else parts[0]:
            parts for parts in lines}, result.stdout


def test_serialisation_round_trip_clone_and_build_contract(harness):
    out, text = harness
    assert out["creators"][1:] == ["1", "PLUGIN", "CREATOR_V3ONE"]
    for tag in ("saved", "restored", "clone"):
        assert out[f"{tag} scale"][2:] == ["1", "0.125"]
        assert out[f"{tag} k_divisors"][2:] == ["3", "2", "3", "5"]
        assert out[f"{tag} weights"][2:] == ["3", "0.2", "0.3", "0.5"]
    assert out["outputs"][1] == "1" and out["output_type_for_half"][1] == "1"  # kHALF in, kHALF out
    assert out["supports 0"][2] == "1" and out["supports 1"][2] == "1" and out["supports 2"][2] == "0"  # no INT8
    assert out["supports_mixed"][1] == "0"  # every tensor has q's type
    assert out["workspace 1600"][2] == "0" and out["workspace 16384"][2] == str(1024 * 16384 * 4)
    assert out["configure_ok"][1] == "0" and out["configure_mismatch"][1] == "-1"
    assert out["bad_plugin"][1] == "null" and "k_divisors is empty" in text and text.rstrip().endswith("done")
    assert "log 1 TopKSparseAttention 'bad'" in text  # reported through TensorRT's logger (kERROR = 1)


@pytest.mark.parametrize("values,message", [
    (dict(scale=0.5, k_divisors=[], weights=[]), "k_divisors is empty"),
    (dict(scale=0.5, k_divisors=[2, 3], weights=[1.0]), "weights has 1 entries but k_divisors has 2"),
    (dict(scale=0.5, k_divisors=[2, 0], weights=[0.5, 0.5]), "k_divisors entries must be >= 1"),
    (dict(k_divisors=[2], weights=[1.0]), "scale field is missing"),
])
def test_bad_attributes_are_refused_with_a_logged_error(creator, lean_trt, capfd, values, message):
    assert creator.create_plugin("bad", fields(lean_trt, **values), lean_trt.TensorRTPhase.BUILD) is None
    assert message in capfd.readouterr().err


def test_loader_and_architectures(tmp_path, monkeypatch):
    monkeypatch.setenv("RGBIR_PLUGIN_LIBRARY", str(tmp_path / "missing.so"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(RgbirError, match="rgbir plugins compile"):
        find_library()
    assert cuda_architectures("orin") == "87" and cuda_architectures("75,86") == "75;86"
    with pytest.raises(RgbirError, match="--arch"):
        cuda_architectures("61")


# GPU: the kernel through its C launcher ------------------------------------------------------------------------
def _cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU: the kernel's numerics are checked on a GPU machine")
    return torch


@pytest.fixture(scope="session")
def gpu_library(tmp_path_factory):
    torch = _cuda()
    major, minor = torch.cuda.get_device_capability()
    return compile_library(CompileOptions(arch=f"{major}{minor}", output_dir=tmp_path_factory.mktemp("gpu")),
                         log=lambda m: None)


def launch(lib, q, k, v, scale, divisors, weights, stream=None):
    torch = _cuda()
    b, h, n, d = q.shape
    n1, dv = k.shape[2], v.shape[3]
    out = torch.empty(b, h, n, dv, device=q.device, dtype=q.dtype)
    lib.rgbirTopKSparseAttentionWorkspaceSize.restype = ctypes.c_size_t
    size = lib.rgbirTopKSparseAttentionWorkspaceSize(n1)
    workspace = torch.empty(max(size, 1), dtype=torch.uint8, device=q.device)
    status = lib.rgbirTopKSparseAttentionLaunch(
        ctypes.c_void_p(q.data_ptr()), ctypes.c_void_p(k.data_ptr()), ctypes.c_void_p(v.data_ptr()),
        ctypes.c_void_p(out.data_ptr()), b, h, n, n1, d, dv, ctypes.c_float(scale),
        (ctypes.c_int32 * len(divisors))(*divisors), (ctypes.c_float * len(weights))(*weights), len(divisors),
        1 if q.dtype == torch.float16 else 0, ctypes.c_void_p(workspace.data_ptr()), ctypes.c_size_t(size),
        ctypes.c_void_p(stream or torch.cuda.current_stream().cuda_stream))
    assert status == 0
    return out


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("batch,n,n1,d,dv", [(1, 400, 400, 16, 16), (1, 1600, 1600, 16, 16), (4, 1600, 1600, 32, 32),
                                             (1, 6400, 6400, 16, 16), (1, 14400, 14400, 16, 16),
                                             (1, 1600, 400, 64, 32), (4, 400, 1600, 32, 64)])
def test_kernel_matches_the_pytorch_reference(gpu_library, dtype, batch, n, n1, d, dv):
    torch = _cuda()
    from rgbir.models.sparse_attention import topk_sparse_attention

    lib = ctypes.CDLL(str(gpu_library))
    t = getattr(torch, dtype)
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k = (torch.randn(batch, 8, m, d, device="cuda", generator=g).to(t) for m in (n, n1))
    v = torch.randn(batch, 8, n1, dv, device="cuda", generator=g).to(t)
    out = launch(lib, q, k, v, d**-0.5, [2, 3], [0.6, 0.4]).float()
    ref = topk_sparse_attention(q.float(), k.float(), v.float(), d**-0.5, (2, 3), (0.6, 0.4))
    tol = 1e-4 if dtype == "float32" else 2e-2
    assert ((out - ref).abs().max() / ref.abs().max()).item() <= tol


@pytest.mark.gpu
def test_kernel_keeps_ties_and_replays_in_a_cuda_graph(gpu_library):
    torch = _cuda()
    from rgbir.models.sparse_attention import topk_sparse_attention

    lib = ctypes.CDLL(str(gpu_library))
    base = torch.randint(-2, 3, (1, 2, 50, 8), device="cuda").float()
    k = torch.cat([base, base], 2)  # every key twice: rows tie at their thresholds
    q = torch.randint(-2, 3, (1, 2, 64, 8), device="cuda").float()
    v = torch.randn(1, 2, 100, 8, device="cuda")
    ref = topk_sparse_attention(q, k, v, 0.5, (2, 3), (0.5, 0.5))
    torch.testing.assert_close(launch(lib, q, k, v, 0.5, [2, 3], [0.5, 0.5]), ref, atol=1e-4, rtol=1e-4)
    stream = torch.cuda.Stream()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.stream(stream):
        launch(lib, q, k, v, 0.5, [2, 3], [0.5, 0.5], stream=stream.cuda_stream)  # warm-up outside capture
        with torch.cuda.graph(graph, stream=stream):
            out = launch(lib, q, k, v, 0.5, [2, 3], [0.5, 0.5], stream=stream.cuda_stream)
    q.copy_(torch.randint(-2, 3, q.shape, device="cuda").float())
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(out, topk_sparse_attention(q, k, v, 0.5, (2, 3), (0.5, 0.5)), atol=1e-4, rtol=1e-4)


@pytest.mark.gpu
@pytest.mark.parametrize("frame_shape, channels, order, dtype", [
    ((480, 640, 3), 3, "RGB", np.float32), ((512, 640, 3), 3, "BGR", np.float16),  # resized / letterboxed only
    ((240, 320), 3, "BGR", np.float32), ((120, 160), 1, "GRAY", np.float16)])      # grey IR → 3 or 1 channel
def test_gpu_letterbox_matches_the_cpu_path(gpu_library, frame_shape, channels, order, dtype):
    """The kernel through the backend's DeviceLetterbox against rgbir.runtime.preprocess (OpenCV)."""
    _cuda()
    pytest.importorskip("cuda.bindings", reason="cuda-python not installed")
    from rgbir.metadata import InputSpec, ModelMetadata
    from rgbir.trt import cuda
    from rgbir.runtime.gpu_preprocess import DeviceLetterbox
    from rgbir.runtime.preprocess import letterbox, to_input

    spec = InputSpec("ir" if len(frame_shape) == 2 else "rgb", channels, order)
    meta = ModelMetadata("t", {0: "a"}, (640, 640), 2, [spec], [8.0])
    frame = np.random.default_rng(0).integers(0, 256, frame_shape, dtype=np.uint8)
    boxed, info = letterbox(frame, meta.imgsz)
    expected = to_input(boxed, spec, np.float32)[0]
    stream = cuda.Stream()
    out = cuda.HostBuffer((2, channels, 640, 640), dtype)
    device = cuda.DeviceBuffer(out.array.nbytes)
    gpu = DeviceLetterbox(meta, gpu_library)
    got_info = gpu(frame, spec, 1, device.pointer, np.dtype(dtype), stream)  # batch slot 1
    stream.copy_to_host(out, device.pointer, out.array.nbytes)
    stream.synchronize()
    assert got_info == info
    diff = np.abs(out.array[1].astype(np.float32) - expected)
    assert diff.max() <= (1e-3 if dtype == np.float16 else 0)  # identical up to the float16 store
    gpu.free()
    device.free()
    out.free()
    stream.destroy()
