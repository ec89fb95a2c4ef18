"""Prometheus metrics (issue 15): scraped over HTTP while a run is held mid-way, parsed with prometheus-client's own
parser, every figure equals the run's statistics at that moment; the server binds loopback and closes with the run;
two pipelines in one process keep separate registries."""

import threading
import urllib.request

import pytest

from brokers import free_port
from fakes import NumpyBackend, RecordingSink
from media import write_folders
from rgbir.runtime.config import PipelineConfig, StreamConfig
from rgbir.runtime.pipeline import Pipeline
from rgbir.runtime.sources import ImageFolderSource
from rgbir.runtime.stats import Count, Stats

parser = pytest.importorskip("prometheus_client.parser", reason="metrics need the fleet extra")
from rgbir.runtime.outputs.metrics import Metrics, MetricsConfig  # noqa: E402 (after the skip)

HELD_AT = 8  # the pair whose write holds the run while the test scrapes


class Holding(RecordingSink):
    """Holds the run inside the HELD_AT-th write until released; reports one running count of its own."""

    def __init__(self):
        super().__init__()
        self.reached, self.release = threading.Event(), threading.Event()

    def write(self, result, fps):
        super().write(result, fps)
        if len(self.records) == HELD_AT:
            self.reached.set()
            self.release.wait(30)

    def counts(self):
        return [Count("sink", "holding", "records dropped", 7)]


def scrape(port: int) -> dict[str, dict]:
    """Metric families by name: {sample name: {labels as a sorted tuple: value}}."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    families = {}
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            families.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return families


def test_a_scrape_mid_run_matches_the_run_statistics(tmp_path):
    rgb, ir = write_folders(tmp_path / "frames", 12)
    port = free_port()
    config = PipelineConfig(model="fake.onnx", streams=[StreamConfig("rgb", "ir")], stats_interval=0,
                            metrics=MetricsConfig(port))
    sink = Holding()
    pipeline = Pipeline(config, backend=NumpyBackend(), sinks=[sink],
                        sources=[(ImageFolderSource(str(rgb)), ImageFolderSource(str(ir)))])
    run = threading.Thread(target=pipeline.run)
    run.start()
    try:
        assert sink.reached.wait(30)
        metrics, stats = scrape(port), pipeline.stats  # the held pair is written to no statistics yet
        assert pipeline.metrics.server.server_address[0] == "127.0.0.1"
        stream = (("stream", "0"),)
        assert metrics["rgbir_pairs_total"][stream] == stats.pairs == HELD_AT - 1
        assert metrics["rgbir_pairs_failed_total"][stream] == stats.failed
        assert metrics["rgbir_detections_total"][stream] == stats.detections
        for name, values in (("latency", stats.latency), ("queue_wait", stats.wait), ("processing", stats.processing),
                             ("skew", stats.skew)):
            assert metrics[f"rgbir_{name}_seconds_count"][stream] == len(values)
            assert metrics[f"rgbir_{name}_seconds_sum"][stream] == pytest.approx(sum(values) / 1e3, rel=1e-6)
        for stage in ("preprocess", "infer", "postprocess"):
            assert metrics["rgbir_stage_seconds_sum"][(("stage", stage),)] == pytest.approx(
                sum(stats.stages[stage]) / 1e3, rel=1e-6)
        assert 0 < metrics["rgbir_fps"][()] == pytest.approx(stats.fps, rel=0.5)
        # every running count, zeros too, labelled by camera, stream or sink
        for count in pipeline.counts():
            family = f"rgbir_{count.kind}_" + count.event.replace(" (", "_").replace(")", "").replace(" ", "_")
            assert metrics[family + "_total"][((count.kind, count.subject),)] == count.value, family
        assert metrics["rgbir_sink_records_dropped_total"][(("sink", "holding"),)] == 7
        assert metrics["rgbir_camera_reconnects_total"][(("camera", str(rgb)),)] == 0
    finally:
        sink.release.set()
        run.join(30)
    with pytest.raises(OSError):  # the server closed with the run
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_two_pipelines_in_one_process_serve_their_own_metrics():
    first, second = (Metrics(MetricsConfig(free_port()), Stats(), list) for _ in range(2))  # no duplicate series
    try:
        assert first.registry is not second.registry
        assert "rgbir_pairs" in {family.name for family in second.registry.collect()}
    finally:
        first.close()
        second.close()
