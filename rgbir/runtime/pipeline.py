"""The real-time pipeline: capture threads → pairing → preprocess/infer/postprocess → tracking → sinks.

Every hand-over is a bounded queue, so a slow stage never grows memory: file sources block (lockstep, no
drops); live cameras keep only their newest frame and the pair queue drops its oldest pair. Ctrl-C / SIGTERM,
``max_frames`` and ``duration`` stop capturing, let every pair already in flight finish, write it exactly once,
and close the files (``interrupted`` then names the signal, for the exit code).
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from dataclasses import dataclass

from ..errors import RgbirError
from .backends import Backend, open_backend
from .capture import CaptureThread, FrameQueue, LatestSlot
from .config import PipelineConfig
from .frames import FramePair
from .inference import DetectSettings, PairDetector
from .outputs.brokers import MqttSink, RedisSink
from .outputs.metrics import Metrics
from .outputs.result_files import MotSink, YoloTxtSink
from .outputs.sinks import JsonlSink, MjpegSink, Sink, VideoSink, WindowSink
from .outputs.tracking import Tracker
from .pairing import LivePairer, pair_lockstep
from .preprocess import colour_frame
from .registration import Registration
from .results import PairResult
from .sources import Source, match_by_stem, open_source, rate_mismatch
from .stages import DONE, Stages
from .stats import Count, Stats

log = logging.getLogger(__name__)

def _settings(config: PipelineConfig, detect: DetectSettings) -> dict:
    """The run's settings as recorded with its statistics (AGC, pairing, the thresholds in effect, …)."""
    from dataclasses import asdict

    return {**asdict(config), **asdict(detect)}


@dataclass
class _Stream:
    index: int
    rgb: Source
    ir: Source | None
    captures: list[CaptureThread]
    pairer: threading.Thread | None = None
    live_pairer: LivePairer | None = None


