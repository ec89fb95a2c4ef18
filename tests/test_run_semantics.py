"""How a run ends and what it reports (issue 13): --max-frames / --duration stop cleanly with exit 0, one video per
camera pair, latency split into queue wait and processing, --realtime pacing, thresholds a graph's own NMS cannot
honour, torch's export noise, and the README's run config and JSON Lines schema checked against the code.
(SIGINT/SIGTERM exit codes: tests/test_runtime_pipeline.py; refused flags: tests/test_cli_errors.py.)"""

import json
import logging
import re
import warnings
from dataclasses import fields
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from clirun import rgbir
from fakes import NumpyBackend, RecordingSink
from media import write_folders, write_videos
from rgbir.metadata import PostprocessSpec
from rgbir.runtime.config import PipelineConfig, SinkConfig, StreamConfig, load_config
from rgbir.runtime.frames import Frame, FramePair
from rgbir.runtime.inference import DetectSettings, PairDetector
from rgbir.runtime.pipeline import Pipeline
from rgbir.runtime.sources import ImageFolderSource, VideoSource
from test_cli_errors import records

README = Path(__file__).resolve().parents[1] / "README.md"


def config(**kw):
    kw.setdefault("stats_interval", 0)
    return PipelineConfig(model="fake.onnx", streams=[StreamConfig("rgb", "ir")], **kw)


def folder_sources(root: Path, count: int):
    return tuple(map(ImageFolderSource, write_folders(root, count)))


# stopping: --max-frames, --duration ----------------------------------------------------------------------------
def test_max_frames_stops_after_n_pairs_exit_0_and_a_batch_the_model_cannot_take_is_warned_once(tiny_onnx, tmp_path):
    rgb, ir = write_folders(tmp_path / "frames", 12)
    out, stats = tmp_path / "pairs.jsonl", tmp_path / "stats.json"
    result = rgbir("run", "--model", tiny_onnx, "--rgb", rgb, "--ir", ir, "--json", out, "--stats-json", stats,
                   "--stats-interval", "0", "--max-frames", "5", "--batch", "2")
    assert result.returncode == 0, result.stderr
    assert [r["index"] for r in records(out)] == list(range(5))
    assert json.loads(stats.read_text())["pairs"] == 5
    batch = [line for line in result.stderr.splitlines() if "warning: --batch 2" in line]
    assert len(batch) == 1 and "at most 1 pair(s) per call" in batch[0], result.stderr


def test_duration_stops_after_s_seconds_with_every_record_whole(tiny_onnx, tmp_path):
    rgb, ir = write_folders(tmp_path / "frames", 60)
    out, stats = tmp_path / "pairs.jsonl", tmp_path / "stats.json"
    result = rgbir("run", "--model", tiny_onnx, "--rgb", rgb, "--ir", ir, "--json", out, "--stats-json", stats,
                   "--stats-interval", "0", "--realtime", "--fps", "20", "--duration", "1")  # 3 s for all 60
    assert result.returncode == 0, result.stderr
    written = records(out)
    assert 5 <= len(written) < 60 and [r["index"] for r in written] == list(range(len(written)))
    assert json.loads(stats.read_text())["pairs"] == len(written)


def test_max_frames_counts_per_camera_pair(tmp_path):
    sink = RecordingSink()
    Pipeline(config(max_frames=4), backend=NumpyBackend(),
             sources=[folder_sources(tmp_path / "a", 9), folder_sources(tmp_path / "b", 9)], sinks=[sink]).run()
    assert sorted((r["stream"], r["index"]) for r in sink.records) == [(s, i) for s in (0, 1) for i in range(4)]


# outputs and statistics ----------------------------------------------------------------------------------------
def test_each_camera_pair_gets_its_own_video(tmp_path):
    video = tmp_path / "out" / "view.avi"
    cfg = config(sinks=SinkConfig(video=str(video)))
    cfg.streams = [StreamConfig("a", "a"), StreamConfig("b", "b")]
    Pipeline(cfg, backend=NumpyBackend(),
             sources=[folder_sources(tmp_path / "a", 5), folder_sources(tmp_path / "b", 7)]).run()
    assert sorted(p.name for p in video.parent.iterdir()) == ["view-1.avi", "view.avi"]
    counts = [int(cv2.VideoCapture(str(p)).get(cv2.CAP_PROP_FRAME_COUNT)) for p in (video, video.parent / "view-1.avi")]
    assert counts == [5, 7]


