"""The shipped demo detector: `rgbir demo` end to end, fusion beating each modality alone, and accuracy parity
of its exported ONNX (fp32, fp16)."""

import json

import cv2
import pytest

from rgbir.cli import main
from rgbir.cli.demo import DEMO_WEIGHTS

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not DEMO_WEIGHTS.is_file(), reason="the demo weights are not in this checkout")]
SIZE = (160, 192)


def test_demo_writes_an_annotated_video_json_lines_and_stats(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["demo", "--frames", "24", "-o", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "end-to-end latency" in printed and "demo.avi" in printed
    lines = [json.loads(line) for line in (tmp_path / "out" / "detections.jsonl").read_text().splitlines()]
    assert [line["index"] for line in lines] == list(range(24))
    assert sum(len(line["detections"]) for line in lines) >= 24  # it really detects
    assert {d["name"] for line in lines for d in line["detections"]} <= {"person", "car", "sign"}
    video = cv2.VideoCapture(str(tmp_path / "out" / "demo.avi"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 24
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["pairs"] == 24


def test_exported_onnx_keeps_the_accuracy(tmp_path, synthetic, demo_fp32):
    """On the 60 synthetic validation scenes (conftest.py's, which test_quantize.py scores too); the fp32 export is
    the session's (demo_fp32: the same export options, made once for this file, test_quantize.py and
    test_tensorrt_rtx.py)."""
    from rgbir.eval.validate import validate
    from rgbir.export import ExportOptions, export_onnx
    from rgbir.models import load
    from rgbir.parity import compare, random_inputs
    from rgbir.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
    from rgbir.runtime.backends.torch_backend import TorchBackend
    from rgbir.runtime.postprocess import match_detections, postprocess

    model = load(DEMO_WEIGHTS)
    reference = validate(TorchBackend(model, imgsz=SIZE), str(synthetic))
    assert reference.ap.map50 > 0.9  # a detector that detects
    # fusion earns its keep: both cameras clearly beat either one alone (the other input blanked)
    for blank in ("rgb", "ir"):
        alone = validate(TorchBackend(model, imgsz=SIZE), str(synthetic), blank=blank)
        assert reference.ap.map50 >= alone.ap.map50 + 0.2 and reference.ap.map >= alone.ap.map + 0.2
    fp16 = export_onnx(model, tmp_path / "fp16.onnx", ExportOptions(imgsz=SIZE, precision="fp16", io_dtype="fp32"))
    results = {"fp32": OnnxRuntimeBackend(demo_fp32), "fp16": OnnxRuntimeBackend(fp16.path)}
    assert results["fp32"].metadata.precision == "fp32" and results["fp32"].metadata.imgsz == SIZE
    fp32 = validate(results["fp32"], str(synthetic))
    fp16 = validate(results["fp16"], str(synthetic))
    assert abs(fp32.ap.map - reference.ap.map) <= 0.001  # 0.1 mAP50-95 points
    assert abs(fp16.ap.map - reference.ap.map) <= 0.005  # 0.5 points
    # fp16 detections match fp32 ones at IoU >= 0.9 (score >= 0.25)
    from rgbir.data.dataset import load_dataset
    from rgbir.runtime.preprocess import preprocess_pair
    a, b = [], []
    for sample in load_dataset(synthetic, "val").samples[:20]:
        arrays, _ = preprocess_pair(cv2.imread(str(sample.rgb)), cv2.imread(str(sample.ir), cv2.IMREAD_UNCHANGED),
                                    results["fp32"].metadata)
        a += postprocess(results["fp32"].infer(*arrays)["predictions"])
        b += postprocess(results["fp16"].infer(*arrays)["predictions"])
    agreement = match_detections(a, b, iou=0.9)
    assert agreement.reference > 20 and agreement.matched >= 0.9 * max(agreement.reference, agreement.candidate)
    report = compare(TorchBackend(model, imgsz=SIZE), results["fp32"], random_inputs(results["fp32"].metadata, 1),
                     results["fp32"].metadata)
    assert report.passed
