"""Wrong paths, ports, devices and full disks end in one line and exit code 2, before the work where they can be
foreseen, and without losing records already written (issue 13). Every case runs ``python -m rgbir``."""

import json
import os
import resource
import socket
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from clirun import one_line_error, rgbir
from media import write_folders

DEV_FULL = Path("/dev/full")
needs_dev_full = pytest.mark.skipif(not DEV_FULL.exists(), reason="no /dev/full on this system")


def records(path: Path) -> list[dict]:
    """Every line of a JSON Lines file parsed (fails on a partial or corrupt line)."""
    text = path.read_text()
    assert text == "" or text.endswith("\n"), "the last record is cut off"
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    return write_folders(tmp_path_factory.mktemp("frames"), 12)


@pytest.fixture
def run_args(tiny_onnx, frames):
    rgb, ir = frames
    return ["run", "--model", tiny_onnx, "--rgb", rgb, "--ir", ir, "--stats-interval", "0"]


@pytest.fixture
def unwritable(tmp_path):
    """A place where no file can be created: a read-only directory, or as root (whom modes do not stop) a regular
    file standing where the directory should be."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.access(locked, os.W_OK):
        locked.rmdir()
        locked.write_text("a file, not a directory\n")
    yield locked
    if locked.is_dir():
        locked.chmod(0o700)


def test_unwritable_json_fails_before_the_run(run_args, unwritable):
    one_line_error(rgbir(*run_args, "--json", unwritable / "out.jsonl"), "cannot write JSON Lines", "locked")


def test_unwritable_video_is_not_blamed_on_its_suffix(run_args, unwritable):
    line = one_line_error(rgbir(*run_args, "--video", unwritable / "out.mp4"), "cannot write video", "locked")
    assert "use a .mp4" not in line


def test_unknown_video_suffix_fails_before_any_record_and_keeps_the_old_file(run_args, tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text('{"previous": "run"}\n')
    one_line_error(rgbir(*run_args, "--json", out, "--video", tmp_path / "out.xyz"), "use a .mp4 or .avi")
    assert out.read_text() == '{"previous": "run"}\n'


@needs_dev_full
def test_a_full_disk_is_named_once_and_the_run_still_closes_its_files(run_args, tmp_path):
    stats = tmp_path / "stats.json"
    result = rgbir(*run_args, "--json", DEV_FULL, "--stats-json", stats)
    one_line_error(result, "cannot write /dev/full", "No space left on device")
    assert "pairs" in json.loads(stats.read_text())  # the run's end (close files, write statistics) still ran


@needs_dev_full
def test_records_written_before_a_failure_stay_intact(run_args, tmp_path):
    out = tmp_path / "pairs.jsonl"
    one_line_error(rgbir(*run_args, "--json", out, "--stats-json", DEV_FULL), "cannot write /dev/full")
    assert [r["index"] for r in records(out)] == list(range(12))


def test_a_file_size_limit_mid_run_keeps_every_whole_record(run_args, tmp_path):
    out, limit = tmp_path / "pairs.jsonl", 40_000  # a record here is ~15 kB: the third one crosses the limit
    result = rgbir(*run_args, "--json", out,
                   preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    one_line_error(result, f"cannot write {out}", "File too large")
    written = records(out)
    assert 1 <= len(written) < 12 and [r["index"] for r in written] == list(range(len(written)))


@pytest.mark.parametrize("port", ["0", "99999"])
def test_mjpeg_port_out_of_range(run_args, port):
    one_line_error(rgbir(*run_args, "--mjpeg", port), f"port {port} is out of range")


def test_mjpeg_port_in_use_fails_before_the_model_loads(run_args, tmp_path):
    out = tmp_path / "out.jsonl"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        one_line_error(rgbir(*run_args, "--json", out, "--mjpeg", port), f"127.0.0.1:{port}", "choose another port")
    assert not out.exists()


def test_a_directory_or_an_image_as_the_model(run_args, tmp_path):
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), np.zeros((8, 8, 3), np.uint8))
    for model, fragment in ((".", "is a directory"), (image, "is not a model YAML")):
        args = run_args.copy()
        args[args.index("--model") + 1] = model
        one_line_error(rgbir(*args, cwd=tmp_path), fragment, "give weights")


@pytest.mark.parametrize("content", [b"not a plan, a text file\n" * 100, b"\0\1" * 16])
def test_a_file_that_cannot_be_a_tensorrt_plan(run_args, tmp_path, content):
    engine = tmp_path / "x.engine"
    engine.write_bytes(content)
    args = run_args.copy()
    args[args.index("--model") + 1] = engine
    one_line_error(rgbir(*args), "is not a TensorRT plan", "rgbir build")


def test_cuda_device_without_cuda(frames):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    rgb, ir = frames
    one_line_error(rgbir("run", "--model", "yolo11n-mm-mid", "--device", "cuda", "--rgb", rgb, "--ir", ir),
                   "--device cuda", "use --device cpu")


def test_val_data_must_be_a_file(tiny_onnx, frames):
    one_line_error(rgbir("val", "--model", tiny_onnx, "--data", frames[0].parent), "is a directory")


def test_export_to_an_unwritable_place_fails_before_exporting(unwritable):
    result = rgbir("export", "yolo11n", "-o", unwritable / "m.onnx")
    one_line_error(result, "cannot write ONNX file")
    assert "exporting" not in result.stdout


def test_parity_of_two_different_models(tiny_onnx, tmp_path):
    from rgbir.models import build_model, save

    other = save(build_model("yolo11n-mm-mid", nc=5), tmp_path / "other.safetensors")
    one_line_error(rgbir("parity", other, tiny_onnx), "different models", "classes 5 vs 2")
    one_line_error(rgbir("parity", "yolo11n", tiny_onnx), "different models", "inputs")


@needs_dev_full
def test_an_unforeseen_os_error_is_one_line_and_debug_shows_the_traceback(tmp_path):
    points = tmp_path / "points.yaml"
    corners = [[0, 0], [100, 0], [100, 80], [0, 80]]
    points.write_text(yaml.safe_dump({"ir_size": [100, 80], "rgb_size": [200, 160],
                                      "pairs": [[c, [2 * c[0], 2 * c[1]]] for c in corners]}))
    one_line_error(rgbir("calibrate", points, "-o", DEV_FULL), "No space left on device")
    debug = rgbir("--debug", "calibrate", points, "-o", DEV_FULL)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "OSError" in debug.stderr


# flags that would be silently ignored are refused before any output is created (issue 13, item 4) --------------
@pytest.fixture(scope="module")
def rgb_only_onnx(tmp_path_factory):
    """A single-modality (RGB only) rgbir ONNX: one Reshape of the 32x32 input into 2-class predictions."""
    import onnx
    from onnx import TensorProto, helper

    from rgbir.metadata import METADATA_KEY, InputSpec, ModelMetadata

    graph = helper.make_graph(
        [helper.make_node("Reshape", ["rgb", "shape"], ["predictions"])], "rgb_only",
        [helper.make_tensor_value_info("rgb", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("predictions", TensorProto.FLOAT, [1, 6, 512])],
        [helper.make_tensor("shape", TensorProto.INT64, [3], [1, 6, 512])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    meta = ModelMetadata("test", {0: "a", 1: "b"}, (32, 32), 1, [InputSpec("rgb", 3, "RGB")], [8.0, 16.0, 32.0])
    helper.set_model_props(model, {METADATA_KEY: meta.to_json()})
    path = tmp_path_factory.mktemp("rgb_only") / "rgb.onnx"
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("flags,fragments", [
    (["--stats-interval", "-1"], ["--stats-interval -1 is negative"]),
    (["--imgsz", "320"], ["--imgsz (PyTorch only) does not apply to the onnxruntime backend", "rgbir export --imgsz"]),
    (["--classes", "7"], ["--classes 7: the model has 2 classes, 0-1"]),
    (["--ir-fourcc", "Y16 "], ["--ir-fourcc applies to camera devices", "not to the folder"]),
    (["--fps", "10"], ["--fps is the pace of --realtime"]),
    (["--realtime"], ["does not say its frame rate", "give --fps"]),
    (["--max-frames", "0"], ["--max-frames 0 must be >= 1"]),
    (["--half", "--cuda-graph"], ["--cuda-graph (TensorRT and PyTorch only), --half (PyTorch only)"]),
    (["--attention", "reference"], ["--attention 'reference' is not one of auto, kernel, function for ONNX Runtime"]),
    (["--attention", "fast"], ["--attention 'fast' is not one of auto, kernel, function, reference, upstream"]),
])
def test_run_flags_that_would_be_ignored_are_refused_before_any_output(run_args, tmp_path, flags, fragments):
    out = tmp_path / "out.jsonl"
    one_line_error(rgbir(*run_args, "--json", out, *flags), *fragments)
    assert not out.exists()


def test_ir_for_an_rgb_only_model_and_ir_fourcc_without_ir(rgb_only_onnx, frames, tmp_path):
    rgb, ir = frames
    out = tmp_path / "out.jsonl"
    one_line_error(rgbir("run", "--model", rgb_only_onnx, "--rgb", rgb, "--ir", ir, "--json", out),
                   "takes RGB only", f"leave out --ir {ir}")
    one_line_error(rgbir("run", "--model", rgb_only_onnx, "--rgb", rgb, "--ir-fourcc", "Y16 ", "--json", out),
                   "--ir-fourcc is the thermal camera's pixel format", "give --ir")
    assert not out.exists()


def test_realtime_with_cameras_only_is_refused(tiny_onnx):
    one_line_error(rgbir("run", "--model", tiny_onnx, "--rgb", "0", "--ir", "1", "--realtime"),
                   "--realtime paces video files and image folders")


def test_an_empty_image_folder_leaves_no_output_file(tiny_onnx, tmp_path):
    empty_rgb, empty_ir = tmp_path / "visible", tmp_path / "infrared"
    empty_rgb.mkdir(), empty_ir.mkdir()
    out, stats = tmp_path / "out" / "pairs.jsonl", tmp_path / "stats.json"
    one_line_error(rgbir("run", "--model", tiny_onnx, "--rgb", empty_rgb, "--ir", empty_ir, "--json", out,
                         "--stats-json", stats), f"no images in {empty_rgb}")
    assert not out.exists() and not stats.exists()


@pytest.mark.parametrize("flags,fragment", [
    (["--max-det", "10"], "--max-det set the NMS inside the graph: add --postprocess nms"),
    (["--conf", "0.5", "--iou", "0.5"], "--iou, --conf set the NMS inside the graph"),
    (["--batch", "2", "--max-batch", "1"], "--max-batch bounds a dynamic batch, but --batch 2 is fixed"),
])
def test_export_flags_that_would_be_ignored_are_refused(tmp_path, flags, fragment):
    out = tmp_path / "m.onnx"
    result = rgbir("export", "yolo11n", "-o", out, *flags)
    one_line_error(result, fragment)
    assert not out.exists() and "exporting" not in result.stdout


@pytest.fixture(scope="module")
def full_checkpoints(tmp_path_factory):
    """Two full checkpoints: the shipped demo weights (rgbir .safetensors) and an ultralytics-layout .pt."""
    from rgbir.cli.demo import DEMO_WEIGHTS
    from rgbir.models import build_model
    from upstream_layout import save_upstream_checkpoint

    pt = save_upstream_checkpoint(build_model("yolo11n", nc=2), tmp_path_factory.mktemp("checkpoints") / "best.pt")
    return DEMO_WEIGHTS, pt


@pytest.mark.parametrize("which,flags,given", [
    (0, ["--scale", "s"], "--scale"),  # refused from the file name, before loading
    (1, ["--ir-channels", "1", "--cfg", "yolo11n"], "--cfg, --ir-channels"),  # refused once loaded
])
def test_architecture_flags_with_a_full_checkpoint_are_refused(full_checkpoints, which, flags, given):
    model = full_checkpoints[which]
    one_line_error(rgbir("info", model, "--brief", *flags),
                   f"{given} apply to configs and state_dict weights only: {model} is a full checkpoint")


def test_cfg_with_a_config_is_refused():
    one_line_error(rgbir("info", "yolo11n", "--brief", "--cfg", "yolo11s"),
                   "--cfg names the architecture of state_dict weights", "yolo11n is a config itself")


def test_build_to_an_unwritable_place_fails_before_building(tiny_onnx, unwritable):
    result = rgbir("build", tiny_onnx, "-o", unwritable / "m.engine")
    one_line_error(result, "cannot write engine file", "locked")
