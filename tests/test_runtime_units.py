import json
import threading
import urllib.request

import cv2
import numpy as np
import pytest
import yaml

from media import frame_pair, write_folders
from rgbir.cli import main
from rgbir.errors import RgbirError
from rgbir.metadata import InputSpec
from rgbir.runtime.config import load_config
from rgbir.runtime.frames import Frame, FramePair
from rgbir.runtime.outputs.sinks import MjpegSink, WindowSink, gui_available
from rgbir.runtime.preprocess import letterbox, to_input
from rgbir.runtime.registration import Registration, estimate
from rgbir.runtime.results import PairResult
from rgbir.runtime.sources import ImageFolderSource, SourceError, match_by_stem, open_source
from rgbir.runtime.thermal import ThermalAGC


def upstream_letterbox(img, new_shape=(640, 640), auto=False, scaleup=True, center=True, stride=32):
    """ultralytics 8.3 LetterBox.__call__ for one image, transcribed as the reference."""
    shape = img.shape[:2]
    r = min(new_shape[0] / shape[0], new_shape[1] / shape[1])
    if not scaleup:
        r = min(r, 1.0)
    new_unpad = int(round(shape[1] * r)), int(round(shape[0] * r))
    dw, dh = new_shape[1] - new_unpad[0], new_shape[0] - new_unpad[1]
    if auto:
        dw, dh = np.mod(dw, stride), np.mod(dh, stride)
    if center:
        dw /= 2
        dh /= 2
    if shape[::-1] != new_unpad:
        img = cv2.resize(img, new_unpad, interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)) if center else 0, int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)) if center else 0, int(round(dw + 0.1))
    return cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114))


@pytest.mark.parametrize("shape,target", [((480, 640), (640, 640)), ((512, 640), (512, 640)),
                                          ((1080, 1920), (640, 640)), ((333, 517), (640, 480)),
                                          ((100, 100), (640, 640)), ((512, 640), (640, 640))])
def test_letterbox_matches_upstream_pixel_for_pixel(shape, target):
    img = np.random.default_rng(0).integers(0, 255, (*shape, 3), dtype=np.uint8)
    ours, info = letterbox(img, target)
    np.testing.assert_array_equal(ours, upstream_letterbox(img, target))
    box = np.array([[info.pad_left, info.pad_top, target[1] - info.pad_left, target[0] - info.pad_top]], float)
    back = info.to_source(box)[0]
    assert back[0] == pytest.approx(0, abs=1) and back[2] == pytest.approx(shape[1], abs=1)


def test_channel_order_and_ir_channels_per_metadata():
    img = np.zeros((4, 4, 3), np.uint8)
    img[..., 0] = 10  # blue in OpenCV's BGR
    bgr = to_input(img, InputSpec("rgb", 3, "BGR"))
    rgb = to_input(img, InputSpec("rgb", 3, "RGB"))
    assert bgr[0, 0, 0, 0] == pytest.approx(10 / 255) and rgb[0, 2, 0, 0] == pytest.approx(10 / 255)
    grey = np.full((4, 4), 200, np.uint8)
    assert to_input(grey, InputSpec("ir", 1, "GRAY")).shape == (1, 1, 4, 4)
    expanded = to_input(grey, InputSpec("ir", 3, "BGR"))
    assert expanded.shape == (1, 3, 4, 4) and np.allclose(expanded, 200 / 255)


def test_thermal_agc_modes():
    raw = (np.linspace(3000, 9000, 64 * 80).reshape(64, 80)).astype(np.uint16)
    raw[0, 0] = 60000  # a hot outlier
    minmax, pct, clahe = (ThermalAGC(m)(raw) for m in ("minmax", "percentile", "clahe"))
    assert all(o.dtype == np.uint8 and o.shape == (64, 80) for o in (minmax, pct, clahe))
    assert pct.std() > minmax.std()  # the percentile stretch ignores the outlier
    assert ThermalAGC("auto")(raw).std() == pytest.approx(pct.std())
    palette = cv2.applyColorMap(pct, cv2.COLORMAP_INFERNO)
    assert ThermalAGC()(palette).ndim == 2  # false colour → grey
    eight = np.full((4, 4), 77, np.uint8)
    np.testing.assert_array_equal(ThermalAGC()(eight), eight)  # 8-bit grey untouched
    with pytest.raises(ValueError, match="AGC mode"):
        ThermalAGC("magic")


def test_registration_estimate_warp_and_box_mapping(tmp_path):
    true = np.array([[1.9, 0.05, 12.0], [-0.03, 2.1, 8.0], [0.0, 0.0, 1.0]])
    ir_pts = np.array([[10, 10], [150, 12], [140, 110], [20, 100], [80, 60], [40, 30]], float)
    rgb_pts = cv2.perspectiveTransform(ir_pts.reshape(-1, 1, 2), true).reshape(-1, 2)
    reg = estimate(ir_pts, rgb_pts, (160, 120), (320, 256))
    assert reg.reprojection_error < 1e-4
    np.testing.assert_allclose(reg.homography / reg.homography[2, 2], true, atol=1e-5)
    reg.save(tmp_path / "reg.yaml")
    loaded = Registration.load(tmp_path / "reg.yaml")
    ir = np.zeros((120, 160), np.uint8)
    ir[50:60, 70:80] = 255
    warped = loaded.warp_ir(ir)
    assert warped.shape == (256, 320)
    ys, xs = np.nonzero(warped > 128)
    box_rgb = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
    np.testing.assert_allclose(loaded.rgb_to_ir(box_rgb)[0], [70, 50, 80, 60], atol=1.5)
    with pytest.raises(RgbirError, match="estimated for 160x120"):
        loaded.warp_ir(np.zeros((100, 100), np.uint8))


