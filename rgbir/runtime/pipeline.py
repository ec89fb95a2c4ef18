"""The real-time pipeline: capture threads → pairing → preprocess/infer/postprocess → sinks.

Every hand-over is a bounded queue, so a slow stage never grows memory: file sources block (lockstep, no
drops); live cameras keep only their newest frame and the pair queue drops its oldest pair. Ctrl-C / SIGTERM,
``max_frames`` and ``duration`` stop capturing, let every pair already in flight finish, write it exactly once,
and close the files (``interrupted`` then names the signal, for the exit code).
"""

from __future__ import annotations

import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable

from ..errors import RgbirError
from .backends import Backend, open_backend
from .capture import CaptureThread, LatestSlot
from .config import PipelineConfig
from .frames import FramePair
from .inference import DetectSettings, PairDetector
from .pairing import LivePairer, pair_lockstep
from .registration import Registration
from .results import PairResult
from .sinks import JsonlSink, MjpegSink, Sink, VideoSink, WindowSink
from .sources import Source, match_by_stem, open_source, rate_mismatch
from .stats import Stats

DONE = object()  # end marker between the stages


def _settings(config: PipelineConfig, detect: DetectSettings) -> dict:
    """The run's settings as recorded with its statistics (AGC, pairing, the thresholds in effect, …)."""
    from dataclasses import asdict

    return {**asdict(config), **asdict(detect)}