def test_files_mode_reports_processing_apart_from_queue_wait(tmp_path):
    sink = RecordingSink()
    stats = Pipeline(config(), backend=NumpyBackend(delay=0.03), sources=[folder_sources(tmp_path, 24)],
                     sinks=[sink]).run().summary()
    # files are read ahead, so most of a pair's latency is waiting behind the pairs read before it
    assert stats["processing_ms"]["p50"] >= 30 and stats["wait_ms"]["p50"] > 2 * stats["processing_ms"]["p50"]
    for r in sink.records:
        assert r["latency_ms"] == pytest.approx(r["wait_ms"] + r["processing_ms"], abs=0.01)


@pytest.mark.parametrize("kind", ["video", "folder"])
def test_realtime_paces_files_at_their_frame_rate(tmp_path, kind):
    if kind == "video":  # the video's own rate: 15 fps
        sources, fps, rate = tuple(VideoSource(str(p), "file") for p in write_videos(tmp_path, 6, fps=15.0)), None, 15
    else:
        sources, fps, rate = folder_sources(tmp_path, 6), 20.0, 20
    sink = RecordingSink()
    Pipeline(config(realtime=True, fps=fps), backend=NumpyBackend(), sources=[sources], sinks=[sink]).run()
    times = [r["rgb"]["time"] for r in sink.records]
    assert len(times) == 6 and times[-1] - times[0] >= 0.9 * 5 / rate
    assert min(np.diff(times)) >= 0.5 / rate  # spread out, not read in one burst


# thresholds against a graph with its own NMS --------------------------------------------------------------------
class NmsBackend(NumpyBackend):
    """A graph exported with NMS (max_det 5, IoU 0.7, conf 0.25): five detections of class 0 and 1, best first."""

    def __init__(self):
        super().__init__()
        self.metadata.postprocess = PostprocessSpec("nms", max_det=5, iou_threshold=0.7, score_threshold=0.25)
        self._outputs = []

    def _infer(self, feeds):
        b = len(feeds["rgb"])
        boxes = np.tile(np.array([[4, 4, 20, 20]], np.float32) + np.arange(5)[:, None] * 4, (b, 1, 1))
        scores = np.tile(np.array([0.9, 0.8, 0.6, 0.5, 0.3], np.float32), (b, 1))
        classes = np.tile(np.array([0, 1, 0, 1, 0], np.int32), (b, 1))
        return {"num_dets": np.full((b, 1), 5, np.int32), "boxes": boxes, "scores": scores, "classes": classes}


def detect(settings: DetectSettings):
    from media import frame_pair

    rgb, ir = frame_pair(0)
    detector = PairDetector(NmsBackend(), settings)
    pair = FramePair(0, Frame(rgb, 0, 0.0, 0.0, "rgb"), Frame(ir, 0, 0.0, 0.0, "ir"))
    return detector, detector([pair])[0].detections


def test_a_graph_with_nms_takes_stricter_thresholds_and_warns_about_the_rest():
    detector, found = detect(DetectSettings())
    assert detector.warnings == [] and len(found) == 5 and detector.settings.max_det == 5  # the graph's own
    detector, found = detect(DetectSettings(conf=0.28, max_det=2, classes=[0]))
    assert detector.warnings == [] and [(d.cls, d.score) for d in found] == [(0, pytest.approx(0.9)),
                                                                             (0, pytest.approx(0.6))]
    detector, found = detect(DetectSettings(conf=0.1, iou=0.5, max_det=100))
    assert len(found) == 5 and len(detector.warnings) == 3
    assert (detector.settings.conf, detector.settings.iou, detector.settings.max_det) == (0.25, 0.7, 5)  # in effect
    conf, iou, max_det = detector.warnings
    assert conf.startswith("--conf 0.1 is below the model's in-graph NMS threshold 0.25")
    assert iou.startswith("--iou 0.5 has no effect") and "--postprocess nms --iou 0.5" in iou
    assert max_det.startswith("--max-det 100 has no effect beyond 5")


