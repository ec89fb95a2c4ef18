"""Nothing a user gives rgbir destroys their files, the last tracebacks are one line, and the answers that misled
are true (issue 24). Every case runs ``python -m rgbir`` in a fresh interpreter and checks the exit code, a single
line without a traceback and, where files are involved, that none was lost or changed (hashes before and after)."""

import hashlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from clirun import one_line_error, rgbir
from media import write_folders, write_videos


def fingerprint(*roots: Path) -> dict[str, str]:
    """The SHA-256 of every file at or under ``roots``, by path: equal before and after means nothing was lost,
    changed or added."""
    files = [p for root in roots for p in ([root] if root.is_file() else sorted(root.rglob("*"))) if p.is_file()]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def size_limit(limit: int):
    """A file size limit for the child (``ulimit -f``): a write past it fails with EFBIG (Python ignores SIGXFSZ)."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def refused(ws: Path, *args, fragments=(), **kw) -> str:
    """``rgbir ARGS`` ends in one error line holding ``fragments`` and leaves ``ws`` exactly as it was."""
    before = fingerprint(ws)
    line = one_line_error(rgbir(*args, **kw), *fragments)
    assert fingerprint(ws) == before
    return line


@pytest.fixture(scope="module")
def ws(tmp_path_factory, tiny_onnx):
    """A user's folder: a model, image folders, videos, a run config, calibration points and a dataset."""
    from rgbir.data.synthetic import SceneConfig, write_dataset

    root = tmp_path_factory.mktemp("ws")
    shutil.copy(tiny_onnx, root / "model.onnx")
    write_folders(root / "frames", 12)
    write_videos(root / "videos", 4)
    (root / "run.yaml").write_text(yaml.safe_dump({"model": str(root / "model.onnx"), "streams": [
        {"rgb": str(root / "frames" / "visible"), "ir": str(root / "frames" / "infrared")}]}))
    corners = [[0, 0], [100, 0], [100, 80], [0, 80], [50, 40]]
    (root / "points.yaml").write_text(yaml.safe_dump({"ir_size": [100, 80], "rgb_size": [200, 160],
                                                      "pairs": [[c, [2 * c[0], 2 * c[1]]] for c in corners]}))
    write_dataset(root / "data", 2, 2, SceneConfig(size=(64, 64), seed=3))
    return root


def run_args(ws: Path) -> list:
    return ["run", "--model", ws / "model.onnx", "--rgb", ws / "frames" / "visible", "--ir", ws / "frames" / "infrared",
            "--stats-interval", "0"]


# 1. no output overwrites an input or another output ------------------------------------------------------------
@pytest.mark.parametrize("flags,fragments", [
    (["--json", "model.onnx"], ["--json", "is also --model", "give --json another path"]),
    (["--json", "frames/visible/00003.jpg"], ["is inside the --rgb folder"]),
    (["--yolo-txt", "frames/infrared"], ["--yolo-txt frames/infrared is also --ir"]),
    (["--json", "out.avi", "--video", "out.avi"], ["--json out.avi and --video out.avi are the same file"]),
    (["--json", "out.json", "--stats-json", "out.json"], ["are the same file"]),
    (["--json", "labels/a.jsonl", "--yolo-txt", "labels"], ["is inside the --yolo-txt folder labels"]),
    (["--config", "run.yaml", "--json", "run.yaml"], ["is also --config run.yaml"]),
])
def test_run_refuses_outputs_that_are_inputs_or_each_other(ws, flags, fragments):
    args = ["run", "--stats-interval", "0", *flags]
    if "--config" not in flags:
        args = ["run", "--model", "model.onnx", "--rgb", "frames/visible", "--ir", "frames/infrared", *args[1:]]
    refused(ws, *args, fragments=fragments, cwd=ws)


def test_run_refuses_a_video_written_over_the_input_video(ws):
    refused(ws, "run", "--model", "model.onnx", "--rgb", "videos/rgb.avi", "--ir", "videos/ir.avi", "--video",
            "videos/rgb.avi", fragments=["--video videos/rgb.avi is also --rgb"], cwd=ws)


