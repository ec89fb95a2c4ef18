"""The pipeline end to end: files in lockstep, live cameras with faults, shutdown, memory."""

import json
import signal
import subprocess
import sys
import threading
import time
import tracemalloc

import cv2
import numpy as np
import pytest

from fakes import FakeCamera, NumpyBackend, RecordingSink, captured_log
from media import frame_pair, write_folders, write_videos
from rgbir.errors import RgbirError
from rgbir.runtime.config import PipelineConfig, SinkConfig, StreamConfig
from rgbir.runtime.pipeline import Pipeline
from rgbir.runtime.sources import ImageFolderSource, Source, VideoSource


def config(**kw):
    kw.setdefault("stats_interval", 0)
    return PipelineConfig(model="fake.onnx", streams=[StreamConfig("rgb", "ir")], **kw)


def run_live(cameras, seconds, backend=None, sink=None, **kw):
    """Run a live pipeline on fake cameras for ``seconds``, then stop it; returns (pipeline, sink, logs)."""
    sink = sink or RecordingSink()
    pipe = Pipeline(config(mode="live", **kw), backend=backend or NumpyBackend(), sources=cameras, sinks=[sink])
    timer = threading.Timer(seconds, pipe.stop)
    timer.start()
    with captured_log() as logs:
        pipe.run()
    timer.cancel()
    return pipe, sink, logs


def assert_exactly_once(records, streams=1):
    for s in range(streams):
        indices = [r["index"] for r in records if r["stream"] == s]
        assert indices == list(range(len(indices))), "every pair once, in order, none missing"


# file mode ------------------------------------------------------------------------------------------------------
def test_image_folders_every_pair_exactly_once_and_identical_to_direct_calls(tmp_path):
    rgb_dir, ir_dir = write_folders(tmp_path, 25)
    backend = NumpyBackend()
    sink = RecordingSink()
    pipe = Pipeline(config(), backend=backend,
                    sources=[(ImageFolderSource(rgb_dir), ImageFolderSource(ir_dir))], sinks=[sink])
    stats = pipe.run()
    assert stats.pairs == 25 and len(sink.records) == 25 and sink.closed
    assert_exactly_once(sink.records)
    assert [r["rgb"]["seq"] for r in sink.records] == [r["ir"]["seq"] for r in sink.records] == list(range(25))
    # the same pair through the detector directly gives the same detections
    from rgbir.runtime.frames import Frame, FramePair
    for i in (0, 13, 24):
        pair = FramePair(0, Frame(cv2.imread(str(rgb_dir / f"{i:05d}.jpg")), i, 0, 0, "rgb"),
                         Frame(cv2.imread(str(ir_dir / f"{i:05d}.jpg"), cv2.IMREAD_UNCHANGED), i, 0, 0, "ir"), i)
        direct = pipe.detector([pair])[0].record()["detections"]
        assert direct == sink.records[i]["detections"] and direct


@pytest.mark.slow
def test_onnx_backend_on_videos_json_lines_and_a_readable_video(tmp_path, tiny_onnx):
    rgb, ir = write_videos(tmp_path / "clips", 20)
    out = tmp_path / "out"
    cfg = PipelineConfig(model=str(tiny_onnx), streams=[StreamConfig(str(rgb), str(ir))], stats_interval=0,
                         sinks=SinkConfig(json=str(out / "pairs.jsonl"), video=str(out / "view.avi")))
    stats = Pipeline(cfg).run()
    lines = [json.loads(line) for line in (out / "pairs.jsonl").read_text().splitlines()]
    assert stats.pairs == 20 and len(lines) == 20
    assert_exactly_once(lines)
    from rgbir.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
    from rgbir.runtime.postprocess import postprocess
    from rgbir.runtime.preprocess import preprocess_pair
    backend = OnnxRuntimeBackend(tiny_onnx)
    cap_rgb, cap_ir = cv2.VideoCapture(str(rgb)), cv2.VideoCapture(str(ir))
    for line in lines[:5]:
        a, b = cap_rgb.read()[1], cv2.cvtColor(cap_ir.read()[1], cv2.COLOR_BGR2GRAY)
        arrays, (info, _) = preprocess_pair(a, b, backend.metadata)
        dets = postprocess(backend.infer(*arrays)["predictions"])[0]
        assert len(dets) == len(line["detections"])
        np.testing.assert_allclose(info.to_source(dets.boxes), [d["box_rgb"] for d in line["detections"]],
                                   atol=0.01)
        np.testing.assert_allclose(dets.scores, [d["score"] for d in line["detections"]], atol=1e-5)
    video = cv2.VideoCapture(str(out / "view.avi"))
    assert video.isOpened() and int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 20
    ok, frame = video.read()
    assert ok and frame.shape[0] == 480 and frame.shape[1] > 480  # side by side


