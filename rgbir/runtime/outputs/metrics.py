"""Prometheus metrics of a run on http://HOST:PORT/metrics (--metrics PORT, on 127.0.0.1 unless --metrics-host):
pairs, failed pairs and detections per stream, latency, queue wait, processing, per-stage and RGB/IR skew
histograms, FPS, and every running count of the cameras, streams and brokers (drops, reconnects, stalls, …) as
``rgbir_<kind>_<event>_total``. The metrics live in their own registry, not prometheus-client's global one, so
several pipelines in one process (or tests) never clash."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib.util import find_spec

from ...errors import RgbirError
from ...options import CommandLineOptions, option
from ...preflight import cannot_serve, free_port
from ..results import PairResult
from ..stats import Count, Stats

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)  # seconds
SKEW_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64)  # seconds


@dataclass
class MetricsConfig(CommandLineOptions):
    port: int | None = option(None, flag="--metrics", parse=int, metavar="PORT",
                              help="serve Prometheus metrics on http://HOST:PORT/metrics (pip install "
                                   "'rgbir[fleet]')")
    host: str = option("127.0.0.1", flag="--metrics-host", metavar="HOST",
                       help="address the metrics server binds (0.0.0.0: every interface)")

    def validate(self) -> None:
        if self.port is None:
            return
        if find_spec("prometheus_client") is None:
            raise RgbirError("--metrics needs prometheus-client: pip install 'rgbir[fleet]'")
        free_port(self.port, "metrics", self.host)


def metric_name(count: Count) -> str:
    """'frames dropped (stale)' of a camera → rgbir_camera_frames_dropped_stale (exposed with _total)."""
    return f"rgbir_{count.kind}_{re.sub(r'[^a-z0-9]+', '_', count.event.lower()).strip('_')}"


class Metrics:
    """Observes each written pair (``observe``) and serves the registry over HTTP until ``close``; the running
    counts (``counts``) and FPS (``stats``) are read when Prometheus scrapes."""

    def __init__(self, config: MetricsConfig, stats: Stats, counts: Callable[[], list[Count]]):
        from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

        self.registry = CollectorRegistry()

        def counter(name: str, text: str) -> Counter:
            return Counter(name, text, ["stream"], registry=self.registry)

        def histogram(name: str, text: str, label: str = "stream", buckets=LATENCY_BUCKETS) -> Histogram:
            return Histogram(name, text, [label], buckets=buckets, registry=self.registry)

        self.pairs = counter("rgbir_pairs", "pairs processed")
        self.failed = counter("rgbir_pairs_failed", "pairs that failed (a corrupt frame)")
        self.detections = counter("rgbir_detections", "detections reported")
        self.latency = histogram("rgbir_latency_seconds", "capture → result: queue wait + processing")
        self.wait = histogram("rgbir_queue_wait_seconds", "pairing and the queues between the stages")
        self.processing = histogram("rgbir_processing_seconds", "preprocess + inference + postprocess of a pair")
        self.stages = histogram("rgbir_stage_seconds", "time per pair in each stage", "stage")
        self.skew = histogram("rgbir_skew_seconds", "|RGB − IR| capture time of a pair", buckets=SKEW_BUCKETS)
        self.registry.register(_Running(stats, counts))
        try:
            self.server, _ = start_http_server(config.port, config.host, registry=self.registry)
        except OSError as e:
            raise cannot_serve("metrics", config.host, config.port, e) from e
        self.port = self.server.server_address[1]

    def observe(self, result: PairResult) -> None:
        stream = str(result.pair.stream)
        self.pairs.labels(stream).inc()
        self.failed.labels(stream).inc(result.error is not None)
        self.detections.labels(stream).inc(len(result.detections))
        self.latency.labels(stream).observe(result.latency_ms / 1e3)
        self.wait.labels(stream).observe(result.wait_ms / 1e3)
        self.processing.labels(stream).observe(result.processing_ms / 1e3)
        self.skew.labels(stream).observe(abs(result.pair.skew_ms) / 1e3)
        for stage, ms in result.timings_ms.items():
            self.stages.labels(stage).observe(ms / 1e3)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Running:
    """A collector read at each scrape: FPS, and the running counts as counters labelled by camera, stream or
    sink."""

    def __init__(self, stats: Stats, counts: Callable[[], list[Count]]):
        self.stats, self.counts = stats, counts

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        yield GaugeMetricFamily("rgbir_fps", "pairs per second over the most recent pairs", value=self.stats.fps)
        families: dict[str, CounterMetricFamily] = {}
        for count in self.counts():
            name = metric_name(count)
            if name not in families:
                families[name] = CounterMetricFamily(name, f"{count.event}, per {count.kind}",
                                                     labels=[] if count.kind == "pipeline" else [count.kind])
            families[name].add_metric([] if count.kind == "pipeline" else [count.subject], count.value)
        yield from families.values()
