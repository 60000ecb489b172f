"""Background work of a service process: a step run periodically, until stopped.

One shape for every loop a service runs (sweepers, dispatchers, housekeeping): the step runs,
then the worker waits ``interval`` seconds or until :meth:`PeriodicWorker.wake`. A step that
returns ``True`` says "more may be waiting" and runs again at once. A failing step is logged in
one line and retried after a backoff that doubles up to ``max_backoff``; the first success
resets it. :meth:`PeriodicWorker.stop` lets a step in progress finish within ``grace``
seconds, then cancels it.
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
    ) -> None:
        if interval <= 0:
            msg = "interval must be positive"
            raise ValueError(msg)
        self.name = name
        self._step = step
        self._interval = interval
        self._max_backoff = max(max_backoff, interval)
        self._initial_delay = initial_delay
        self._wakeup = asyncio.Event()
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
            if not more:
                await self._pause(self._interval)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout=seconds)
        self._wakeup.clear()