def test_mismatched_resolutions_map_boxes_into_each_camera(tmp_path):
    rgb_dir, ir_dir = write_folders(tmp_path, 3, size=(240, 320), ir_size=(120, 100))
    sink = RecordingSink()
    Pipeline(config(), backend=NumpyBackend(imgsz=(64, 96)),
             sources=[(ImageFolderSource(rgb_dir), ImageFolderSource(ir_dir))], sinks=[sink]).run()
    det = sink.records[0]["detections"][0]
    rgb_box, ir_box = np.array(det["box_rgb"]), np.array(det["box_ir"])
    assert rgb_box.max() <= 320 and ir_box.max() <= 120 and not np.allclose(rgb_box, ir_box)


def test_corrupt_files_are_recorded_as_failed_pairs_without_breaking_lockstep(tmp_path):
    rgb_dir, ir_dir = write_folders(tmp_path, 6)
    (ir_dir / "00002.jpg").write_bytes(b"not a jpeg")
    sink = RecordingSink()
    with captured_log() as logs:
        stats = Pipeline(config(), backend=NumpyBackend(), sources=[(ImageFolderSource(rgb_dir),
                         ImageFolderSource(ir_dir))], sinks=[sink]).run()
    assert len(sink.records) == 6 and stats.failed == 1
    assert sink.records[2]["error"] == "corrupt ir frame" and sink.records[3]["error"] is None
    assert sink.records[3]["ir"]["seq"] == 3  # still aligned after the bad frame
    assert sink.records[2]["ir"]["file"] == "00002.jpg"
    corrupt = f"{ir_dir}: corrupt frame #2 (00002.jpg) recorded as a failed pair"
    assert [line for line in logs if "corrupt" in line] == [corrupt]


def test_folders_pair_by_file_name_and_report_the_unmatched_files_once(tmp_path):
    rgb_dir, ir_dir = write_folders(tmp_path, 8)
    (ir_dir / "00003.jpg").unlink()  # deleted in the middle: the later pairs must not shift
    cv2.imwrite(str(ir_dir / "00005.png"), cv2.imread(str(ir_dir / "00005.jpg")))  # same stem, other extension
    (ir_dir / "00005.jpg").unlink()
    cv2.imwrite(str(ir_dir / "zz_extra.png"), frame_pair(50)[1])
    sink = RecordingSink()
    with captured_log() as logs:
        stats = Pipeline(config(), backend=NumpyBackend(), sources=[(ImageFolderSource(rgb_dir),
                         ImageFolderSource(ir_dir))], sinks=[sink]).run()
    files = [(r["rgb"]["file"], r["ir"]["file"]) for r in sink.records]
    assert files == [(f"{i:05d}.jpg", f"{i:05d}.png" if i == 5 else f"{i:05d}.jpg") for i in (0, 1, 2, 4, 5, 6, 7)]
    assert stats.pairs == 7 and stats.failed == 0
    unmatched = (f"warning: 1 RGB image in {rgb_dir} has no IR partner (00003.jpg) and 1 IR image in {ir_dir} "
                 "has no RGB partner (zz_extra.png): they are skipped")
    assert [line for line in logs if "partner" in line] == [unmatched]


