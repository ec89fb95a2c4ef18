"""The TensorRT plugin library: compiled with nvcc against TensorRT headers, checked in TensorRT's lean runtime
on the CPU (load, creator fields, creation from an exported node's attributes, serialisation, bad attributes); the
tiled top-k kernel's block code run on the CPU (tests/topk_select_harness.cu); both top-k kernels against a float64
reference on a GPU when there is one (tests/topk_reference.py, ambiguity-aware)."""

import ctypes
import os
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from rgbir.errors import RgbirError
from rgbir.ops import TOPK_SPARSE_ATTENTION as OP
from rgbir.plugins import CompileOptions, compile_library, find_library, load
from rgbir.plugins.compiler import cuda_architectures
from seeds import input_seed

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
    exported = subprocess.run(["nm", "-D", "--defined-only", str(plugin_library)], capture_output=True,
                              text=True).stdout
    names = {line.split()[-1] for line in exported.splitlines() if " T " in line}
    assert names == {"getCreators", "setLoggerFinder", "rgbirTopKSparseAttentionLaunch",
                     "rgbirTopKSparseAttentionWorkspaceSize", "rgbirTopKSparseAttentionTiledLaunch",
                     "rgbirLetterboxLaunch"}


def test_letterbox_launch_rejects_bad_arguments_before_touching_the_gpu(plugin_library):
    from rgbir.metadata import InputSpec, ModelMetadata
    from rgbir.runtime.gpu_preprocess import LetterboxKernel

    meta = ModelMetadata("t", {0: "a"}, (64, 96), 1, [InputSpec("rgb", 3, "RGB")], [8.0])
    launch = LetterboxKernel(meta, plugin_library).launch  # the ctypes signature both backends use
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


# The tiled kernel's block code on the CPU (tests/topk_select_harness.cu) --------------------------------------
CSRC = Path(__file__).resolve().parents[1] / "rgbir" / "plugins" / "csrc"
CUDA_SOURCES = ["topk_sparse_attention/topkSparseAttentionKernel.cu",
                "topk_sparse_attention/topkSparseAttentionTiled.cu", "letterbox/letterboxKernel.cu"]
TARGETS = ["75", "86", "87", "90"]  # Turing, Ampere desktop, Orin, Hopper
SHARED_LIMITS = {"75": (65536, 65536), "86": (101376, 102400), "87": (166912, 167936), "90": (232448, 233472)}


@pytest.mark.skipif(not shutil.which("nvcc"), reason="nvcc is needed")
def test_cuda_sources_compile_for_every_target_architecture(tmp_path):
    """The library's CUDA translation units for sm_75, 86, 87 and 90 (the C++ ones are architecture-free and the
    session's plugin_library fixture links the whole library); no register spills beyond a few words."""
    from concurrent.futures import ThreadPoolExecutor

    gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in TARGETS]

    def compile_one(source):
        return subprocess.run(["nvcc", "-std=c++17", "-O3", "-c", "-Xcompiler", "-fPIC", *gencode, "--resource-usage",
                               str(CSRC / source), "-o", str(tmp_path / (Path(source).stem + ".o"))],
                              capture_output=True, text=True)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(compile_one, CUDA_SOURCES))
    for source, result in zip(CUDA_SOURCES, results):
        assert result.returncode == 0, f"{source}:\n{result.stderr[-3000:]}"
    usage = results[1].stdout + results[1].stderr
    spills = [int(x) for x in re.findall(r"(\d+) bytes spill stores", usage)]
    assert len(spills) == 2 * len(TARGETS) and max(spills) <= 64, usage  # float and half kernel per target


@pytest.fixture(scope="session")
def topk_harness(tmp_path_factory):
    """tests/topk_select_harness.cu compiled as host C++ by nvcc: the tiled kernel's block code on the CPU."""
    if not shutil.which("nvcc"):
        pytest.skip("nvcc is needed to compile the top-k harness")
    exe = tmp_path_factory.mktemp("topk") / "harness"
    subprocess.run(["nvcc", "-x", "c++", "-std=c++17", "-O2", "-I", str(CSRC), "-o", str(exe),
                    str(Path(__file__).parent / "topk_select_harness.cu")], check=True, capture_output=True)
    return exe