@pytest.mark.parametrize("args,fragments", [
    (["quantize", "model.onnx", "-o", "model.onnx", "--calib", "frames/visible,frames/infrared"],
     ["-o model.onnx is also the ONNX file"]),
    (["build", "model.onnx", "-o", "model.onnx"], ["-o model.onnx is also the ONNX file"]),
    (["val", "--model", "model.onnx", "--data", "data/data.yaml", "--save-json", "data/images/val/r.json"],
     ["--save-json data/images/val/r.json is inside the --data folder"]),
    (["triton-repo", "repo/tiny/1/model.onnx", "-o", "repo", "--name", "tiny"], ["is also the model"]),
    (["calibrate", "points.yaml", "-o", "points.yaml"], ["-o points.yaml is also the points file"]),
    (["export", "data/data.yaml", "-o", "data/data.yaml"], ["-o data/data.yaml is also the model"]),
    (["train", "yolo11n-mm-mid", "--data", "data/data.yaml", "-o", "data/labels/train/w.safetensors"],
     ["is inside the --data folder"]),
])
def test_every_writing_command_refuses_a_clash_before_working(ws, args, fragments):
    if args[0] == "triton-repo":  # a repository that holds the model given
        (ws / "repo" / "tiny" / "1").mkdir(parents=True, exist_ok=True)
        shutil.copy(ws / "model.onnx", ws / "repo" / "tiny" / "1" / "model.onnx")
    refused(ws, *args, fragments=fragments, cwd=ws)


# 2. whole files are written atomically; a full disk keeps the previous file and exits 2 ------------------------
def test_an_export_that_fills_the_disk_keeps_the_previous_onnx(tmp_path):
    previous = tmp_path / "m.onnx"
    previous.write_bytes(b"the previous export")
    refused(tmp_path, "-q", "export", "yolo11n", "--imgsz", "32", "-o", previous,
            fragments=[f"cannot write {previous}", "File too large"], preexec_fn=size_limit(1 << 20))


def test_an_engine_build_that_fills_the_disk_keeps_the_previous_engine_and_sidecar(tiny_onnx, tmp_path):
    """A real engine, built by TensorRT-RTX on this CPU, that does not fit: the old engine and sidecar stay."""
    pytest.importorskip("tensorrt_rtx_bindings", reason="TensorRT-RTX is not installed (pip install 'rgbir[rtx]')")
    previous = tmp_path / "m.engine"
    previous.write_bytes(b"the previous engine")
    (tmp_path / "m.engine.json").write_text("{}\n")
    refused(tmp_path, "build", tiny_onnx, "-o", previous, "--tensorrt", "rtx",
            fragments=[f"cannot write {previous}", "File too large"], preexec_fn=size_limit(1 << 20))


def test_a_calibration_that_fills_the_disk_keeps_the_previous_registration(ws, tmp_path):
    previous = tmp_path / "registration.yaml"
    previous.write_text("the previous registration\n")
    refused(tmp_path, "calibrate", ws / "points.yaml", "-o", previous, fragments=["File too large"],
            preexec_fn=size_limit(100))