def test_folders_without_a_common_file_name_are_an_error_naming_both(tmp_path):
    rgb_dir, ir_dir = tmp_path / "visible", tmp_path / "infrared"
    rgb_dir.mkdir(), ir_dir.mkdir()
    for i in range(3):
        rgb, ir = frame_pair(i)
        cv2.imwrite(str(rgb_dir / f"a_{i:04d}.png"), rgb)
        cv2.imwrite(str(ir_dir / f"{i:04d}.png"), ir)
    with pytest.raises(RgbirError) as error:
        Pipeline(config(), backend=NumpyBackend(), sources=[(ImageFolderSource(rgb_dir), ImageFolderSource(ir_dir))],
                 sinks=[RecordingSink()]).run()
    message = str(error.value)
    assert "\n" not in message and str(rgb_dir) in message and str(ir_dir) in message
    assert "a_0000.png vs 0000.png" in message


@pytest.mark.parametrize("ir_fps", [30.0, 60.0])
def test_videos_with_different_frame_rates_are_warned_about_once(tmp_path, ir_fps):
    rgb, _ = write_videos(tmp_path / "rgb", 4, fps=30.0)
    _, ir = write_videos(tmp_path / "ir", 4, fps=ir_fps)
    sink = RecordingSink()
    with captured_log() as logs:
        Pipeline(config(), backend=NumpyBackend(),
                 sources=[(VideoSource(str(rgb), "file"), VideoSource(str(ir), "file"))],
                 sinks=[sink]).run()
    warnings = [line for line in logs if "fps" in line]
    if ir_fps == 30.0:
        assert warnings == []
    else:
        assert len(warnings) == 1 and f"{rgb} runs at 30 fps and {ir} at 60 fps" in warnings[0]
    assert len(sink.records) == 4 and sink.records[0]["rgb"]["file"] is None  # a video frame's index is its seq


def test_slow_sink_in_file_mode_loses_nothing(tmp_path):
    rgb_dir, ir_dir = write_folders(tmp_path, 12)
    sink = RecordingSink(delay=0.05)
    Pipeline(config(queue_size=2), backend=NumpyBackend(),
             sources=[(ImageFolderSource(rgb_dir), ImageFolderSource(ir_dir))], sinks=[sink]).run()
    assert_exactly_once(sink.records)
    assert len(sink.records) == 12


def test_batching_several_camera_pairs_into_one_call(tmp_path):
    a = write_folders(tmp_path / "a", 8)
    b = write_folders(tmp_path / "b", 8)
    backend, sink = NumpyBackend(), RecordingSink()
    cfg = config(batch=2)
    cfg.streams = [StreamConfig("a", "a"), StreamConfig("b", "b")]
    Pipeline(cfg, backend=backend, sources=[tuple(map(ImageFolderSource, a)), tuple(map(ImageFolderSource, b))],
             sinks=[sink]).run()
    assert len(sink.records) == 16
    assert_exactly_once(sink.records, streams=2)
    assert backend.calls < 16  # at least some calls carried both streams


def test_calls_never_exceed_the_backends_largest_batch():
    from rgbir.runtime.frames import Frame, FramePair
    from rgbir.runtime.inference import DetectSettings, PairDetector

    backend = NumpyBackend()
    backend.max_batch = 2  # e.g. a TensorRT engine built with --batch 1,2,2
    pairs = [FramePair(0, Frame(r, i, 0.0, 0.0, "rgb"), Frame(ir, i, 0.0, 0.0, "ir"))
             for i, (r, ir) in enumerate(frame_pair(i) for i in range(5))]
    detector = PairDetector(backend, DetectSettings())
    assert [len(b.ready) for b in detector.prepare(pairs)] == [2, 2, 1]
    assert len(detector(pairs)) == 5 and backend.calls == 3


# live mode ------------------------------------------------------------------------------------------------------
def test_live_cameras_pair_within_tolerance():
    """Threads and real cameras' timing end to end; the pairing decisions themselves are tested on a stand-in
    clock (tests/test_live_pairing.py)."""
    pipe, sink, _ = run_live([(FakeCamera("rgb", "rgb", fps=30), FakeCamera("ir", "ir", fps=30))], 1.5)
    assert sink.records
    assert_exactly_once(sink.records)
    assert all(abs(r["skew_ms"]) <= 40 for r in sink.records)


