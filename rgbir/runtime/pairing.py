"""Pairing RGB and IR frames.

- ``pair_lockstep`` (files, folders): the i-th RGB frame with the i-th IR frame, nothing dropped (two folders
  are first matched by file name, ``sources.match_by_stem``, so their i-th images share a name).
- ``LivePairer`` (cameras): the newest RGB and IR frames within ``tolerance_ms``; a frame whose partner is too
  far away in time is dropped rather than queued. When one camera stalls the pipeline says so and, by policy,
  either waits or pairs with that camera's last good frame for at most ``reuse_ms``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from ..options import CommandLineOptions, option
from .capture import END, FrameQueue, LatestSlot
from .frames import Frame, FramePair

log = logging.getLogger(__name__)


@dataclass
class PairingConfig(CommandLineOptions):
    tolerance_ms: float = option(40.0, parse=float, help="live pairing: largest RGB/IR capture-time gap")
    stall_ms: float = option(500.0, parse=float, help="a camera silent this long is reported stalled")
    stall_policy: str = option("wait", choices=("wait", "reuse"), help="when one camera stalls: wait, or pair "
                                                                       "with its last frame for --reuse-ms")
    reuse_ms: float = option(2000.0, parse=float, help="longest a stalled camera's last frame may stand in")

    def validate(self) -> None:
        if self.stall_policy not in ("wait", "reuse"):
            raise ValueError(f"stall policy must be 'wait' or 'reuse', got '{self.stall_policy}'")
        if self.tolerance_ms <= 0 or self.stall_ms <= 0:
            raise ValueError("pairing tolerance and stall time must be positive")


def pair_lockstep(stream: int, rgb: FrameQueue, ir: FrameQueue | None, stop: threading.Event) -> Iterator[FramePair]:
    """Yield pairs until either side ends (saying how many frames the other side had left)."""
    while True:
        a = rgb.get()
        b = ir.get() if ir is not None else None
        if a is END or (ir is not None and b is END):
            if ir is not None and (a is END) != (b is END) and not stop.is_set():
                longer = "IR" if a is END else "RGB"
                log.warning(f"stream {stream}: the {longer} source has more frames than its partner; extra frames "
                            "ignored")
            return
        if b is not None and a.seq != b.seq:  # both sides number every frame: never pair across a gap
            log.error(f"stream {stream}: RGB frame {a.seq} and IR frame {b.seq} are out of step; stopping this stream")
            return
        yield FramePair(stream, a, b)


class LivePairer:
    """Pairs the newest frames of two ``LatestSlot``s, which share one condition variable and one clock (the
    slots' clock decides when a silent camera counts as stalled; taken from them, so it cannot differ)."""

    def __init__(self, stream: int, rgb: LatestSlot, ir: LatestSlot, config: PairingConfig):
        if rgb.changed is not ir.changed or rgb.clock is not ir.clock:
            raise ValueError("the RGB and IR slots of a live pair must share one condition variable and one clock")
        self.stream, self.rgb, self.ir, self.changed = stream, rgb, ir, rgb.changed
        self.config, self.clock = config, rgb.clock
        self.skew_rejects = 0
        self.stall_drops = 0
        self.stalls = {"rgb": 0, "ir": 0}  # times each camera was reported stalled
        self.stalled: set[str] = set()
        self.last: dict[str, Frame | None] = {"rgb": None, "ir": None}
        self.pending: dict[str, Frame | None] = {"rgb": None, "ir": None}

    def pairs(self, stop: threading.Event) -> Iterator[FramePair]:
        while not stop.is_set():
            with self.changed:
                if self.rgb.closed and self.ir.closed:
                    return
                self.changed.wait_for(lambda: self.rgb.fresh or self.ir.fresh or (self.rgb.closed and self.ir.closed),
                                      0.05)
            pair = self.poll()
            if pair is not None:
                yield pair

    def poll(self) -> FramePair | None:
        """Take the slots' fresh frames and return the pair they make now, if any (never waits)."""
        with self.changed:
            for name, slot in (("rgb", self.rgb), ("ir", self.ir)):
                frame = slot.take()
                if frame is not None:
                    self.pending[name] = frame
                    self.last[name] = frame
        return self._match()

    def _match(self) -> FramePair | None:
        rgb, ir = self.pending["rgb"], self.pending["ir"]
        now = self.clock()
        self._report_stalls(now)
        if rgb is not None and ir is not None:
            skew = abs(rgb.t_capture - ir.t_capture) * 1e3
            if skew <= self.config.tolerance_ms:
                self.pending = {"rgb": None, "ir": None}
                return self._emit(rgb, ir)
            older = "rgb" if rgb.t_capture < ir.t_capture else "ir"
            self.pending[older] = None  # stale: its partner moved on
            self.skew_rejects += 1
            return None
        waiting = "rgb" if rgb is not None else "ir" if ir is not None else None
        if waiting is None:
            return None
        other = "ir" if waiting == "rgb" else "rgb"
        if other not in self.stalled:
            return None  # the partner frame is probably on its way
        frame = self.pending[waiting]
        self.pending[waiting] = None
        stand_in = self.last[other]
        if (self.config.stall_policy == "reuse" and stand_in is not None
                and (now - stand_in.t_capture) * 1e3 <= self.config.reuse_ms):
            return self._emit(frame, stand_in, other) if waiting == "rgb" else self._emit(stand_in, frame, other)
        self.stall_drops += 1
        return None

    def _emit(self, rgb: Frame, ir: Frame, reused: str | None = None) -> FramePair:
        return FramePair(self.stream, rgb, ir, reused=reused)

    def _report_stalls(self, now: float) -> None:
        for name, slot in (("rgb", self.rgb), ("ir", self.ir)):
            silent = (now - slot.last_arrival) * 1e3 > self.config.stall_ms
            if silent and name not in self.stalled:
                self.stalled.add(name)
                self.stalls[name] += 1
                policy = ("pairing with its last frame for up to "
                          f"{self.config.reuse_ms:.0f} ms" if self.config.stall_policy == "reuse" else "waiting")
                log.warning(f"stream {self.stream}: the {name.upper()} camera has stalled; {policy}")
            elif not silent and name in self.stalled:
                self.stalled.discard(name)
                log.info(f"stream {self.stream}: the {name.upper()} camera is back")
