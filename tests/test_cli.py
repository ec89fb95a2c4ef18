import subprocess
import sys

import pytest

from rgbir import __version__
from rgbir.cli import main
from rgbir.models import build_model
from upstream_layout import save_upstream_checkpoint


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "rgbir", *args], capture_output=True, text=True, timeout=300)


def test_version_and_help():
    assert run_cli("--version").stdout.strip() == f"rgbir {__version__}"
    out = run_cli("--help").stdout
    assert "info" in out and "usage: rgbir" in out


def test_info_on_a_config_prints_layers_routing_and_summary(capsys):
    assert main(["info", "yolo11n-mm-mid-msc", "--imgsz", "512,640"]) == 0
    out = capsys.readouterr().out
    assert "MSC" in out and "ir" in out and "rgb" in out
    assert "yolo11n-mm-mid-msc summary:" in out and "4,915,380 parameters" in out and "at 512x640" in out


def test_info_yolo11n_matches_the_published_figures(capsys):
    assert main(["info", "yolo11n", "--brief"]) == 0
    assert "2,624,080 parameters, 6.5 GFLOPs at 640" in capsys.readouterr().out


def test_info_on_upstream_weights(tmp_path, capsys):
    path = save_upstream_checkpoint(build_model("yolo11n-mm-mid", names=["person"]), tmp_path / "best.pt")
    assert main(["info", str(path), "--brief"]) == 0
    out = capsys.readouterr().out
    assert "weights: ultralytics" in out and "BGR" in out and "1 classes" in out


@pytest.mark.parametrize("args,message", [
    (["info", "no-such-model"], "no model config 'no-such-model'"),
    (["info", "missing.pt"], "no such weights file"),
    (["info", "yolo11n", "--imgsz", "100"], "not an image size"),
])
def test_user_errors_are_one_line_without_traceback(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert message in result.stderr.strip().splitlines()[-1]  # the error is one line (argparse prints usage first)


def test_cli_and_package_import_without_torch():
    code = ("import sys, rgbir, rgbir.cli, rgbir.errors; "
            "assert 'torch' not in sys.modules, 'torch imported'; print('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "ok", result.stderr


def test_runtime_works_where_torch_cannot_be_imported():
    """Jetson deployments have no torch: the runtime, engine build and doctor must import and run without it."""
    code = ("import sys; sys.modules['torch'] = None; "  # any 'import torch' now raises ImportError
            "import rgbir.runtime.pipeline, rgbir.runtime.backends.onnxruntime_backend, rgbir.parity, "
            "rgbir.export.check, rgbir.plugins, rgbir.metadata, rgbir.trt, rgbir.trt.sidecar, rgbir.trt.registry, "
            "rgbir.trt.calibration, rgbir.doctor, "
            "rgbir.runtime.backends.tensorrt_backend, rgbir.runtime.gpu_preprocess; from rgbir import Pipeline; "
            "from rgbir.doctor import run_checks; run_checks(); "
            "from rgbir.cli.main import build_parser; build_parser(); print('ok')")  # every command's flags
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "ok", result.stderr


def test_export_then_check_then_parity_from_the_command_line(tmp_path, capsys, caplog):
    from lively import lively
    from rgbir.models import save

    weights = save(lively(build_model("yolo11n-mm-mid-msc", names=["person", "car"])), tmp_path / "msc.safetensors")
    onnx_path = tmp_path / "msc.onnx"
    assert main(["export", str(weights), "-o", str(onnx_path), "--imgsz", "128,160", "--postprocess", "nms"]) == 0
    out = capsys.readouterr().out
    logged = [r.getMessage() for r in caplog.records if r.name == "rgbir.export.exporter"]
    for stage in ("prepare", "torch export", "attention", "nms", "simplify", "check", "save"):
        # logged once as it finishes, not printed again at the end
        assert sum(m.startswith(f"{stage} ") for m in logged) == 1 and f"  {stage:<12} " not in out
    assert "num_dets" in out and "int32" in out and "[1, 300, 4]" in out and "MB" in out
    assert main(["check", str(onnx_path)]) == 0
    assert "maps to the rgbir plugin" in capsys.readouterr().out
    assert main(["parity", str(weights), str(onnx_path), "--samples", "1"]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "matched" in out


@pytest.mark.parametrize("args,message", [
    (["export", "yolo11n", "--batch", "many"], "--batch must be a number or 'dynamic'"),
    (["export", "yolo11n", "--max-det", "5"], "add --postprocess nms"),
    (["export", "yolo11n", "--max-batch", "4"], "use --batch dynamic"),
    (["train", "yolo11n-mm-mid", "--data", "data.yaml", "--epochs", "0"], "--epochs 0 must be >= 1"),
    (["train", "yolo11n-mm-mid", "--data", "missing.yaml"], "missing.yaml"),
])
def test_a_wrong_flag_is_refused_before_torch_loads(tmp_path, args, message):
    """A wrong flag fails in a second, not after torch's import: the refusals run where torch cannot be imported."""
    (tmp_path / "data.yaml").write_text("path: .\ntrain: images\nval: images\nnames: [a]\n")
    code = ("import sys; sys.modules['torch'] = None; from rgbir.cli.main import main; "
            f"sys.exit(main({[*args, '-o', 'out.onnx' if args[0] == 'export' else 'out.safetensors']!r}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not list(tmp_path.glob("out.*"))
