"""Seeds of the tests that draw fresh random inputs (the GPU kernel tests and their CPU stand-in): fixed, so every
run, CI's included, sees the same inputs; ``RGBIR_TEST_SEED=N`` runs them on other inputs to explore, and every
failure message names the seed it ran with."""

from __future__ import annotations

import os

VARIABLE = "RGBIR_TEST_SEED"


def input_seed(default: int = 0) -> int:
    """``RGBIR_TEST_SEED`` when it is set, else ``default``; printed, so a failing test's captured output shows it."""
    seed = int(os.environ.get(VARIABLE) or default)
    print(f"random inputs from seed {seed} ({VARIABLE}={seed} repeats them)")
    return seed


def report_line() -> str:
    """What the test session's header says about the seeds."""
    given = os.environ.get(VARIABLE)
    return f"{VARIABLE}={given}: random inputs from that seed" if given else \
        f"random inputs from fixed seeds ({VARIABLE}=N explores others)"