class Pipeline:
    """``Pipeline(config).run()`` processes until the sources end or ``stop()`` (or Ctrl-C); returns Stats."""

    def __init__(self, config: PipelineConfig, backend: Backend | None = None,
                 sources: list[tuple[Source, Source | None]] | None = None, sinks: list[Sink] | None = None):
        config.validate()
        self.config = config
        self.stop_event = threading.Event()
        self.interrupted: int | None = None  # the signal (SIGINT, SIGTERM) that stopped the run, if one did
        self.sources = sources or [(open_source(s.rgb), open_source(s.ir, raw=True, fourcc=s.ir_fourcc)
                                    if s.ir else None) for s in config.streams]  # specs checked before the model
        if config.realtime and all(s.live for pair in self.sources for s in pair if s is not None):
            raise RgbirError("--realtime paces video files and image folders; cameras and streams already run at "
                             "their own rate: leave it out")
        self.owns_backend = backend is None  # opened here, so closed here (device memory, streams)
        self.backend = backend or self._open_backend()
        try:
            self.detector = self._detector()
        except BaseException:
            self._release_backend()
            raise
        self.live = self._is_live()
        self.owns_sinks = sinks is None  # opened by run() once the sources are open
        self.sinks: list[Sink] = sinks if sinks is not None else []
        self.periods: list[tuple[float | None, float | None]] = []  # per camera pair: --realtime frame periods
        self.stats = Stats(settings=_settings(config, self.detector.settings))
        self.events: dict[str, int] = {}  # the pipeline's own counts (pairs dropped before inference)
        self.stages = Stages(self.detector, config.batch, config.queue_size, self.live, config.max_frames,
                             self.stop_event, self._count)
        self.streams: list[_Stream] = []
        self.tracker = Tracker(config.tracking) if config.tracking.tracker else None
        self.metrics: Metrics | None = None  # served from run() until the run ends

    # construction -----------------------------------------------------------------------------------------
    def _open_backend(self) -> Backend:
        c = self.config
        return open_backend(c.model, c.backend, providers=c.providers, device=c.device, cuda_graph=c.cuda_graph,
                            contexts=c.contexts, gpu_preprocess=c.gpu_preprocess, imgsz=c.imgsz, half=c.half,
                            attention=c.attention)

    def _release_backend(self) -> None:
        if self.owns_backend:
            self.backend.close()

    def _detector(self) -> PairDetector:
        """The detector with the run's settings, after checking the sources fit the model; what the model cannot
        honour of those settings is logged as one warning line each."""
        c = self.config
        self._check_modalities()
        registration = Registration.load(c.registration) if c.registration else None
        detector = PairDetector(self.backend, DetectSettings(c.conf, c.iou, c.max_det, c.classes), registration)
        notes = [*self.backend.warnings, *detector.warnings]
        if c.batch > detector.max_batch:
            notes.append(f"--batch {c.batch}: this model takes at most {detector.max_batch} pair(s) per call, so "
                         f"pairs go {detector.max_batch} at a time (export with --batch dynamic, or build the "
                         "engine with a larger --batch, to batch more)")
        for note in notes:
            self._warn(note)
        return detector

    def _check_modalities(self) -> None:
        """An IR camera for every pair if the model takes IR, and none if it takes RGB only (it would be ignored)."""
        needs_ir = "ir" in self.backend.input_names
        for _rgb, ir in self.sources:
            if needs_ir and ir is None:
                raise RgbirError("this model needs an IR camera too: give --ir")
            if not needs_ir and ir is not None:
                raise RgbirError(f"this model takes RGB only (it has no 'ir' input): leave out --ir {ir.name}, or "
                                 "use an RGB+IR model")

    def _is_live(self) -> bool:
        if self.config.mode != "auto":
            return self.config.mode == "live"
        return any(s.live for pair in self.sources for s in pair if s is not None)

    def _open_sinks(self) -> list[Sink]:
        c = self.config.sinks
        sinks: list[Sink] = []
        try:
            if c.json:
                sinks.append(JsonlSink(c.json))
            if c.video:
                sinks.append(VideoSink(c.video, c.video_fps))
            if c.show:
                sinks.append(WindowSink(self.stop_event))
            if c.mjpeg_port is not None:
                sinks.append(MjpegSink(c.mjpeg_port))
                log.info(f"MJPEG preview on http://127.0.0.1:{sinks[-1].port}/")
            if c.yolo_txt:
                sinks.append(YoloTxtSink(c.yolo_txt))
            if c.mot:
                sinks.append(MotSink(c.mot))
            if c.mqtt:
                sinks.append(MqttSink(c.mqtt, c.mqtt_qos, c.mqtt_tls, c.mqtt_user, c.mqtt_password_file,
                                      c.mqtt_client_id, c.broker_buffer, c.broker_flush))
            if c.redis:
                sinks.append(RedisSink(c.redis, c.redis_maxlen, c.broker_buffer, c.broker_flush))
        except Exception:
            for sink in sinks:
                sink.close()
            raise
        return sinks

    # running ------------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop capturing; pairs already in flight are still processed and written."""
        self.stop_event.set()

    def run(self) -> Stats:
        """Process until the sources end, ``max_frames`` or ``duration`` is reached, ``stop()`` or SIGINT/SIGTERM;
        returns the statistics. Nothing is written before every source is open."""
        try:
            self._open()
        except BaseException:
            self._release_backend()
            raise
        restore = self._install_signals()
        started = last_line = time.monotonic()
        finished = False
        try:
            self._start()
            while True:
                try:
                    item = self.stages.results.get(timeout=0.1)
                except queue.Empty:
                    item = None
                if item is DONE:
                    finished = True
                    break
                if item is not None:
                    self._write(item)
                if self.config.duration and time.monotonic() - started >= self.config.duration:
                    self.stop()
                interval = self.config.stats_interval
                if interval and time.monotonic() - last_line >= interval:
                    self._collect_counters()
                    log.info(self.stats.line())
                    last_line = time.monotonic()
        finally:
            self.stop_event.set()
            restore()
            if not finished:  # left early (a sink failed): let the workers finish and release the backend
                finished = self._drain()
            unfinished = self._close_sinks()
            if finished:  # never free buffers a still-running worker may use
                self._release_backend()
            self._collect_counters()
            if self.metrics is not None:
                self.metrics.close()
            if self.config.stats_json:
                self.stats.write_json(self.config.stats_json)
        failed = [c.error for s in self.streams for c in s.captures if c.error]
        if self.stages.error or failed:
            raise RgbirError(self.stages.error or f"capture failed: {failed[0]}")
        if unfinished is not None:
            raise unfinished
        return self.stats

    def _close_sinks(self) -> RgbirError | None:
        """Close every sink, also after one fails to finish its file; the first such failure is returned."""
        first = None
        for sink in self.sinks:
            try:
                sink.close()
            except RgbirError as e:
                first = first or e
        return first

    def _drain(self, seconds: float = 10.0) -> bool:
        """Consume results until the workers' end marker (bounded in time), so no worker stays blocked; True
        when the workers ended."""
        deadline = time.monotonic() + seconds
        item = None
        while item is not DONE and self.streams and time.monotonic() < deadline:
            try:
                item = self.stages.results.get(timeout=0.1)
            except queue.Empty:
                item = None
        return item is DONE or not self.streams

    def _interrupted(self, signum: int, frame=None) -> None:
        """SIGINT/SIGTERM: a flag, not an exception, so no record is ever half-written."""
        if self.interrupted is None:
            self.interrupted = signum
            log.info(f"stopping ({signal.Signals(signum).name}): finishing the pairs in flight")
        self.stop_event.set()

    def _install_signals(self):
        if threading.current_thread() is not threading.main_thread():
            return lambda: None  # embedded use: the caller stops the pipeline with stop()
        previous = {sig: signal.signal(sig, self._interrupted) for sig in (signal.SIGINT, signal.SIGTERM)}
        return lambda: [signal.signal(sig, handler) for sig, handler in previous.items()]

    def _write(self, result: PairResult) -> None:
        fps = self.stats.fps
        if self.tracker is not None:  # before any sink: every output carries the same track ids
            start = time.perf_counter()
            self.tracker.update(result)
            result.timings_ms["track"] = (time.perf_counter() - start) * 1e3
        start = time.perf_counter()
        for sink in self.sinks:
            sink.write(result, fps)
        result.timings_ms["sink"] = (time.perf_counter() - start) * 1e3
        self.stats.add(result)
        if self.metrics is not None:
            self.metrics.observe(result)

    # opening ------------------------------------------------------------------------------------------------
    def _open(self) -> None:
        """Open the sources (a pair of folders matched by file name first), then the sinks: a source that cannot
        open (an empty folder, a missing camera) leaves no output file behind."""
        for rgb, ir in self.sources:  # before opening: a pair of folders then reads same-named images only
            self._warn(match_by_stem(rgb, ir))
        opened = []
        try:
            for source in (s for pair in self.sources for s in pair if s is not None):
                source.open()
                opened.append(source)
            self.periods = [(self._period(rgb), self._period(ir)) for rgb, ir in self.sources]
            if self.owns_sinks:
                self.sinks = self._open_sinks()
            if self.config.metrics.port is not None:
                self.metrics = Metrics(self.config.metrics, self.stats, self.counts)
                log.info(f"metrics on http://{self.config.metrics.host}:{self.metrics.port}/metrics")
        except BaseException:
            for sink in self.sinks if self.owns_sinks else ():
                sink.close()
            for source in opened:
                source.close()
            raise

    def _period(self, source: Source | None) -> float | None:
        """--realtime: seconds between a file source's frames (--fps, else the video's own rate); None for cameras
        and streams (already real time) and without --realtime."""
        c = self.config
        if not c.realtime or source is None or source.live:
            return None
        fps = c.fps or source.reported_fps
        if fps <= 0:
            raise RgbirError(f"{source.name} does not say its frame rate: give --fps with --realtime")
        return 1.0 / fps

    # threads --------------------------------------------------------------------------------------------------
    def _start(self) -> None:
        thermal = self.config.thermal
        for i, ((rgb, ir), (rgb_period, ir_period)) in enumerate(zip(self.sources, self.periods)):
            self._warn(rate_mismatch(rgb, ir))
            changed = threading.Condition()
            if self.live:
                outboxes = (LatestSlot(changed), LatestSlot(changed) if ir else None)
            else:
                size = self.config.queue_size
                outboxes = (FrameQueue(size, self.stop_event), FrameQueue(size, self.stop_event) if ir else None)
            captures = [CaptureThread(rgb, outboxes[0], self.stop_event, convert=colour_frame, period=rgb_period)]
            if ir is not None:
                captures.append(CaptureThread(ir, outboxes[1], self.stop_event, convert=thermal,
                                              period=ir_period))
            stream = _Stream(i, rgb, ir, captures)
            if self.live and ir is not None:
                stream.live_pairer = LivePairer(i, outboxes[0], outboxes[1], self.config.pairing)
                pairs = stream.live_pairer.pairs(self.stop_event)
            elif self.live:
                pairs = self._single_live(i, outboxes[0])
            else:
                pairs = pair_lockstep(i, outboxes[0], outboxes[1], self.stop_event)
            stream.pairer = self.stages.add_stream(pairs)
            self.streams.append(stream)
        for stream in self.streams:
            for capture in stream.captures:
                capture.start()
            stream.pairer.start()
        self.stages.start()

    def _warn(self, warning: str | None) -> None:
        """Log what the user should know about the sources (once, as the run starts)."""
        if warning:
            log.warning(warning)

    def _single_live(self, stream: int, slot: LatestSlot):
        while not self.stop_event.is_set() and not slot.closed:
            with slot.changed:
                slot.changed.wait_for(lambda: slot.fresh or slot.closed, 0.05)
                frame = slot.take()
            if frame is not None:
                yield FramePair(stream, frame, None)

    def _count(self, event: str, n: int = 1) -> None:
        with self.stats.lock:
            self.events[event] = self.events.get(event, 0) + n

    def counts(self) -> list[Count]:
        """Every running count of the cameras, streams, sinks and the pipeline, zeros included, as they are now."""
        counts = []
        for stream in self.streams:
            for capture in stream.captures:
                name = capture.source.name
                counts += [Count("camera", name, "corrupt frames", capture.corrupt),
                           Count("camera", name, "reconnects", capture.reconnects),
                           Count("camera", name, "frames dropped (stale)", capture.outbox.dropped)]
            pairer = stream.live_pairer
            if pairer is not None:
                counts += [Count("stream", str(stream.index), "frames dropped (skew)", pairer.skew_rejects),
                           Count("stream", str(stream.index), "frames dropped (stall)", pairer.stall_drops)]
                counts += [Count("camera", source.name, "stalls", pairer.stalls[modality])
                           for modality, source in (("rgb", stream.rgb), ("ir", stream.ir))]
        for sink in self.sinks:
            counts += sink.counts()
        with self.stats.lock:
            counts += [Count("pipeline", "", event, n) for event, n in self.events.items()]
        return counts

    def _collect_counters(self) -> None:
        counts = self.counts()
        with self.stats.lock:
            self.stats.counters.update((c.key, c.value) for c in counts if c.value)