# rgbir export: torch's messages to its own developers are not shown ------------------------------------------------
def test_export_hides_torchvision_log_lines_and_torch_future_warnings_only(caplog):
    import torch.utils._pytree as pytree
    from torch.onnx._internal.exporter import _registration

    from rgbir.cli.common import quiet_torch_export

    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with quiet_torch_export():
            assert _registration._get_overload("torchvision::nms") is None  # logs "torchvision is not installed"
            pytree.LeafSpec()  # a FutureWarning inside torch
            logging.getLogger(_registration.__name__).warning("another exporter warning")
            warnings.warn("a warning of rgbir's", UserWarning, stacklevel=1)
    assert [str(w.message) for w in shown] == ["a warning of rgbir's"]
    assert [r.getMessage() for r in caplog.records] == ["another exporter warning"]
    assert not logging.getLogger(_registration.__name__).filters  # removed again after the export


# README -------------------------------------------------------------------------------------------------------------
def readme_section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n{title}\n") + len(title) + 2
    end = re.search(r"\n#{2,3} ", text[start:])
    return text[start:start + end.start() if end else None]


def test_the_readme_run_config_example_loads_validates_and_shows_every_setting(tmp_path, monkeypatch):
    example = re.search(r"```yaml\n(.*?)```", readme_section("### Run configuration file"), re.DOTALL).group(1)
    (tmp_path / "run.yaml").write_text(example)
    monkeypatch.chdir(tmp_path)  # its output files are relative
    loaded = load_config("run.yaml")
    loaded.validate()
    data = yaml.safe_load(example)
    assert set(data) == {f.name for f in fields(PipelineConfig)}
    for section in ("pairing", "thermal", "sinks", "metrics", "tracking"):
        assert set(data[section]) == {f.name for f in fields(type(getattr(loaded, section)))}, section
    assert set(data["streams"][0]) == {f.name for f in fields(StreamConfig)}


def flat_keys(value, prefix="") -> set[str]:
    """A record's keys as the README names them: rgb.seq, detections[].box_rgb, …"""
    keys = set()
    for key, item in value.items():
        keys.add(prefix + key)
        if isinstance(item, dict):
            keys |= flat_keys(item, f"{prefix}{key}.")
        elif isinstance(item, list) and item and isinstance(item[0], dict):
            keys |= flat_keys(item[0], f"{prefix}{key}[].")
    return keys


def test_the_readme_json_lines_schema_names_every_key_of_a_record(tmp_path):
    sink = RecordingSink()
    Pipeline(config(), backend=NumpyBackend(), sources=[folder_sources(tmp_path, 1)], sinks=[sink]).run()
    rows = [line for line in readme_section("### JSON Lines records").splitlines() if line.startswith("| `")]
    documented = {key for row in rows for key in re.findall(r"`([^`]+)`", row.split("|")[1])}
    assert documented == flat_keys(sink.records[0])


def test_a_record_is_encoded_once_for_every_sink(tmp_path, monkeypatch):
    """--json, --mqtt and --redis publish the same bytes: the JSON is encoded once per pair, not once per sink."""
    import json

    real = json.dumps
    records = []

    def counting_dumps(obj, **kwargs):
        if isinstance(obj, dict) and "detections" in obj:
            records.append(obj)
        return real(obj, **kwargs)

    monkeypatch.setattr(json, "dumps", counting_dumps)
    lines = []
    sinks = [RecordingSink(), RecordingSink()]
    for sink in sinks:
        sink.write = lambda result, fps: lines.append(result.json_line())
    Pipeline(config(), backend=NumpyBackend(), sources=[folder_sources(tmp_path, 2)], sinks=sinks).run()
    assert len(lines) == 4 and len(records) == 2 and lines[0] is lines[1] and lines[2] is lines[3]
