"""Shared fixtures: deterministic seeds (for each test and the fixtures tests share; the seeds of fresh random inputs
in the session header), the directory that holds the test-only helpers, a small exported model, the plugin library
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
