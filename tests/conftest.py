"""Shared fixtures: deterministic seeds (for each test and the fixtures tests share; the seeds of fresh random inputs
in the session header), the directory that holds the test-only helpers, the exports several test files use (each
made once per session: exports are most of the suite's time), the demo model's synthetic scenes, the plugin library
compiled here and TensorRT's real lean runtime bindings with it registered."""

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


def pytest_report_header(config) -> str:
    from seeds import report_line

    return report_line()


@pytest.fixture(autouse=True)
def _seed():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)


class SharedFixtureSeed:
    """Fixtures shared by several tests (a model built in a session fixture: its weights) start from torch seed 0
    as well: they are set up before the test's own ``_seed``, and would otherwise draw from whatever state the tests
    before them left, or from torch's random seed at import for the first one. A plugin rather than a hook of this
    conftest, whose hooks do not reach fixtures set up at session level."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_fixture_setup(self, fixturedef):
        if fixturedef.scope != "function":
            import torch

            torch.manual_seed(0)


def pytest_configure(config):
    config.pluginmanager.register(SharedFixtureSeed(), "rgbir-shared-fixture-seed")


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory):
    """A small exported dual-input model (yolo11n-mm-mid at 128x160, BN-calibrated random weights)."""
    from lively import lively
    from rgbir.export import ExportOptions, export_onnx
    from rgbir.models import build_model

    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    export_onnx(lively(build_model("yolo11n-mm-mid", nc=2)), path, ExportOptions(imgsz=(128, 160)))
    return path


@pytest.fixture(scope="session")
def msc_export(tmp_path_factory):
    """(model, weights, ExportResult): a YOLOMM-layout MSC checkpoint (BGR channel order, classes person and car,
    BN-calibrated random weights) as rgbir loads it, saved as rgbir .safetensors, and its fp32 export at 128x160
    (test_export.py's contract and parity tests, test_backends.py's backends)."""
    from lively import lively
    from rgbir.export import ExportOptions, export_onnx
    from rgbir.models import build_model, load, save
    from upstream_layout import save_upstream_checkpoint

    tmp = tmp_path_factory.mktemp("msc")
    source = lively(build_model("yolo11n-mm-mid-msc", names=["person", "car"]))
    model = load(save_upstream_checkpoint(source, tmp / "msc.pt"))
    weights = save(model, tmp / "msc.safetensors")
    return model, weights, export_onnx(model, tmp / "msc.onnx", ExportOptions(imgsz=(128, 160)))


@pytest.fixture(scope="session")
def nms_exports(tmp_path_factory):
    """(model, raw ExportResult, NMS ExportResult): yolo11n-mm-mid (4 classes, BN-calibrated) at 128x160, batch 2,
    exported without and with in-graph NMS (max_det 50, IoU 0.5, conf 0.3)."""
    from lively import lively
    from rgbir.export import ExportOptions, export_onnx
    from rgbir.models import build_model

    tmp = tmp_path_factory.mktemp("nms")
    model = lively(build_model("yolo11n-mm-mid", nc=4))
    options = dict(imgsz=(128, 160), batch=2, max_det=50, iou=0.5, conf=0.3)
    raw = export_onnx(model, tmp / "raw.onnx", ExportOptions(**options))
    return model, raw, export_onnx(model, tmp / "nms.onnx", ExportOptions(postprocess="nms", **options))


DEMO_SIZE = (160, 192)  # the demo model's synthetic scenes


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    """The demo model's synthetic dataset: 32 training pairs (INT8 calibration) and the 60 validation scenes that
    test_demo.py and test_quantize.py score."""
    from rgbir.data.synthetic import SceneConfig, write_dataset

    return write_dataset(tmp_path_factory.mktemp("synthetic"), 32, 60, SceneConfig(size=DEMO_SIZE, seed=0))


@pytest.fixture(scope="session")
def demo_fp32(tmp_path_factory):
    """The shipped demo detector's fp32 export at 160x192 (test_demo.py's accuracy, test_quantize.py's INT8 source,
    test_tensorrt_rtx.py's builds)."""
    pytest.importorskip("torch")
    from rgbir.cli.demo import DEMO_WEIGHTS
    from rgbir.export import ExportOptions, export_onnx
    from rgbir.models import load

    path = tmp_path_factory.mktemp("demo") / "fp32.onnx"
    return export_onnx(load(DEMO_WEIGHTS), path, ExportOptions(imgsz=DEMO_SIZE)).path


@pytest.fixture(scope="session")
def plugin_library(tmp_path_factory):
    """rgbir's plugin library, compiled for sm_75 against the TensorRT headers found here."""
    from rgbir.plugins import CompileOptions, compile_library

    if not (shutil.which("nvcc") and shutil.which("cmake")):
        pytest.skip("nvcc and cmake are needed to compile the plugin library")
    return compile_library(CompileOptions(arch="75", output_dir=tmp_path_factory.mktemp("plugins")))


@pytest.fixture(scope="session")
def lean_trt(plugin_library):
    """TensorRT's lean runtime bindings (a real plugin registry, on the CPU), with the library registered."""
    from rgbir.trt.registry import register_plugins

    lean = pytest.importorskip("tensorrt_lean_bindings", reason="TensorRT lean runtime bindings not installed")
    register_plugins(plugin_library, lean)
    return lean


@pytest.fixture(scope="session")
def rtx_trt():
    """TensorRT-RTX's Python module: its real ONNX parser and builder, which build engines on this CPU."""
    return pytest.importorskip("tensorrt_rtx_bindings", reason="TensorRT-RTX is not installed (pip install "
                                                                "'rgbir[rtx]')")


@pytest.fixture(scope="session")
def shipped_export(tmp_path_factory):
    """export(config, imgsz, precision) → (model, ExportResult): each shipped config exported once per session, so
    the parity sweep and the TensorRT-RTX build sweep share the files."""
    from lively import lively
    from rgbir.export import ExportOptions, export_onnx
    from rgbir.models import build_model

    made = {}

    def export(config: str, imgsz: tuple[int, int], precision: str):
        key = (config, imgsz, precision)
        if key not in made:
            model = lively(build_model(config, scale="n", nc=3), size=imgsz, batches=1)
            path = tmp_path_factory.mktemp(config) / f"{precision}-{imgsz[0]}x{imgsz[1]}.onnx"
            made[key] = model, export_onnx(model, path, ExportOptions(imgsz=imgsz, precision=precision,
                                                                      io_dtype="fp32"))
        return made[key]

    return export
