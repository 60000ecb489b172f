"""Background work of a service process: a step run periodically, until stopped.

One shape for every loop a service runs (sweepers, dispatchers, housekeeping): the step runs,
then the worker waits ``interval`` seconds or until :meth:`PeriodicWorker.wake`. A step that
returns ``True`` says "more may be waiting" and runs again at once. A failing step is logged in
one line and retried after a backoff that doubles up to ``max_backoff``; the first success
resets it. :meth:`PeriodicWorker.stop` lets a step in progress finish within ``grace``
seconds, then cancels it.

Idle pacing (``idle_interval``): a loop that polls for work other processes may leave (a
sweeper, a dispatcher) need not poll every ``interval`` when nothing happens. After each run
that leaves nothing waiting the wait doubles, up to ``idle_interval``; :meth:`wake` and
:meth:`tighten` (work is due soon: the process just created some) bring it back to
``interval`` at once, cutting a longer wait in progress short.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable

from panjereh.common.metrics import WORKER_FAILURES, WORKER_RUNS

logger = logging.getLogger(__name__)

Step = Callable[[], Awaitable[bool | None]]


class PeriodicWorker:
    """Runs ``step`` every ``interval`` seconds in a task of its own."""

    def __init__(
        self,
        name: str,
        step: Step,
        *,
        interval: float,
        max_backoff: float = 60.0,
        initial_delay: float = 0.0,
        idle_interval: float | None = None,
    ) -> None:
        if interval <= 0:
            msg = "interval must be positive"
            raise ValueError(msg)
        self.name = name
        self._step = step
        self._interval = interval
        self._idle_interval = max(idle_interval or interval, interval)
        #: the wait after the next run that leaves nothing waiting
        self.current_interval = interval
        self._max_backoff = max(max_backoff, interval)
        self._initial_delay = initial_delay
        self._wakeup = asyncio.Event()
        self._woken = False
        self._tightened = False
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: steps completed and steps failed, for tests and metrics
        self.runs = 0
        self.failures = 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self, grace: float = 5.0) -> None:
        self._stopping.set()
        self._wakeup.set()
        task, self._task = self._task, None
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=grace)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def wake(self) -> None:
        """Run the step now rather than at the end of the current wait."""
        self.current_interval = self._interval
        self._woken = True
        self._wakeup.set()

    def tighten(self) -> None:
        """Work is due soon: poll every ``interval`` again, the current idle wait included
        (it ends at most ``interval`` from now), without running the step at once."""
        if self.current_interval == self._interval and not self._tightened:
            return
        self.current_interval = self._interval
        self._tightened = True
        self._wakeup.set()

    async def run_once(self) -> bool:
        """One step, in the caller's task (tests, command-line tools)."""
        return bool(await self._step())

    async def _run(self) -> None:
        if self._initial_delay > 0:
            await self._pause(self._initial_delay)
        consecutive_failures = 0
        while not self._stopping.is_set():
            try:
                more = await self._step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                consecutive_failures += 1
                self.failures += 1
                WORKER_FAILURES.labels(self.name).inc()
                delay = min(self._interval * 2 ** (consecutive_failures - 1), self._max_backoff)
                delay *= 0.5 + random.random() / 2  # noqa: S311 - jitter, not security
                logger.warning(
                    "background step failed",
                    extra={
                        "worker": self.name,
                        "error": repr(exc),
                        "failures": consecutive_failures,
                        "retry_in_seconds": round(delay, 2),
                    },
                )
                await self._pause(delay)
                continue
            consecutive_failures = 0
            self.runs += 1
            WORKER_RUNS.labels(self.name).inc()
            if more:
                self.current_interval = self._interval
            else:
                wait = self.current_interval
                self.current_interval = min(wait * 2, self._idle_interval)
                await self._pause(wait)

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds``, or less: until :meth:`wake` or :meth:`stop`, or at most
        ``interval`` after :meth:`tighten`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        self._tightened = False
        while not self._stopping.is_set():
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=remaining)
            except TimeoutError:
                break
            self._wakeup.clear()
            if self._woken:
                break
            if self._tightened:
                self._tightened = False
                deadline = min(deadline, loop.time() + self._interval)
        self._woken = False
        self._wakeup.clear()
