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