def stderr_log(message: str) -> None:
    print(f"[rgbir {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


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
                 sources: list[tuple[Source, Source | None]] | None = None, sinks: list[Sink] | None = None,
                 log: Callable[[str], None] = stderr_log):
        config.validate()
        self.config, self.log = config, log
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
        self.pairs: queue.Queue = queue.Queue(maxsize=config.queue_size)
        self.results: queue.Queue = queue.Queue(maxsize=config.queue_size)
        self.streams: list[_Stream] = []
        self.error: str | None = None

    # construction -----------------------------------------------------------------------------------------
    def _open_backend(self) -> Backend:
        c = self.config
        size = {"imgsz": c.imgsz} if c.imgsz else {}  # else the backend's default
        return open_backend(c.model, c.backend, providers=c.providers, device=c.device, cuda_graph=c.cuda_graph,
                            contexts=c.contexts, gpu_preprocess=c.gpu_preprocess, **size)

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
        for rgb, ir in self.sources:
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
                self.log(f"MJPEG preview on http://127.0.0.1:{sinks[-1].port}/")
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
                    item = self.results.get(timeout=0.1)
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
                    self.log(self.stats.line())
                    last_line = time.monotonic()
        finally:
            self.stop_event.set()
            restore()
            if not finished:  # left early (a sink failed): let the workers finish and release the backend
                finished = self._drain()
            for sink in self.sinks:
                sink.close()
            if finished:  # never free buffers a still-running worker may use
                self._release_backend()
            self._collect_counters()
            if self.config.stats_json:
                self.stats.write_json(self.config.stats_json)
        failed = [c.error for s in self.streams for c in s.captures if c.error]
        if self.error or failed:
            raise RgbirError(self.error or f"capture failed: {failed[0]}")
        return self.stats

    def _drain(self, seconds: float = 10.0) -> bool:
        """Consume results until the workers' end marker (bounded in time), so no worker stays blocked; True
        when the workers ended."""
        deadline = time.monotonic() + seconds
        item = None
        while item is not DONE and self.streams and time.monotonic() < deadline:
            try:
                item = self.results.get(timeout=0.1)
            except queue.Empty:
                item = None
        return item is DONE or not self.streams

    def _interrupted(self, signum: int, frame=None) -> None:
        """SIGINT/SIGTERM: a flag, not an exception, so no record is ever half-written."""
        if self.interrupted is None:
            self.interrupted = signum
            self.log(f"stopping ({signal.Signals(signum).name}): finishing the pairs in flight")
        self.stop_event.set()

    def _install_signals(self):
        if threading.current_thread() is not threading.main_thread():
            return lambda: None  # embedded use: the caller stops the pipeline with stop()
        previous = {sig: signal.signal(sig, self._interrupted) for sig in (signal.SIGINT, signal.SIGTERM)}
        return lambda: [signal.signal(sig, handler) for sig, handler in previous.items()]

    def _write(self, result: PairResult) -> None:
        fps = self.stats.fps
        start = time.perf_counter()
        for sink in self.sinks:
            sink.write(result, fps)
        result.timings_ms["sink"] = (time.perf_counter() - start) * 1e3
        self.stats.add(result)

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
        except BaseException:
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
                sinks = (LatestSlot(changed), LatestSlot(changed) if ir else None)
            else:
                sinks = (queue.Queue(self.config.queue_size), queue.Queue(self.config.queue_size) if ir else None)
            captures = [CaptureThread(rgb, sinks[0], self.stop_event, self.log, period=rgb_period)]
            if ir is not None:
                captures.append(CaptureThread(ir, sinks[1], self.stop_event, self.log, convert=thermal,
                                              period=ir_period))
            stream = _Stream(i, rgb, ir, captures)
            if self.live and ir is not None:
                stream.live_pairer = LivePairer(i, sinks[0], sinks[1], changed, self.config.pairing, self.log)
                pairs = stream.live_pairer.pairs(self.stop_event)
            elif self.live:
                pairs = self._single_live(i, sinks[0])
            else:
                pairs = pair_lockstep(i, sinks[0], sinks[1], self.stop_event, self.log)
            stream.pairer = threading.Thread(target=self._feed, args=(pairs,), name=f"pair {i}", daemon=True)
            self.streams.append(stream)
        for stream in self.streams:
            for capture in stream.captures:
                capture.start()
            stream.pairer.start()
        self._start_stages()

    def _warn(self, warning: str | None) -> None:
        """Log what the user should know about the sources (once, as the run starts)."""
        if warning:
            self.log(f"warning: {warning}")

    def _single_live(self, stream: int, slot: LatestSlot):
        while not self.stop_event.is_set() and not slot.closed:
            with slot.changed:
                slot.changed.wait_for(lambda: slot.fresh or slot.closed, 0.05)
                frame = slot.take()
            if frame is not None:
                yield FramePair(stream, frame, None)

    def _feed(self, pairs) -> None:
        """Pairer thread: move pairs into the shared queue (live: drop the oldest when full)."""
        try:
            for pair in pairs:
                while True:
                    try:
                        self.pairs.put(pair, timeout=0.1)
                        break
                    except queue.Full:
                        if self.live:
                            try:
                                dropped = self.pairs.get_nowait()
                            except queue.Empty:
                                continue
                            if dropped is DONE:  # another stream's end marker: never drop it
                                self.pairs.put(dropped)
                            else:
                                self._count("pairs dropped (slow inference)")
                        elif self.stop_event.is_set():
                            return
        finally:
            self.pairs.put(DONE)

    def _batch_loop(self, out: queue.Queue) -> None:
        """Collect up to ``batch`` pairs (several streams share a call), number them, preprocess."""
        finished, taken = 0, [0] * len(self.streams)
        while finished < len(self.streams):
            batch = []
            item = self.pairs.get()
            while True:
                if item is DONE:
                    finished += 1
                else:
                    batch.append(item)
                if len(batch) >= self.config.batch or finished == len(self.streams):
                    break
                try:
                    item = self.pairs.get(timeout=0.002)
                except queue.Empty:
                    break
            batch = self._take(batch, taken) if batch and not self.error else []
            if batch:
                try:
                    for prepared in self.detector.prepare(batch):
                        out.put(prepared)
                except Exception as e:  # keep consuming until every pairer is done, so none blocks
                    self.error = f"preprocess failed: {type(e).__name__}: {e}"
                    self.stop_event.set()

    def _take(self, batch: list[FramePair], taken: list[int]) -> list[FramePair]:
        """Number the pairs per stream as processing takes them. With ``max_frames``, a stream's later pairs are
        left out, and capture stops once every stream has its count."""
        limit, kept = self.config.max_frames, []
        for pair in batch:
            if limit and taken[pair.stream] >= limit:
                continue
            pair.index = taken[pair.stream]
            taken[pair.stream] += 1
            kept.append(pair)
        if limit and min(taken) >= limit:
            self.stop()
        return kept

    def _stage(self, name: str, work: Callable, inbox: queue.Queue, outbox: queue.Queue) -> None:
        """Run ``work`` on each item until DONE; a failure stops the run with its message and still
        forwards DONE, so no stage waits forever."""
        failed = False
        try:
            while True:
                item = inbox.get()
                if item is DONE:
                    return
                if failed:
                    continue
                try:
                    for result in work(item):
                        outbox.put(result)
                except Exception as e:  # the backend or a step failed: report it, drain, end the run
                    self.error = self.error or f"{name} failed: {type(e).__name__}: {e}"
                    self.stop_event.set()
                    failed = True
        finally:
            outbox.put(DONE)

    def _start_stages(self) -> None:
        """prepare → infer → finish, each on its own thread, so inference runs back to back."""
        prepared, inferred = queue.Queue(maxsize=2), queue.Queue(maxsize=2)

        def batches():
            try:
                self._batch_loop(prepared)
            except Exception as e:  # the pairers keep their DONE markers coming; record why the run ended
                self.error = self.error or f"batching failed: {type(e).__name__}: {e}"
                self.stop_event.set()
            finally:
                prepared.put(DONE)

        def infer(batch):
            yield batch, self.detector.infer(batch)

        def finish(item):
            for result in self.detector.finish(*item):
                result.latency_ms = (time.monotonic() - result.pair.t_capture) * 1e3
                yield result

        for target, args in ((batches, ()), (self._stage, ("inference", infer, prepared, inferred)),
                             (self._stage, ("postprocess", finish, inferred, self.results))):
            threading.Thread(target=target, args=args, daemon=True, name=args[0] if args else "prepare").start()

    def _count(self, key: str, n: int = 1) -> None:
        with self.stats.lock:
            self.stats.counters[key] = self.stats.counters.get(key, 0) + n

    def _collect_counters(self) -> None:
        with self.stats.lock:
            self._update_counters(self.stats.counters)

    def _update_counters(self, counters: dict) -> None:
        for stream in self.streams:
            for capture in stream.captures:
                name = capture.source.name
                counters[f"{name}: corrupt frames"] = capture.corrupt
                counters[f"{name}: reconnects"] = capture.reconnects
                if isinstance(capture.sink, LatestSlot):
                    counters[f"{name}: frames dropped (stale)"] = capture.sink.dropped
            if stream.live_pairer is not None:
                counters[f"stream {stream.index}: frames dropped (skew)"] = stream.live_pairer.skew_rejects
                counters[f"stream {stream.index}: frames dropped (stall)"] = stream.live_pairer.stall_drops
        for key in [k for k, v in counters.items() if v == 0]:
            del counters[key]