def test_a_camera_that_dies_and_comes_back(capsys):
    rgb = FakeCamera("rgb", "rgb", fps=40)
    ir = FakeCamera("ir", "ir", fps=40, die_at=10, down_for=0.6)
    pipe, sink, logs = run_live([(rgb, ir)], 2.5)
    assert ir.opens >= 2 and pipe.stats.counters.get("ir: reconnects", 0) >= 1
    assert any("reconnecting" in line for line in logs) and any("reconnected" in line for line in logs)
    assert any("stalled" in line for line in logs) and any("is back" in line for line in logs)
    before = [r for r in sink.records if r["ir"]["seq"] < 10]
    after = [r for r in sink.records if r["ir"]["seq"] >= 10]
    assert before and after  # pairs before the outage and after the camera came back
    assert_exactly_once(sink.records)


def test_corrupt_live_frames_are_skipped_and_counted():
    pipe, sink, logs = run_live([(FakeCamera("rgb", "rgb", corrupt_every=5), FakeCamera("ir", "ir"))], 1.2)
    assert pipe.stats.counters.get("rgb: corrupt frames", 0) >= 3
    assert all(r["error"] is None for r in sink.records) and sink.records
    assert_exactly_once(sink.records)


def test_slow_inference_in_live_mode_drops_instead_of_queueing():
    pipe, sink, _ = run_live([(FakeCamera("rgb", "rgb", fps=60), FakeCamera("ir", "ir", fps=60))], 1.5,
                             backend=NumpyBackend(delay=0.1))
    # bounded, not growing: a pair waits for at most the pairs queued ahead of it and the stages, each taking
    # about one processing time (pair queue + two stage queues of 2 + the calls running), however slow the
    # machine is: no absolute time is asserted
    slowest = max(r["processing_ms"] for r in sink.records)
    assert sink.records and max(r["wait_ms"] for r in sink.records) <= (pipe.config.queue_size + 6) * slowest
    dropped = sum(v for k, v in pipe.stats.counters.items() if "dropped" in k)
    assert dropped > 10
    assert_exactly_once(sink.records)


def test_missing_ir_source_for_a_dual_model_is_a_clear_error():
    with pytest.raises(RgbirError, match="needs an IR camera"):
        Pipeline(config(), backend=NumpyBackend(), sources=[(FakeCamera("rgb", "rgb"), None)], sinks=[])


# shutdown and memory ----------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_run_finishes_in_flight_pairs_closes_files_and_exits_128_plus_it(tmp_path, tiny_onnx, signum,
                                                                                       code):
    rgb_dir, ir_dir = write_folders(tmp_path / "frames", 120)
    out = tmp_path / "pairs.jsonl"
    stats = tmp_path / "stats.json"
    proc = subprocess.Popen([sys.executable, "-m", "rgbir", "run", "--model", str(tiny_onnx), "--rgb", str(rgb_dir),
                             "--ir", str(ir_dir), "--json", str(out), "--stats-json", str(stats),
                             "--stats-interval", "0", "--realtime", "--fps", "30"],  # paced: 4 s for all 120
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 10):
        time.sleep(0.05)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr and f"stopping ({signal.Signals(signum).name})" in stderr
    text = out.read_text()
    lines = [json.loads(line) for line in text.splitlines()]  # every line is complete JSON
    assert text.endswith("\n") and 10 <= len(lines) < 120
    assert_exactly_once(lines)
    assert json.loads(stats.read_text())["pairs"] == len(lines)
    assert f"{len(lines)} pairs" in stdout  # the final table still printed


class _FrameList(Source):
    """A file-mode source of ``count`` in-memory frames (no disk), for the soak test."""

    def __init__(self, count, modality):
        self.name, self.position = "memory", 0
        self.count, self.modality = count, modality
        self.rgb, self.ir = None, None

    def open(self):
        from media import frame_pair
        self.rgb, self.ir = frame_pair(0, (48, 64))
        self.position = 0

    def read(self):
        if self.position >= self.count:
            return None
        self.position += 1
        return (self.rgb if self.modality == "rgb" else self.ir).copy()