def test_calibrate_command(tmp_path, capsys):
    points = {"ir_size": [160, 120], "rgb_size": [320, 240], "kind": "affine",
              "pairs": [[[x, y], [2 * x + 5, 2 * y + 3]] for x, y in ((0, 0), (100, 10), (20, 90), (60, 60))]}
    (tmp_path / "points.yaml").write_text(yaml.safe_dump(points))
    assert main(["calibrate", str(tmp_path / "points.yaml"), "-o", str(tmp_path / "reg.yaml")]) == 0
    assert "affine from 4 point pairs" in capsys.readouterr().out
    reg = Registration.load(tmp_path / "reg.yaml")
    np.testing.assert_allclose(reg.homography[:2], [[2, 0, 5], [0, 2, 3]], atol=1e-6)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**points, "pairs": points["pairs"][:2]}))
    assert main(["calibrate", str(tmp_path / "bad.yaml")]) == 2


def test_source_specs():
    assert open_source("0").kind == "device" and open_source("/dev/video2").kind == "device"
    assert open_source("rtsp://127.0.0.1:8554/cam").kind == "stream"
    assert open_source("v4l2src ! videoconvert ! appsink").kind == "gstreamer"
    with pytest.raises(SourceError, match="neither a device"):
        open_source("/no/such/thing.mp4")


def test_matching_folders_by_stem_lists_a_few_names_and_refuses_ambiguous_ones(tmp_path):
    rgb_dir, ir_dir = write_folders(tmp_path, 9)
    for i in range(2, 9):
        (ir_dir / f"{i:05d}.jpg").unlink()
    rgb, ir = ImageFolderSource(rgb_dir), ImageFolderSource(ir_dir)
    assert match_by_stem(rgb, ir) == (f"7 RGB images in {rgb_dir} have no IR partner (00002.jpg, 00003.jpg, "
                                      "00004.jpg, 00005.jpg, 00006.jpg, …): they are skipped")
    assert rgb.names == ir.names == ["00000.jpg", "00001.jpg"]
    assert match_by_stem(rgb, ir) is None  # names given: left as they are
    cv2.imwrite(str(ir_dir / "00001.png"), frame_pair(1)[1])
    with pytest.raises(SourceError, match="both 00001.jpg and 00001.png"):
        match_by_stem(ImageFolderSource(rgb_dir), ImageFolderSource(ir_dir))


def test_yaml_config_and_unknown_keys(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"model": "m.onnx", "streams": [{"rgb": "0", "ir": "1"}], "conf": 0.4,
                                    "pairing": {"tolerance_ms": 25, "stall_policy": "reuse"},
                                    "thermal": {"mode": "clahe"}, "sinks": {"json": "out.jsonl"}}))
    config = load_config(path, conf=0.5)
    assert config.conf == 0.5 and config.pairing.tolerance_ms == 25 and config.thermal.mode == "clahe"
    assert config.sinks.json == "out.jsonl" and config.streams[0].ir == "1"
    path.write_text(yaml.safe_dump({"model": "m.onnx", "streams": [], "pairng": {}}))
    with pytest.raises(RgbirError, match="unknown setting"):
        load_config(path)


def test_mjpeg_preview_serves_jpeg_frames_on_localhost():
    sink = MjpegSink(0)
    try:
        rgb, ir = frame_pair(3)
        result = PairResult(FramePair(0, Frame(rgb, 0, 0, 0, "rgb"), Frame(ir, 0, 0, 0, "ir"), 0))
        stream = urllib.request.urlopen(f"http://127.0.0.1:{sink.port}/", timeout=5)
        writer = threading.Thread(target=lambda: [sink.write(result, 10.0) for _ in range(5)])
        writer.start()
        data = stream.read(4000)
        writer.join()
        assert b"--frame" in data and b"Content-Type: image/jpeg" in data and b"\xff\xd8" in data
    finally:
        sink.close()


def test_window_sink_explains_a_headless_opencv():
    if gui_available():
        pytest.skip("this OpenCV has a GUI and a display")
    with pytest.raises(RgbirError, match="opencv-python"):
        WindowSink(threading.Event())


def test_run_command_on_folders(tmp_path, tiny_onnx, capsys):
    rgb_dir, ir_dir = write_folders(tmp_path / "frames", 6)
    out = tmp_path / "pairs.jsonl"
    assert main(["run", "--model", str(tiny_onnx), "--rgb", str(rgb_dir), "--ir", str(ir_dir), "--json", str(out),
                 "--stats-interval", "0", "--stats-json", str(tmp_path / "stats.json")]) == 0
    printed = capsys.readouterr().out
    assert "end-to-end latency" in printed and "queue wait" in printed and "processing" in printed
    assert "infer (ms/pair)" in printed
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["rgb"]["file"], r["ir"]["file"]) for r in lines] == [(f"{i:05d}.jpg",) * 2 for i in range(6)]
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["pairs"] == 6 and {"p50", "p95", "p99"} <= set(stats["latency_ms"]) & set(stats["processing_ms"])
    assert stats["settings"]["thermal"]["mode"] == "auto" and stats["settings"]["pairing"]["tolerance_ms"] == 40


def test_run_command_errors(tmp_path, tiny_onnx):
    assert main(["run", "--rgb", "0"]) == 2  # no model
    assert main(["run", "--model", str(tiny_onnx), "--rgb", str(tmp_path / "nope")]) == 2
    assert main(["run", "--model", str(tiny_onnx), "--rgb", "a", "--ir", "b", "--ir", "c"]) == 2