def run_topk_harness(exe, tmp_path, v, divisors, weights, *, scores=None, q=None, k=None, scale=1.0, row_warps=2,
                     slot_bytes=256, narrow=True, seed=1, select_only=False, half=False):
    """One launch through the harness: (out (B,H,N,DV), thresholds (B,H,N,branches), refine passes run). With
    `scores` (B,H,N,N1) the block reads scores from that matrix instead of q.k (exact, any values); `half` runs the
    float16 path (q, k, v rounded to float16, the m16n8k8 mma emulated by the warp's lanes)."""
    b, h, n, n1 = scores.shape if scores is not None else (*q.shape[:3], k.shape[2])
    d, dv = 1 if scores is not None else q.shape[3], v.shape[3]
    header = [int(scores is not None), b, h, n, n1, d, dv, len(divisors), row_warps, slot_bytes, int(narrow), seed,
              int(select_only), int(half), 0, 0]
    arrays = ((scores,) if scores is not None else (q, k)) + (v,)
    params, out = tmp_path / "params.bin", tmp_path / "out.bin"
    params.write_bytes(struct.pack("16if", *header, scale) + np.asarray(divisors, np.int32).tobytes()
                       + np.asarray(weights, np.float32).tobytes()
                       + b"".join(np.ascontiguousarray(a, np.float32).tobytes() for a in arrays))
    result = subprocess.run([str(exe), "run", str(params), str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    raw = np.fromfile(out, np.float32)
    passes = int(result.stdout.split()[-1])
    return raw[: b * h * n * dv].reshape(b, h, n, dv), raw[b * h * n * dv:].reshape(b, h, n, len(divisors)), passes


def test_topk_primitives_match_brute_force_on_the_cpu(topk_harness):
    """Order keys (monotone, invertible, -0.0 == +0.0), linear bins and their exact key brackets, digit brackets, the
    warp-parallel rank-bin scan and k-th-largest list selection against serial scans and sorting."""
    result = subprocess.run([str(topk_harness), "selftest"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("selftest ok"), result.stdout + result.stderr


@pytest.mark.parametrize("arch", TARGETS)
@pytest.mark.parametrize("elem,n,n1,d,dv", [(2, 1600, 1600, 16, 16), (2, 400, 400, 32, 32), (2, 14400, 14400, 16, 16),
                                             (4, 1600, 1600, 64, 64), (4, 1600, 1600, 256, 256),
                                             (2, 100, 100000, 256, 256)])
def test_tile_plans_fit_each_architecture(topk_harness, arch, elem, n, n1, d, dv):
    """Shared memory per block within the target's opt-in limit, 64 query rows wherever MSC's shapes need them."""
    per_block, per_sm = SHARED_LIMITS[arch]
    sms = {"75": 40, "86": 84, "87": 16, "90": 132}[arch]
    out = subprocess.run([str(topk_harness), "plan", *map(str, (elem, n, n1, d, dv, 8, per_block, per_sm, sms))],
                         capture_output=True, text=True, check=True).stdout.split()
    plan = dict(zip(out[::2], map(int, out[1::2])))
    assert plan["ok"] == 1 and plan["bytes"] <= per_block
    assert plan["narrow"] == (n1 <= 65535)
    if elem == 2 and d <= 32 and n >= 1600:
        assert plan["rows"] == 64


def score_rows(kind: str, rng, n: int, n1: int) -> np.ndarray:
    """Rows of scores that stress the selection."""
    if kind == "normal":
        return rng.standard_normal((n, n1))
    if kind == "constant":
        return np.full((n, n1), 0.75)
    if kind == "low_variance":  # a handful of float32 values around 1
        return 1 + 1e-6 * rng.standard_normal((n, n1))
    if kind == "ties":
        return rng.integers(-3, 4, (n, n1)).astype(float)
    if kind == "signed_zeros":  # -0.0 and +0.0 compare equal: one tie
        return rng.choice([0.0, -0.0, 1.0, -1.0], (n, n1))
    if kind == "outliers":  # linear bins collapse: crowded brackets, refinement
        x = rng.standard_normal((n, n1))
        x[:, 0], x[:, 1] = 1e30, -1e30
        return x
    if kind == "extremes":
        return rng.choice([-3e38, 3e38, 1e-40, -1e-40, 0.0, 1.0], (n, n1))
    if kind == "non_finite":  # rows 0-2 poisoned (NaN, +inf, all -inf); rows 3-4 keep -inf scores at weight 0
        x = rng.standard_normal((n, n1))
        x[0, 3], x[1, 5], x[2, :] = np.nan, np.inf, -np.inf
        x[3, : n1 - 2] = -np.inf  # two finite scores: the larger branches' thresholds are -inf
        x[4, ::2] = -np.inf
        return x
    raise ValueError(kind)


def check_harness_run(scores, v, divisors, weights, out, thresholds, select_only=False):
    from topk_reference import check_scores
    from topk_reference import thresholds as exact_thresholds

    np.testing.assert_array_equal(thresholds, exact_thresholds(torch.from_numpy(scores).double(), divisors).numpy())
    if select_only:
        return
    b, h = scores.shape[:2]
    for bi, hi in np.ndindex(b, h):
        s = torch.from_numpy(scores[bi, hi]).double()
        report = check_scores(s, torch.from_numpy(v[bi, hi]).double(), torch.from_numpy(out[bi, hi]).double(),
                              divisors, weights, torch.zeros_like(s), "none", 1e-5)
        assert not report.failures and report.ambiguous == 0, report.summary()


@pytest.mark.parametrize("kind,n,n1,divisors,options", [
    ("normal", 40, 300, (2, 3, 5), {}),
    ("constant", 20, 300, (2, 3), {}),
    ("low_variance", 20, 300, (2, 3), {}),
    ("ties", 20, 300, (2, 3), {}),
    ("signed_zeros", 20, 300, (2, 3), {}),
    ("outliers", 20, 300, (2, 3), {}),
    ("extremes", 20, 300, (2, 3), {}),
    ("non_finite", 20, 300, (2, 3, 4), {}),
    ("normal", 20, 1, (2, 3, 5), {}),
    ("normal", 20, 2, (2, 3, 5), {}),
    ("normal", 20, 3, (2, 3, 5), {}),
    ("normal", 20, 301, (2, 3, 7), {}),  # N1 not divisible
    ("ties", 70, 500, (2, 2, 3), {"row_warps": 4, "slot_bytes": 1024}),  # a repeated divisor, ragged N
    ("low_variance", 33, 2000, (2, 3), {"narrow": False, "slot_bytes": 512}),  # 32-bit counters
    ("normal", 32, 16384, (2, 3), {"slot_bytes": 1024, "select_only": True}),
    ("ties", 32, 16384, (2, 3), {"narrow": False, "select_only": True}),
])
def test_tiled_block_selects_exact_thresholds_on_the_cpu(topk_harness, tmp_path, kind, n, n1, divisors, options):
    """The block code with scores read from a matrix: thresholds bit-exact (the k_i-th largest float32 score, NaN on
    poisoned rows), output within 1e-5 of the float64 reference (NaN on poisoned rows)."""
    rng = np.random.default_rng(zlib.crc32(f"{kind} {n} {n1}".encode()))  # reproducible per case
    scores = np.stack([score_rows(kind, rng, n, n1) for _ in range(2)])[None].astype(np.float32)
    v = rng.standard_normal((1, 2, n1, 8)).astype(np.float32)
    weights = [0.6, -0.25, 0.4][: len(divisors)]
    out, thresholds, passes = run_topk_harness(topk_harness, tmp_path, v, divisors, weights, scores=scores, **options)
    check_harness_run(scores, v, divisors, weights, out, thresholds, options.get("select_only", False))
    if kind in ("outliers", "extremes", "signed_zeros"):
        assert passes > 0  # crowded brackets took the refinement path


def test_tiled_block_is_independent_of_thread_schedule(topk_harness, tmp_path):
    """Another interleaving of the emulated threads between barriers gives bit-identical results: no missing
    barrier, and atomics only where order does not matter."""
    rng = np.random.default_rng(11)
    scores = np.stack([score_rows("ties", rng, 40, 700), score_rows("normal", rng, 40, 700)])[None].astype(np.float32)
    v = rng.standard_normal((1, 2, 700, 8)).astype(np.float32)
    runs = [run_topk_harness(topk_harness, tmp_path, v, (2, 3), (0.5, 0.5), scores=scores, seed=seed)
            for seed in (1, 2, 3)]
    for out, thresholds, _ in runs[1:]:
        assert np.array_equal(out, runs[0][0], equal_nan=True)
        assert np.array_equal(thresholds, runs[0][1], equal_nan=True)


@pytest.mark.parametrize("b,h,n,n1,d,dv,divisors,row_warps,slot_bytes,scale", [
    (1, 2, 50, 200, 12, 40, (2, 3), 2, 256, 12**-0.5),     # d not a multiple of 8, two v passes
    (2, 1, 70, 130, 80, 20, (2, 3, 5), 4, 512, 80**-0.5),  # d over one 64-channel chunk, three branches
    (1, 1, 33, 97, 16, 16, (3,), 2, 256, -0.25),           # one branch, negative scale (-0.0 scores)
])
def test_tiled_block_float32_path_matches_float64_on_the_cpu(topk_harness, tmp_path, b, h, n, n1, d, dv, divisors,
                                                             row_warps, slot_bytes, scale):
    """The whole float32 path (staging, FFMA scores, selection, exp, P.V with quad shuffles) against float64,
    ambiguity-aware (tests/topk_reference.py)."""
    from topk_reference import check_attention

    rng = np.random.default_rng(n * n1)
    q, k = rng.standard_normal((b, h, n, d)), rng.standard_normal((b, h, n1, d))
    v = rng.standard_normal((b, h, n1, dv))
    q, k, v = (x.astype(np.float32) for x in (q, k, v))
    weights = [0.5, -0.3, 0.8][: len(divisors)]
    out, _, _ = run_topk_harness(topk_harness, tmp_path, v, divisors, weights, q=q, k=k, scale=scale,
                                 row_warps=row_warps, slot_bytes=slot_bytes)
    report = check_attention(*(torch.from_numpy(x) for x in (q, k, v, out)), scale, divisors, weights, "float", 1e-5)
    assert not report.failures and report.ambiguous_fraction < 0.05, report.summary()


@pytest.mark.parametrize("b,h,n,n1,d,dv,divisors,row_warps,slot_bytes,scale", [
    (1, 2, 50, 200, 12, 40, (2, 3), 2, 256, 12**-0.5),     # d not a multiple of 8, two v passes (8 channels last)
    (2, 1, 70, 130, 80, 20, (2, 3, 5), 4, 512, 80**-0.5),  # d over one 64-channel chunk, three branches
    (1, 1, 33, 97, 16, 16, (3,), 2, 256, -0.25),           # one branch, negative scale (-0.0 scores)
])
def test_tiled_block_float16_path_matches_float64_on_the_cpu(topk_harness, tmp_path, b, h, n, n1, d, dv, divisors,
                                                             row_warps, slot_bytes, scale):
    """The float16 path (16-bit staging and pitches, mma.sync m16n8k8 fragments for q.k and P.V, emulated in the
    harness by the PTX ISA layout) against float64 of the float16 inputs: float32 score bounds, outputs within 2e-3 of
    the magnitude (P rounded to float16 for P.V and the float16 output: about 2^-11 each)."""
    from topk_reference import check_attention

    rng = np.random.default_rng(n * n1 + 1)
    q, k = rng.standard_normal((b, h, n, d)), rng.standard_normal((b, h, n1, d))
    v = rng.standard_normal((b, h, n1, dv))
    q, k, v = (x.astype(np.float16).astype(np.float32) for x in (q, k, v))
    weights = [0.5, -0.3, 0.8][: len(divisors)]
    out, _, _ = run_topk_harness(topk_harness, tmp_path, v, divisors, weights, q=q, k=k, scale=scale,
                                 row_warps=row_warps, slot_bytes=slot_bytes, half=True)
    report = check_attention(*(torch.from_numpy(x) for x in (q, k, v, out)), scale, divisors, weights, "float", 2e-3)
    assert not report.failures and report.ambiguous_fraction < 0.05, report.summary()
    assert report.worst_clean > 1e-5  # the output went through float16 (the float16 path ran, not the float32 one)


# The float64 reference and its ambiguity logic, checked before any GPU relies on them ---------------------------
def _one_row(scores, weights=(1.0,), divisors=(2,), error=0.0, keep=None, dv=3, seed=0):
    """A crafted row: its scores, v, the error bound, and an output computed with the given kept keys."""
    s = torch.tensor([scores], dtype=torch.float64)
    v = torch.from_numpy(np.random.default_rng(seed).standard_normal((s.shape[1], dv)))
    e = (s - s.max()).exp()[0]
    mask = torch.zeros(s.shape[1], dtype=torch.bool)
    mask[list(keep)] = True
    out = (weights[0] * (e * mask) @ v / (e * mask).sum())[None]
    return s, v, out, torch.full_like(s, error)


def _check_row(scores, keep, arithmetic="float", error=0.0, divisors=(2,), out=None):
    from topk_reference import check_scores

    s, v, made, err = _one_row(scores, error=error, keep=keep)
    return check_scores(s, v, made if out is None else out, divisors, (1.0,), err, arithmetic)


def test_reference_classifies_near_ties_and_accepts_only_allowed_selections():
    near = [5.0, 4.0, 3.0, 3.0 - 1e-9, 1.0, 0.0]  # k = 3: keys 2 and 3 are within the error bound
    for keep, ok in (((0, 1, 2), True), ((0, 1, 3), True), ((0, 1, 2, 3), True), ((0, 1, 4), False),
                     ((0, 1), False)):
        report = _check_row(near, keep, error=1e-6)
        assert report.ambiguous == 1 and bool(report.failures) != ok, (keep, report.summary())
    clear = [5.0, 4.0, 3.0, 2.0, 1.0, 0.0]
    for keep, ok in (((0, 1, 2), True), ((0, 1, 3), False)):
        report = _check_row(clear, keep, error=1e-6)
        assert report.ambiguous == 0 and bool(report.failures) != ok, (keep, report.summary())
    ties = [3.0, 3.0, 3.0, 1.0]  # exact ties: tie-inclusive keeps all three
    assert not _check_row(ties, (0, 1, 2), "none").failures
    assert _check_row(ties, (0, 1), "none").failures
    nan_row = [1.0, float("nan"), 0.0, 2.0]
    report = _check_row(nan_row, (0, 3), "none", out=torch.zeros(1, 3))
    assert report.poisoned == 1 and report.failures  # a NaN score must give a NaN row
    assert not _check_row(nan_row, (0, 3), "none", out=torch.full((1, 3), torch.nan)).failures
    report = _check_row([0.0, -float("inf"), -float("inf")], (0, 1, 2), "none", divisors=(1,))
    assert report.ambiguous == 0 and not report.failures  # a -inf threshold keeps everything, at weight 0


def test_the_ambiguity_bound_is_the_binomial_tail_for_the_sample():
    """most_ambiguous(n): the smallest count that n rows, each ambiguous at 5%, exceed with probability <= 1e-6."""
    from math import exp, fsum, lgamma, log

    from topk_reference import most_ambiguous

    def above(n, k):  # P(count > k), summed term by term
        return fsum(exp(lgamma(n + 1) - lgamma(i + 1) - lgamma(n - i + 1) + i * log(0.05) + (n - i) * log(0.95))
                    for i in range(k + 1, n + 1))

    for n in (1, 33, 128, 1024, 3200):
        limit = most_ambiguous(n)
        assert above(n, limit) <= 1e-6 < (above(n, limit - 1) if limit else 1), (n, limit)
    assert 0.05 < most_ambiguous(12800) / 12800 < 0.06  # large GPU samples: close to the 5% itself


def test_reference_accepts_pytorch_float32_and_rejects_a_wrong_kernel():
    """PyTorch's own float32 implementation passes the checker with few ambiguous rows (so the error bound holds and
    the test keeps its teeth); an output that drops the threshold key everywhere fails."""
    from rgbir.models.sparse_attention import topk_sparse_attention
    from topk_reference import check_attention

    g = torch.Generator().manual_seed(3)
    q, k, v = torch.randn(1, 2, 300, 32, generator=g), torch.randn(1, 2, 600, 32, generator=g), torch.randn(
        1, 2, 600, 16, generator=g)
    for dtype in (torch.float32, torch.float16):
        qq, kk, vv = q.to(dtype), k.to(dtype), v.to(dtype)
        out = topk_sparse_attention(qq.float(), kk.float(), vv.float(), 32**-0.5, (2, 3), (0.6, 0.4))
        report = check_attention(qq, kk, vv, out, 32**-0.5, (2, 3), (0.6, 0.4), "float", 1e-5)
        assert not report.failures and report.ambiguous_fraction < 0.05, report.summary()
    wrong = topk_sparse_attention(q, k, v, 32**-0.5, (2, 3), (0.6, 0.4)) * (1 + 1e-4)
    assert len(check_attention(q, k, v, wrong, 32**-0.5, (2, 3), (0.6, 0.4), "float", 1e-5).failures) > 500


# GPU: the kernel through its C launcher ------------------------------------------------------------------------
def _cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU: the kernel's numerics are checked on a GPU machine")
    return torch


@pytest.fixture(scope="session")
def gpu_library(tmp_path_factory):
    """The library built for this GPU: RGBIR_GPU_TEST_LIBRARY when benchmarks/gpu_check.sh has just built one."""
    torch = _cuda()
    if os.environ.get("RGBIR_GPU_TEST_LIBRARY"):
        return find_library(os.environ["RGBIR_GPU_TEST_LIBRARY"])
    major, minor = torch.cuda.get_device_capability()
    return compile_library(CompileOptions(arch=f"{major}{minor}", output_dir=tmp_path_factory.mktemp("gpu")))


def launch(lib, q, k, v, scale, divisors, weights, stream=None, launcher=LAUNCHERS[0]):
    """One call of a C launcher (LAUNCHERS: the current kernel, the tiled one) on torch tensors; returns out."""
    torch = _cuda()
    b, h, n, d = q.shape
    n1, dv = k.shape[2], v.shape[3]
    out = torch.empty(b, h, n, dv, device=q.device, dtype=q.dtype)
    lib.rgbirTopKSparseAttentionWorkspaceSize.restype = ctypes.c_size_t
    size = lib.rgbirTopKSparseAttentionWorkspaceSize(n1) if launcher == LAUNCHERS[0] else 0  # tiled: none
    workspace = torch.empty(max(size, 1), dtype=torch.uint8, device=q.device)
    status = getattr(lib, launcher)(
        ctypes.c_void_p(q.data_ptr()), ctypes.c_void_p(k.data_ptr()), ctypes.c_void_p(v.data_ptr()),
        ctypes.c_void_p(out.data_ptr()), b, h, n, n1, d, dv, ctypes.c_float(scale),
        (ctypes.c_int32 * len(divisors))(*divisors), (ctypes.c_float * len(weights))(*weights), len(divisors),
        1 if q.dtype == torch.float16 else 0, ctypes.c_void_p(workspace.data_ptr()), ctypes.c_size_t(size),
        ctypes.c_void_p(stream or torch.cuda.current_stream().cuda_stream))
    assert status == 0, f"{launcher} returned {status}"
    return out


DEVICE = "cuda"  # where the GPU tests run; test_gpu_test_bodies_pass_... runs their bodies on the CPU


def attention_inputs(shape, dtype, arithmetic, seed):
    """q (B,H,N,D), k (B,H,N1,D), v (B,H,N1,DV) on the GPU. "exact": multiples of 1/32 in [-2, 2], whose products
    and sums float32 represents exactly (float16 too), so the only ambiguity left is the scale's rounding."""
    torch = _cuda()
    b, h, n, n1, d, dv = shape
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    if arithmetic == "exact":
        q, k = (torch.randint(-64, 65, (b, h, m, d), device=DEVICE, generator=g) / 32 for m in (n, n1))
    else:
        q, k = (torch.randn(b, h, m, d, device=DEVICE, generator=g) for m in (n, n1))
    v = torch.randn(b, h, n1, dv, device=DEVICE, generator=g)
    return [x.to(getattr(torch, dtype) if isinstance(dtype, str) else dtype) for x in (q, k, v)]


def assert_matches_float64(q, k, v, out, scale, divisors, weights, arithmetic, note):
    """Ambiguity-aware float64 check (tests/topk_reference.py): clean rows within 1e-5 (float32) / 1e-2 (float16)
    of their magnitude, ambiguous rows matching an allowed selection and no more than a 5% rate can give in a sample
    this size (a binomial bound: it holds on every seed), poisoned rows NaN."""
    from topk_reference import check_attention, most_ambiguous

    tol = 1e-5 if q.dtype == _cuda().float32 else 1e-2
    report = check_attention(q, k, v, out.float(), scale, divisors, weights, arithmetic, tol)
    limit = most_ambiguous(report.rows)
    assert not report.failures and report.ambiguous <= limit, f"{note}: {report.summary()} (at most {limit} ambiguous)"


GPU_SHAPES = [  # batch, heads, n, n1, d, dv, arithmetic ("float": Gaussian inputs, N1 small enough for < 5% ambiguity)
    (1, 8, 400, 400, 16, 16, "float"), (1, 8, 1600, 1600, 16, 16, "float"), (2, 8, 1600, 1600, 32, 32, "float"),
    (1, 8, 1600, 400, 64, 32, "float"), (2, 8, 400, 1600, 32, 64, "float"),
    (1, 8, 6400, 6400, 16, 16, "exact"), (1, 8, 14400, 14400, 16, 16, "exact"), (1, 8, 256, 16384, 32, 32, "exact"),
]


@pytest.mark.gpu
@pytest.mark.parametrize("launcher", LAUNCHERS)
@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("shape", GPU_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_kernel_matches_float64(gpu_library, launcher, dtype, shape):
    """Both kernels against the float64 reference, MSC's shapes up to N1 = 16384 (RGBIR_TEST_SEED=N: other inputs)."""
    lib = ctypes.CDLL(str(gpu_library))
    seed = input_seed()
    *dims, arithmetic = shape
    q, k, v = attention_inputs(dims, dtype, arithmetic, seed)
    scale = dims[4] ** -0.5  # 1/sqrt(32) is no power of two: the case the old max-error test got wrong
    out = launch(lib, q, k, v, scale, [2, 3], [0.6, 0.4], launcher=launcher)
    assert_matches_float64(q, k, v, out, scale, (2, 3), (0.6, 0.4), arithmetic, f"{launcher} seed {seed}")


@pytest.mark.gpu
@pytest.mark.parametrize("launcher", LAUNCHERS)
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_kernel_keeps_ties_and_constant_rows(gpu_library, launcher, dtype):
    """Every key twice (ties at the thresholds: all kept), keys all equal (every score of a row ties), q = 0 rows."""
    torch = _cuda()
    lib = ctypes.CDLL(str(gpu_library))
    seed = input_seed()
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    t = getattr(torch, dtype)
    base = torch.randint(-2, 3, (1, 2, 50, 8), device=DEVICE, generator=g).float()
    q = torch.randint(-2, 3, (1, 2, 64, 8), device=DEVICE, generator=g).float()
    q[:, :, :4] = 0
    v = torch.randn(1, 2, 100, 8, device=DEVICE, generator=g)
    for k in (torch.cat([base, base], 2), base[:, :, :1].expand(1, 2, 100, 8).contiguous()):
        qq, kk, vv = q.to(t), k.to(t), v.to(t)
        out = launch(lib, qq, kk, vv, 0.5, [2, 3], [0.5, 0.5], launcher=launcher)
        assert_matches_float64(qq, kk, vv, out, 0.5, (2, 3), (0.5, 0.5), "exact", f"{launcher} seed {seed}")


@pytest.mark.gpu
@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_kernel_replays_in_a_cuda_graph(gpu_library, launcher):
    """Captured once, replayed on new q: no allocation, no synchronisation, no host state baked in."""
    torch = _cuda()
    lib = ctypes.CDLL(str(gpu_library))
    seed = input_seed()
    q, k, v = attention_inputs((1, 8, 1600, 1600, 16, 16), "float16", "exact", seed)
    stream = torch.cuda.Stream()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.stream(stream):
        launch(lib, q, k, v, 0.25, [2, 3], [0.5, 0.5], stream=stream.cuda_stream, launcher=launcher)  # warm-up
        with torch.cuda.graph(graph, stream=stream):
            out = launch(lib, q, k, v, 0.25, [2, 3], [0.5, 0.5], stream=stream.cuda_stream, launcher=launcher)
    q.copy_(attention_inputs((1, 8, 1600, 1600, 16, 16), "float16", "exact", seed + 1)[0])
    graph.replay()
    torch.cuda.synchronize()
    assert_matches_float64(q, k, v, out, 0.25, (2, 3), (0.5, 0.5), "exact", f"{launcher} seed {seed}")


ODD_SHAPES = [
    ((3, 5, 100, 1, 12, 20), (2, 3), (0.5, 0.5)),                     # N1 = 1, ragged N, d not a multiple of 8
    ((1, 2, 70, 2, 8, 8), (2, 3, 5), (0.2, 0.3, 0.5)),
    ((1, 2, 70, 3, 8, 8), (2, 3, 5), (0.2, 0.3, 0.5)),
    ((1, 2, 100, 301, 12, 20), (2, 3, 7), (0.6, -0.25, 0.4)),         # N1 not divisible, a negative weight
    ((1, 1, 40, 500, 256, 256), (2, 3), (0.5, 0.5)),                  # head dims at the limit: chunked
    ((2, 3, 33, 257, 72, 40), (2, 2, 3, 5, 7), (0.1, 0.2, 0.3, 0.2, 0.2)),  # five branches, three pairs
]


@pytest.mark.gpu
@pytest.mark.parametrize("launcher", LAUNCHERS)
@pytest.mark.parametrize("shape,divisors,weights", ODD_SHAPES)
def test_kernel_handles_odd_shapes(gpu_library, launcher, shape, divisors, weights):
    lib = ctypes.CDLL(str(gpu_library))
    seed = input_seed()
    for dtype in ("float32", "float16"):
        q, k, v = attention_inputs(shape, dtype, "exact", seed)
        scale = shape[4] ** -0.5
        out = launch(lib, q, k, v, scale, list(divisors), list(weights), launcher=launcher)
        assert_matches_float64(q, k, v, out, scale, divisors, weights, "exact", f"{launcher} {dtype} seed {seed}")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_tiled_kernel_follows_the_non_finite_and_signed_zero_policy(gpu_library, dtype):
    """README policy: a row with a NaN or +inf score, or no finite score, is NaN; -inf scores weigh 0 (kept when the
    threshold is -inf); -0.0 ties with +0.0 (a negative scale makes -0.0 scores)."""
    torch = _cuda()
    lib = ctypes.CDLL(str(gpu_library))
    seed = input_seed()
    q, k, v = attention_inputs((1, 2, 64, 300, 8, 8), dtype, "exact", seed)
    q[0, 0, 0, 0] = torch.nan       # a NaN row
    q[0, 0, 5] = 0                  # a row of zeros (signed by the negative scale)
    k[0, 1, 7, 0] = torch.inf       # head 1: +inf, -inf or NaN scores depending on q[..., 0]
    q[0, 1, :8, 0] = 0              # NaN (0 * inf)
    q[0, 1, 8:16, 0] = 1            # -inf after the negative scale: weight 0
    q[0, 1, 16:24, 0] = -1          # +inf after the scale: NaN
    k[0, 0, 100:, :] = 0            # many exact zero scores
    out = launch(lib, q, k, v, -0.5, [2, 3, 300], [0.4, 0.4, 0.2], launcher=LAUNCHERS[1])
    assert_matches_float64(q, k, v, out, -0.5, (2, 3, 300), (0.4, 0.4, 0.2), "exact", f"seed {seed}")
    assert out[0, 0, 0].isnan().all() and out[0, 1, :8].isnan().all() and out[0, 1, 16:24].isnan().all()
    assert torch.isfinite(out[0, 1, 8:16]).all()


def test_gpu_test_bodies_pass_with_pytorch_standing_in_for_the_kernels(monkeypatch):
    """The GPU tests' inputs, tolerances and policy expectations, run on the CPU with rgbir's PyTorch function (the
    same NaN/inf/-0.0 policy) in place of the kernels: a failure on the GPU then points at a kernel, not its test."""
    from rgbir.models.sparse_attention import topk_sparse_attention

    def stand_in(lib, q, k, v, scale, divisors, weights, stream=None, launcher=LAUNCHERS[0]):
        return topk_sparse_attention(q.float(), k.float(), v.float(), scale, divisors, weights).to(q.dtype)

    monkeypatch.setitem(globals(), "DEVICE", "cpu")
    monkeypatch.setitem(globals(), "_cuda", lambda: torch)
    monkeypatch.setitem(globals(), "launch", stand_in)
    monkeypatch.setattr(ctypes, "CDLL", lambda path: None)
    for dtype in ("float32", "float16"):
        for _b, _h, n, n1, d, dv, arithmetic in GPU_SHAPES[::2]:  # one head: same statistics per row, and rows
            rows = min(n, 128 if arithmetic == "exact" else 1024)  # enough that the ambiguity bound keeps its teeth
            test_kernel_matches_float64(None, LAUNCHERS[1], dtype, (1, 1, rows, n1, d, dv, arithmetic))
        test_kernel_keeps_ties_and_constant_rows(None, LAUNCHERS[1], dtype)
        test_tiled_kernel_follows_the_non_finite_and_signed_zero_policy(None, dtype)
    for shape, divisors, weights in ODD_SHAPES:
        test_kernel_handles_odd_shapes(None, LAUNCHERS[1], shape, divisors, weights)


@pytest.mark.gpu
@pytest.mark.parametrize("frame_shape, channels, order, dtype", [
    ((480, 640, 3), 3, "RGB", np.float32), ((512, 640, 3), 3, "BGR", np.float16),  # resized / letterboxed only
    ((240, 320), 3, "BGR", np.float32), ((120, 160), 1, "GRAY", np.float16)])      # grey IR → 3 or 1 channel
def test_gpu_letterbox_matches_the_cpu_path(gpu_library, frame_shape, channels, order, dtype):
    """The kernel through the backend's DeviceLetterbox against rgbir.runtime.preprocess (OpenCV)."""
    _cuda()
    pytest.importorskip("cuda.bindings", reason="cuda-python not installed")
    from rgbir.metadata import InputSpec, ModelMetadata
    from rgbir.runtime.gpu_preprocess import DeviceLetterbox
    from rgbir.runtime.preprocess import letterbox, to_input
    from rgbir.trt import cuda

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
