"""A Lava run that stops making progress is stopped, reported and retried, never waited on
forever (snncompile/backends/lava/session.py). The stall is real: a Lava process whose
model sleeps in its spike phase the first time it runs (tests/lava_procs/sleeper.py)."""
from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

import pytest

from snncompile.backends.lava.session import (STALL_FACTOR, LavaSession, LavaStallError,
                                              lava_session, require_lava, retry_stalled)

pytestmark = pytest.mark.lava


def _run_sleeper(flag: Path, steps: int, floor_s: float) -> int:
    require_lava()
    from lava_procs.sleeper import Sleeper, SleeperModel
    with lava_session(floor_s=floor_s) as session:
        proc = Sleeper(str(flag))
        session.start(proc, {Sleeper: SleeperModel})
        session.run(steps)
        return int(proc.steps.get()[0])


def test_a_stalled_run_is_stopped_and_retried_once(tmp_path, capsys):
    flag = tmp_path / "slept"
    before = set(mp.active_children())
    t0 = time.perf_counter()
    steps = retry_stalled(lambda: _run_sleeper(flag, 3, floor_s=2.0), "sleeper")
    took = time.perf_counter() - t0
    assert flag.exists()                   # the first attempt did stall
    assert steps == 3                      # the second ran every step
    assert took < 120, took                # not the first attempt's 600 s sleep
    err = capsys.readouterr().err
    assert "sleeper: Lava did not finish steps 1..3 in" in err and "counts as stalled" in err
    assert "starting it again (attempt 2 of 2)" in err
    # the stalled attempt's workers were terminated, not left sleeping
    assert not [p for p in set(mp.active_children()) - before if p.is_alive()]


def test_a_run_that_keeps_stalling_fails_in_one_line_after_the_last_attempt(capsys):
    calls = []

    def job():
        calls.append(1)
        raise LavaStallError("Lava did not finish steps 1..4 in 9 s")

    with pytest.raises(LavaStallError) as info:
        retry_stalled(job, "lava run", attempts=3)
    assert len(calls) == 3
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("lava run: Lava did not finish steps 1..4")
    assert msg.endswith("(3 attempts)")
    assert capsys.readouterr().err.count("starting it again") == 2


def test_the_stall_limit_grows_with_the_expected_and_the_measured_step_time():
    s = LavaSession(step_s=0.5, floor_s=10)
    assert s.stall_limit(4) == 10 + STALL_FACTOR * 4 * 0.5
    assert LavaSession().stall_limit(1000) >= 100   # a floor, whatever the estimate
