"""Live pairing on a stand-in clock: tolerance, skew rejects, stalls and the wait/reuse policies are decided by
the clock the test moves, not by how fast a loaded machine runs threads."""

import threading

import numpy as np
import pytest

from fakes import captured_log
from rgbir.runtime.capture import LatestSlot
from rgbir.runtime.frames import Frame
from rgbir.runtime.pairing import LivePairer, PairingConfig


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, ms: float) -> None:
        self.now += ms / 1e3


class Rig:
    """Two camera slots and their pairer on one fake clock; ``send`` delivers a frame captured now."""

    def __init__(self, **pairing):
        self.clock = FakeClock()
        changed = threading.Condition()
        self.slots = {"rgb": LatestSlot(changed, self.clock), "ir": LatestSlot(changed, self.clock)}
        self.pairer = LivePairer(0, self.slots["rgb"], self.slots["ir"], PairingConfig(**pairing))
        self.seq = {"rgb": 0, "ir": 0}

    def send(self, name: str):
        frame = Frame(np.zeros((4, 4), np.uint8), self.seq[name], self.clock(), 0.0, name)
        self.seq[name] += 1
        self.slots[name].put(frame)
        return self.pairer.poll()


def test_frames_within_tolerance_pair_and_a_stale_one_is_dropped():
    rig = Rig(tolerance_ms=40)
    assert rig.send("rgb") is None  # its partner is on the way
    rig.clock.advance(10)
    pair = rig.send("ir")
    assert pair is not None and (pair.rgb.seq, pair.ir.seq) == (0, 0) and abs(pair.skew_ms) == pytest.approx(10)
    rig.send("rgb")
    rig.clock.advance(60)  # the IR frame comes too late for that RGB frame
    assert rig.send("ir") is None and rig.pairer.skew_rejects == 1
    rig.clock.advance(20)
    pair = rig.send("rgb")
    assert (pair.rgb.seq, pair.ir.seq) == (2, 1)


@pytest.mark.parametrize("policy", ["wait", "reuse"])
def test_a_silent_camera_is_reported_stalled_then_back_and_handled_by_policy(policy):
    rig = Rig(stall_ms=200, stall_policy=policy, reuse_ms=1000)
    with captured_log() as logs:
        rig.send("rgb")
        assert rig.send("ir") is not None
        for _ in range(10):  # the IR camera goes silent: 10 RGB frames, 50 ms apart
            rig.clock.advance(50)
            pair = rig.send("rgb")
            if policy == "wait":
                assert pair is None
            elif pair is not None:
                assert pair.reused == "ir" and pair.ir.seq == 0  # its last good frame stands in
        assert any("IR camera has stalled" in line for line in logs)
        assert (rig.pairer.stall_drops > 0) == (policy == "wait")
        rig.clock.advance(10)
        rig.send("ir")  # back
        rig.clock.advance(5)
        assert rig.send("rgb") is not None and any("is back" in line for line in logs)


def test_a_stand_in_frame_expires_after_reuse_ms():
    rig = Rig(stall_ms=100, stall_policy="reuse", reuse_ms=300)
    rig.send("rgb")
    rig.send("ir")
    outcomes = []
    for _ in range(6):
        rig.clock.advance(150)
        outcomes.append(rig.send("rgb") is not None)
    assert outcomes[0] is True and outcomes[2:] == [False] * 4  # reused while 150 ms old, dropped from 450 ms
    assert rig.pairer.stall_drops > 0


def test_a_live_pair_takes_its_clock_from_its_slots_and_refuses_two():
    changed = threading.Condition()
    with pytest.raises(ValueError, match="share one condition variable and one clock"):
        LivePairer(0, LatestSlot(changed, FakeClock()), LatestSlot(changed, FakeClock()), PairingConfig())
    with pytest.raises(ValueError, match="share one condition variable and one clock"):
        LivePairer(0, LatestSlot(changed), LatestSlot(threading.Condition()), PairingConfig())