def test_a_video_that_fills_the_disk_ends_the_run_with_exit_2_and_keeps_its_frames(tmp_path, tiny_onnx):
    rgb, ir = write_folders(tmp_path / "in", 8)

    def run(video: Path, limit: int | None = None):
        return rgbir("run", "--model", tiny_onnx, "--rgb", rgb, "--ir", ir, "--stats-interval", "0", "--video", video,
                     "--json", video.with_suffix(".jsonl"), preexec_fn=size_limit(limit) if limit else None)

    whole = tmp_path / "whole.avi"
    assert run(whole).returncode == 0
    size = whole.stat().st_size
    for limit in (size // 2, size - 8):  # a frame's write fails mid-run; only the closing write (OpenCV is silent)
        video = tmp_path / f"cut-{limit}.avi"
        one_line_error(run(video, limit), f"cannot write video {video}", "File too large")
        capture, kept = cv2.VideoCapture(str(video)), 0
        while capture.read()[0]:
            kept += 1
        assert 1 <= kept and video.with_suffix(".jsonl").read_text().endswith("\n")


# 3. train saves after epochs and on Ctrl-C; -o is the path written -----------------------------------------------
TRAIN = ["train", "yolo11n-mm-mid", "--batch", "2", "--imgsz", "32", "--seed", "0"]


def test_train_saves_on_ctrl_c_and_says_where(ws, tmp_path):
    from rgbir.models import load

    weights = tmp_path / "w.safetensors"
    process = subprocess.Popen([sys.executable, "-m", "rgbir", *map(str, TRAIN), "--data", ws / "data" / "data.yaml",
                                "--epochs", "1000", "-o", weights], stderr=subprocess.PIPE, text=True)
    lines = []
    for line in process.stderr:  # the first epoch's checkpoint, then Ctrl-C
        lines.append(line)
        if f"saved {weights}" in line:
            process.send_signal(signal.SIGINT)
            break
    rest = process.communicate(timeout=120)[1]
    assert process.returncode == 130, "".join(lines) + rest
    assert "epoch 1/1000" in lines[-1] and "interrupted" in rest and f"saved {weights}" in rest
    assert load(weights).checkpoint.extra["train"]["epochs"] >= 1


def test_a_train_that_fills_the_disk_keeps_the_previous_weights(ws, tmp_path):
    previous = tmp_path / "w.safetensors"
    previous.write_bytes(b"the previous weights")
    refused(tmp_path, "-q", *TRAIN, "--data", ws / "data" / "data.yaml", "--epochs", "1", "-o", previous,
            fragments=[f"{previous}", "File too large"], preexec_fn=size_limit(1 << 20))


@pytest.mark.parametrize("flags,fragment", [
    (["-o", "out/w"], "cannot write weights file out/w: use a .safetensors file name"),
    (["--batch", "-2"], "--batch -2 must be >= 1"),
])
def test_train_refuses_before_training(ws, tmp_path, flags, fragment):
    refused(tmp_path, *TRAIN, "--data", ws / "data" / "data.yaml", *flags, fragments=[fragment], cwd=tmp_path)


# 4. triton-repo replaces a model only with --force ---------------------------------------------------------------
def test_triton_repo_refuses_to_replace_a_model_without_force(ws, tmp_path):
    repo = tmp_path / "repo"
    assert rgbir("triton-repo", ws / "model.onnx", "-o", repo, "--name", "tiny").returncode == 0
    refused(tmp_path, "triton-repo", ws / "model.onnx", "-o", repo, "--name", "tiny", "--instances", "2",
            fragments=[f"{repo} already holds model tiny: give --force"])
    assert rgbir("triton-repo", ws / "model.onnx", "-o", repo, "--name", "tiny", "--force").returncode == 0


# 5. the last tracebacks are one line ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def broken_weights(tmp_path_factory):
    from rgbir.cli.demo import DEMO_WEIGHTS

    root = tmp_path_factory.mktemp("broken")
    (root / "empty.safetensors").write_bytes(b"")
    data = DEMO_WEIGHTS.read_bytes()
    (root / "cut.safetensors").write_bytes(data[: len(data) // 2])
    return root


@pytest.mark.parametrize("command,name", [("run", "empty"), ("export", "cut"), ("info", "cut")])
def test_a_broken_safetensors_file_is_one_line(ws, broken_weights, command, name):
    weights = broken_weights / f"{name}.safetensors"
    args = {"run": [*run_args(ws)[:2], weights, *run_args(ws)[3:], "--imgsz", "64"],
            "export": ["export", weights, "-o", broken_weights / "x.onnx"], "info": ["info", weights]}[command]
    refused(broken_weights, *args, fragments=[f"{weights} is not a readable safetensors file"])


def test_demo_refuses_weights_that_are_not_safetensors(tmp_path):
    pt = tmp_path / "best.pt"
    pt.write_bytes(b"PK not safetensors")
    refused(tmp_path, "demo", "--weights", pt, "-o", tmp_path / "out", fragments=["takes rgbir .safetensors"])


@pytest.mark.parametrize("settings,fragment", [
    ({"batch": "four"}, "batch: expected a whole number, got 'four'"),
    ({"conf": "high"}, "conf: expected a number, got 'high'"),
    ({"metrics": 5}, "metrics: expected a mapping of settings (port, host), got 5"),
    ({"tracking": "bytetrack"}, "tracking: expected a mapping of settings (tracker, "),
    ({"max_frames": 2.7}, "max_frames: expected a whole number, got 2.7"),
    ({"streams": "/"}, "streams: expected a list of camera pairs"),
    ({"sinks": {"video_fps": "fast"}}, "sinks.video_fps: expected a number, got 'fast'"),
    ({"model": None}, "no model: add 'model: FILE'"),
])
def test_run_config_values_are_type_checked_with_their_key(ws, tmp_path, settings, fragment):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({**yaml.safe_load((ws / "run.yaml").read_text()), **settings}))
    refused(tmp_path, "run", "--config", config, fragments=[f"run config {config}: {fragment}"])


def test_a_null_section_in_a_run_config_means_its_defaults(ws, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text((ws / "run.yaml").read_text() + "sinks:\nmax_frames: 2\n")
    result = rgbir("run", "--config", config, "--stats-interval", "0")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize("content,fragment", [
    ("path: .\nval: 42\nnames: [a]\n", "'val' (and 'path') must be a folder name, got 42"),
    ("val: [unclosed\n", "is not a data.yaml"),
    (b"\x89PNG\r\n\x1a\n", "is not a data.yaml"),
])
def test_val_data_that_is_not_a_dataset_is_one_line(ws, tmp_path, content, fragment):
    data = tmp_path / "data.yaml"
    data.write_bytes(content if isinstance(content, bytes) else content.encode())
    refused(tmp_path, "val", "--model", ws / "model.onnx", "--data", data, fragments=[fragment])


def test_train_data_with_broken_yaml_is_one_line(tmp_path):
    data = tmp_path / "data.yaml"
    data.write_text("train: [unclosed\n")
    refused(tmp_path, *TRAIN, "--data", data, "-o", tmp_path / "w.safetensors", fragments=["is not a data.yaml"])


# 6. the answers that misled are true ------------------------------------------------------------------------------
def test_check_of_an_empty_file_is_no_pass(tmp_path):
    empty = tmp_path / "m.onnx"
    empty.write_bytes(b"")
    result = rgbir("check", empty)
    one_line_error(result, "holds no ONNX graph (0 bytes)")
    assert "PASS" not in result.stdout


@pytest.mark.parametrize("samples,fragment", [("0", "leave nothing to compare"), ("-3", "--samples -3 must be >= 0")])
def test_parity_on_nothing_is_no_pass(ws, samples, fragment):
    result = rgbir("parity", "yolo11n-mm-mid", ws / "model.onnx", "--samples", samples)
    one_line_error(result, fragment)
    assert "PASS" not in result.stdout


@pytest.mark.parametrize("pairs,fragment", [
    ([[[i, i], [2 * i, 2 * i]] for i in range(0, 50, 10)], "the IR points lie on one line"),
    ([[[0, 0], [0, 0]], [[100, 0], [200, 0]], [[100, 80], [200, 160]], [[0, 80], [0, 160]], [[50, 40], [190, 10]],
      [[20, 60], [10, 150]], [[70, 10], [30, 140]]], "no homography fits these points"),
    ([[[0, 0], [0, 0]], [[100, 0], [200, 0]], [[100, 80], [200, 160]]], "needs at least 4 matched point pairs"),
])
def test_calibrate_refuses_a_degenerate_point_set_before_writing(tmp_path, pairs, fragment):
    points, out = tmp_path / "points.yaml", tmp_path / "registration.yaml"
    points.write_text(yaml.safe_dump({"ir_size": [100, 80], "rgb_size": [200, 160], "pairs": pairs}))
    refused(tmp_path, "calibrate", points, "-o", out, fragments=[fragment])


def test_a_singular_registration_is_refused_before_the_run(ws, tmp_path):
    registration = tmp_path / "registration.yaml"
    registration.write_text(yaml.safe_dump({"matrix": [[1, 2, 0], [2, 4, 0], [0, 0, 1]], "ir_size": [160, 120],
                                            "rgb_size": [160, 120]}))
    refused(ws, *run_args(ws), "--registration", registration, fragments=["its matrix is singular"])


def detections(path: Path) -> list:
    return [r["detections"] for r in map(json.loads, path.read_text().splitlines())]


def test_16_bit_and_rgba_frames_are_read_as_8_bit_colour(ws, tmp_path):
    rgb8, rgb16, ir = tmp_path / "rgb8", tmp_path / "rgb16", ws / "frames" / "infrared"
    rgb8.mkdir(), rgb16.mkdir()
    for i, image in enumerate(sorted((ws / "frames" / "visible").iterdir())):
        frame = cv2.imread(str(image))
        cv2.imwrite(str(rgb8 / f"{image.stem}.png"), frame)
        converted = cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA) if i == 5 else frame.astype(np.uint16) * 257
        cv2.imwrite(str(rgb16 / f"{image.stem}.png"), converted)  # one RGBA frame among 16-bit ones
    outputs = []
    for folder in (rgb8, rgb16):
        out = tmp_path / f"{folder.name}.jsonl"
        result = rgbir("run", "--model", ws / "model.onnx", "--rgb", folder, "--ir", ir, "--conf", "0.001",
                       "--stats-interval", "0", "--json", out)
        assert result.returncode == 0, result.stderr
        outputs.append(detections(out))
    assert len(outputs[1]) == 12 and all(outputs[0]) and outputs[1] == outputs[0]


def test_val_names_a_label_of_a_class_the_dataset_lacks(ws, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(ws / "data", data)
    (data / "data.yaml").write_text((data / "data.yaml").read_text().replace(str(ws / "data"), str(data)))
    label = sorted((data / "labels" / "val").iterdir())[0]
    label.write_text("7 0.5 0.5 0.2 0.2\n")
    refused(tmp_path, "val", "--model", ws / "model.onnx", "--data", data / "data.yaml",
            fragments=[f"a label of {label.stem}.jpg has class 7, but the file names classes 0-2"])


def test_an_image_size_beyond_the_ceiling_is_refused_before_any_allocation(ws):
    refused(ws, "run", "--model", "yolo11n-mm-mid", *run_args(ws)[3:], "--imgsz", "100000",
            fragments=["--imgsz '100000' is larger than rgbir takes: at most 4096 a side"])


def test_a_metrics_host_that_is_not_this_machine_is_named_as_such(ws):
    refused(ws, *run_args(ws), "--metrics", "9464", "--metrics-host", "10.255.255.1",
            fragments=["10.255.255.1 is not an address of this machine"])


def silent_server():
    """A TCP server on 127.0.0.1 that accepts connections and never answers; (port, stop)."""
    server = socket.create_server(("127.0.0.1", 0))
    held, stop = [], threading.Event()

    def accept():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue
        for s in [server, *held]:
            s.close()

    threading.Thread(target=accept, daemon=True).start()
    return server.getsockname()[1], stop


@pytest.mark.parametrize("flags,fragments", [
    (["--mqtt", "127.0.0.1:{port}/rgbir"], ["accepted a TCP connection but sent no MQTT answer within 5 s"]),
    (["--model", "triton://127.0.0.1:{port}/tiny?timeout=1"], ["did not answer within 1 s", "?timeout=S"]),
])
def test_a_silent_server_is_not_blamed_on_credentials_or_a_wrong_wait(ws, flags, fragments):
    pytest.importorskip("paho.mqtt.client" if "--mqtt" in flags else "tritonclient.http")
    port, stop = silent_server()
    try:
        args = run_args(ws) if "--mqtt" in flags else ["run", *run_args(ws)[3:]]
        line = refused(ws, *args, *(f.format(port=port) for f in flags), fragments=fragments)
    finally:
        stop.set()
    assert "--mqtt-user" not in line


def test_a_folder_named_like_a_model_is_named_a_folder(ws, tmp_path):
    folder = tmp_path / "model.onnx"
    folder.mkdir()
    refused(ws, "run", "--model", folder, *run_args(ws)[3:], fragments=[f"{folder} is a directory"])


@pytest.mark.parametrize("flags,fragment", [
    (["--mqtt", "127.0.0.1:1/t", "--mqtt-password-file", "run.yaml"], "--mqtt-password-file holds the password of "
                                                                        "--mqtt-user: give --mqtt-user too"),
    (["--mqtt-user", "me"], "--mqtt-user configures the MQTT sink, and there is no --mqtt: give --mqtt"),
    (["--mqtt", "127.0.0.1:1/t", "--mqtt-tls", "frames/visible/00000.jpg"], "holds no PEM CA certificate"),
])
def test_mqtt_options_that_need_another_are_refused(ws, flags, fragment):
    refused(ws, "run", "--model", "model.onnx", "--rgb", "frames/visible", "--ir", "frames/infrared", *flags,
            fragments=[fragment], cwd=ws)


@pytest.mark.parametrize("flags,fragment", [
    (["-o", "{file}"], "it is a file, not a directory"),
    (["--frames", "0"], "--frames 0: the clip needs at least 1 frame"),
])
def test_demo_settings_are_refused_before_anything_is_written(tmp_path, flags, fragment):
    file = tmp_path / "taken"
    file.write_text("a file\n")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    refused(tmp_path, "demo", *(f.format(file=file) for f in flags), fragments=[fragment], env=env, cwd=tmp_path)
    assert not (tmp_path / "cache").exists()


def test_checkpoint_warnings_print_as_one_clean_line_in_every_command(ws, tmp_path):
    from rgbir.models import build_model, save

    weights = tmp_path / "w.safetensors"
    model = build_model("yolo11n-mm-mid", nc=3)
    model.names = {0: "person"}  # one name for three classes: loading pads the names and warns
    save(model, weights)
    for args, code in ((["run", "--model", weights, *run_args(ws)[3:], "--imgsz", "64", "--max-frames", "1"], 0),
                       (["parity", weights, ws / "model.onnx"], 2)):  # warns, then: a 3-class model vs a 2-class one
        result = rgbir("-q", *args)
        assert result.returncode == code, result.stderr
        assert result.stderr.startswith(f"warning: {weights.name}: names has 1 entry but the head has 3 classes"), \
            result.stderr
        assert "checkpoint.py" not in result.stderr and "Traceback" not in result.stderr, result.stderr