@pytest.mark.slow
def test_soak_2000_pairs_without_memory_growth():
    memory = {}

    class MemorySink(RecordingSink):
        def write(self, result, fps):
            if result.pair.index in (500, 1999):
                memory[result.pair.index] = tracemalloc.get_traced_memory()[0]
            self.records.append(result.pair.index)

    tracemalloc.start()
    try:
        sink = MemorySink()
        stats = Pipeline(config(), backend=NumpyBackend(imgsz=(32, 32)),
                         sources=[(_FrameList(2000, "rgb"), _FrameList(2000, "ir"))], sinks=[sink]).run()
    finally:
        tracemalloc.stop()
    assert stats.pairs == 2000 and sink.records == list(range(2000))
    growth = memory[1999] - memory[500]
    assert growth < 1_000_000, f"memory grew by {growth} bytes over 1500 pairs"


def test_a_failing_backend_ends_the_run_with_its_message(tmp_path):
    class Broken(NumpyBackend):
        def _infer(self, feeds):
            raise RuntimeError("device lost")

    rgb_dir, ir_dir = write_folders(tmp_path, 10)
    sink = RecordingSink()
    pipe = Pipeline(config(), backend=Broken(), sources=[(ImageFolderSource(rgb_dir), ImageFolderSource(ir_dir))],
                    sinks=[sink])
    with pytest.raises(RgbirError, match="inference failed: RuntimeError: device lost"):
        pipe.run()
    assert sink.closed


def test_two_live_streams_with_a_tiny_queue_shut_down_cleanly():
    """A live pairer dropping the oldest pair must never drop another stream's end marker (that hung)."""
    cameras = [(FakeCamera(f"rgb{i}", "rgb", fps=60), FakeCamera(f"ir{i}", "ir", fps=60)) for i in range(2)]
    start = time.monotonic()
    cfg = dict(queue_size=1)
    pipe, sink, _ = run_live(cameras, 1.0, backend=NumpyBackend(delay=0.05), **cfg)
    assert time.monotonic() - start < 20
    assert_exactly_once(sink.records, streams=2)


def test_a_failing_sink_stops_the_run_and_releases_the_workers(tmp_path):
    class BrokenSink(RecordingSink):
        def write(self, result, fps):
            if result.pair.index == 3:
                raise OSError("disk full")
            super().write(result, fps)

    rgb_dir, ir_dir = write_folders(tmp_path, 30)
    sink = BrokenSink()
    pipe = Pipeline(config(queue_size=1), backend=NumpyBackend(),
                    sources=[(ImageFolderSource(rgb_dir), ImageFolderSource(ir_dir))], sinks=[sink])
    with pytest.raises(OSError, match="disk full"):
        pipe.run()
    assert sink.closed and len(sink.records) == 3
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(t.name in ("inference", "postprocess") for t in threading.enumerate()):
        time.sleep(0.05)
    assert not any(t.name in ("inference", "postprocess") for t in threading.enumerate())


def test_a_crashing_source_is_reported_not_taken_for_the_end(tmp_path):
    class Crashing(ImageFolderSource):
        def read(self):
            if self.position == 2:
                raise ValueError("driver bug")
            return super().read()

    rgb_dir, ir_dir = write_folders(tmp_path, 6)
    with pytest.raises(RgbirError, match="capture failed: .*driver bug"):
        Pipeline(config(), backend=NumpyBackend(), sources=[(Crashing(rgb_dir), ImageFolderSource(ir_dir))],
                 sinks=[RecordingSink()]).run()


def test_a_normal_run_ends_as_soon_as_the_sources_do(tmp_path):
    rgb_dir, ir_dir = write_folders(tmp_path, 5)
    start = time.monotonic()
    Pipeline(config(), backend=NumpyBackend(), sources=[(ImageFolderSource(rgb_dir), ImageFolderSource(ir_dir))],
             sinks=[RecordingSink()]).run()
    assert time.monotonic() - start < 5  # no waiting for a second end marker after the first
