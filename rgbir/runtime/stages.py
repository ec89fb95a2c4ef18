"""The processing stages after pairing, each on its own thread, joined by bounded queues:

    pairers ─▶ pairs ─▶ batch + prepare ─▶ infer ─▶ finish (decode/NMS) ─▶ results

A pairer per camera pair feeds the shared pair queue (live: the oldest pair is dropped when it is full); the
batcher takes up to ``batch`` pairs across camera pairs, numbers them per stream and preprocesses them; inference
runs back to back on its own thread. Every stage forwards the DONE marker even after a failure, so none waits
forever; the first failure is kept in ``error`` and stops the run.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable

from ..errors import RgbirError
from .frames import FramePair
from .inference import PairDetector

DONE = object()  # end marker between the stages


def why(error: Exception) -> str:
    """A failure as the run reports it: rgbir's own errors as written, others with their type."""
    return str(error) if isinstance(error, RgbirError) else f"{type(error).__name__}: {error}"


class Stages:
    """Pairs in (``add_stream``), ``PairResult``s out (``results``, ending with DONE)."""

    def __init__(self, detector: PairDetector, batch: int, queue_size: int, live: bool, max_frames: int | None,
                 stop: threading.Event, count: Callable[[str], None]):
        self.detector, self.batch, self.live, self.max_frames = detector, batch, live, max_frames
        self.stop, self.count = stop, count
        self.pairs: queue.Queue = queue.Queue(maxsize=queue_size)
        self.results: queue.Queue = queue.Queue(maxsize=queue_size)
        self.streams = 0
        self.error: str | None = None

    def fail(self, message: str) -> None:
        """Keep the first failure and stop the run (pairs in flight still drain)."""
        self.error = self.error or message
        self.stop.set()

    def add_stream(self, pairs: Iterable[FramePair]) -> threading.Thread:
        """The (not yet started) pairer thread of one camera pair."""
        self.streams += 1
        return threading.Thread(target=self._feed, args=(pairs,), name=f"pair {self.streams - 1}", daemon=True)

    def start(self) -> None:
        """batch + prepare → infer → finish, each on its own thread."""
        prepared, inferred = queue.Queue(maxsize=2), queue.Queue(maxsize=2)

        def infer(batch):
            yield batch, self.detector.infer(batch)

        def finish(item):
            for result in self.detector.finish(*item):
                result.latency_ms = (time.monotonic() - result.pair.t_capture) * 1e3
                yield result

        for name, target, args in (("prepare", self._batches, (prepared,)),
                                   ("inference", self._stage, ("inference", infer, prepared, inferred)),
                                   ("postprocess", self._stage, ("postprocess", finish, inferred, self.results))):
            threading.Thread(target=target, args=args, daemon=True, name=name).start()

    def _feed(self, pairs: Iterable[FramePair]) -> None:
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
                                self.count("pairs dropped (slow inference)")
                        elif self.stop.is_set():
                            return
        finally:
            self.pairs.put(DONE)

    def _batches(self, out: queue.Queue) -> None:
        try:
            self._batch_loop(out)
        except Exception as e:  # the pairers keep their DONE markers coming; record why the run ended
            self.fail(f"batching failed: {why(e)}")
        finally:
            out.put(DONE)

    def _batch_loop(self, out: queue.Queue) -> None:
        """Collect up to ``batch`` pairs (several streams share a call), number them, preprocess."""
        finished, taken = 0, [0] * self.streams
        while finished < self.streams:
            batch = []
            item = self.pairs.get()
            while True:
                if item is DONE:
                    finished += 1
                else:
                    batch.append(item)
                if len(batch) >= self.batch or finished == self.streams:
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
                    self.fail(f"preprocess failed: {why(e)}")

    def _take(self, batch: list[FramePair], taken: list[int]) -> list[FramePair]:
        """Number the pairs per stream as processing takes them. With ``max_frames``, a stream's later pairs are
        left out, and capture stops once every stream has its count."""
        limit, kept = self.max_frames, []
        for pair in batch:
            if limit and taken[pair.stream] >= limit:
                continue
            pair.index = taken[pair.stream]
            taken[pair.stream] += 1
            kept.append(pair)
        if limit and min(taken) >= limit:
            self.stop.set()
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
                    self.fail(f"{name} failed: {why(e)}")
                    failed = True
        finally:
            outbox.put(DONE)
