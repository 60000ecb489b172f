"""Idle pacing: ``PeriodicWorker`` waits longer while nothing happens and is tight again on a
local signal; a consumer's poll follows its fetch wait."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable

from panjereh.common.messaging.kafka import poll_timeout_ms
from panjereh.common.workers import PeriodicWorker


async def _until(condition: Callable[[], bool], within: float = 2.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def test_the_wait_doubles_while_idle_up_to_the_idle_interval() -> None:
    started: list[float] = []

    async def step() -> None:
        started.append(time.monotonic())

    worker = PeriodicWorker("idle", step, interval=0.02, idle_interval=0.08)
    await worker.start()
    await _until(lambda: len(started) >= 6)
    await worker.stop()
    gaps = [b - a for a, b in itertools.pairwise(started)]
    # 0.02, 0.04, 0.08, then capped at 0.08
    assert gaps[0] < 0.06
    assert all(gap >= 0.07 for gap in gaps[2:5]), gaps
    assert worker.current_interval == 0.08


async def test_without_an_idle_interval_the_wait_stays_fixed() -> None:
    runs = 0

    async def step() -> None:
        nonlocal runs
        runs += 1

    worker = PeriodicWorker("fixed", step, interval=0.01)
    await worker.start()
    await _until(lambda: runs >= 5)
    await worker.stop()
    assert worker.current_interval == 0.01


async def test_tighten_cuts_a_long_idle_wait_short_without_running_at_once() -> None:
    runs = 0

    async def step() -> None:
        nonlocal runs
        runs += 1

    worker = PeriodicWorker("sweeper", step, interval=0.2, idle_interval=30)
    await worker.start()
    await _until(lambda: runs == 1)
    worker.current_interval = 30.0  # as after a long quiet spell
    await _until(lambda: runs == 2, within=1.0)  # this pause was still 0.2 s ...
    began = time.monotonic()
    await asyncio.sleep(0.05)  # ... the next one is 30 s: the worker is in it now
    worker.tighten()
    await asyncio.sleep(0.05)
    assert runs == 2, "tighten does not run the step at once"
    await _until(lambda: runs == 3, within=1.0)
    assert time.monotonic() - began < 1.0
    assert worker.current_interval == 0.4  # tight again: the next wait doubles from interval
    await worker.stop()


async def test_wake_runs_at_once_and_resets_the_pace() -> None:
    runs = 0

    async def step() -> None:
        nonlocal runs
        runs += 1

    worker = PeriodicWorker("dispatcher", step, interval=0.05, idle_interval=30)
    await worker.start()
    await _until(lambda: runs == 1)
    worker.current_interval = 30.0
    await _until(lambda: runs == 2, within=1.0)
    worker.wake()
    await _until(lambda: runs == 3, within=0.5)
    assert worker.current_interval == 0.1
    await worker.stop()


def test_a_consumer_polls_longer_only_while_its_fetches_wait_longer() -> None:
    assert poll_timeout_ms(10) == 200  # under traffic: as before
    assert poll_timeout_ms(160) == 320
    assert poll_timeout_ms(500) == 1000  # idle: five times fewer turns of the loop
    assert poll_timeout_ms(5000) == 1000
