"""Smart decisions: a card's CEL rules, evaluated in order, in killable child processes.

:meth:`RuleEvaluator.first_match` answers which rule matched (the first whose expression is
``true``), or that none did, or why evaluation failed. Failure is an answer, never an
exception: the caller routes such a request to the agency (it never approves by accident).

Bounds, because rules come from agencies: an expression longer than
:data:`MAX_EXPRESSION_CHARS` is refused without evaluation, and a decision that takes longer
than ``timeout`` seconds is abandoned: its worker process is killed and replaced, so a hostile
rule costs at most one time budget of one core and never stalls the service's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

logger = logging.getLogger(__name__)

MAX_EXPRESSION_CHARS = 4096
#: a worker's answer line may be long only when something is wrong
_MAX_ANSWER_BYTES = 64 * 1024
#: how long a new worker process may take to import and say it is ready
_STARTUP_SECONDS = 30.0


@dataclass(frozen=True)
class Rule:
    id: str
    when: str


@dataclass(frozen=True)
class Verdict:
    """``match`` is the index of the first matching rule; ``error`` says why none could be."""

    match: int | None
    error: str | None = None


class _Worker:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def spawn(cls) -> _Worker:
        """A worker that has finished importing and is ready to answer.

        Starting one takes most of a second (the CEL package imports a command-line shell):
        waiting for its ``ready`` line here keeps that out of every decision's time budget.
        """
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "panjereh.requests.rule_worker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=_MAX_ANSWER_BYTES,
        )
        worker = cls(process)
        try:
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), timeout=_STARTUP_SECONDS)
            if json.loads(line or b"{}").get("ready") is not True:
                msg = "the rule worker did not start"
                raise ConnectionError(msg)
        except BaseException:
            await worker.kill()
            raise
        return worker

    async def ask(self, message: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(json.dumps(message, ensure_ascii=False).encode() + b"\n")
        await self.process.stdin.drain()
        line = await self.process.stdout.readline()
        if not line:
            msg = "the rule worker exited"
            raise ConnectionError(msg)
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        with contextlib.suppress(Exception):
            await self.process.wait()


class RuleEvaluator:
    """A small pool of rule worker processes; ``start()`` in the setup, ``stop()`` at the end."""

    def __init__(self, *, workers: int = 2, timeout: float = 1.0) -> None:
        self._size = workers
        self._timeout = timeout
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self._all: set[_Worker] = set()
        self._replacing: set[asyncio.Task[None]] = set()
        #: decisions abandoned for taking too long (their worker was replaced)
        self.timeouts = 0

    async def start(self) -> None:
        workers = await asyncio.gather(*(_Worker.spawn() for _ in range(self._size)))
        for worker in workers:
            self._all.add(worker)
            self._idle.put_nowait(worker)

    async def stop(self) -> None:
        tasks, self._replacing = self._replacing, set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        workers, self._all = self._all, set()
        for worker in workers:
            await worker.kill()

    def _replace(self) -> None:
        """Start a new worker in the background; the next decision waits for it, unbilled."""
        task = asyncio.create_task(self._add(), name="rule-worker-replacement")
        self._replacing.add(task)
        task.add_done_callback(self._replacing.discard)

    async def _add(self) -> None:
        delay = 0.1
        while True:
            try:
                worker = await _Worker.spawn()
            except (OSError, ConnectionError, ValueError, TimeoutError) as exc:
                # the pool is one short until this succeeds; decisions queue meanwhile
                logger.warning("rule worker did not start", extra={"error": type(exc).__name__})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self._all.add(worker)
            self._idle.put_nowait(worker)
            return

    async def first_match(
        self, rules: Sequence[Rule], variables: dict[str, Any], *, now: datetime
    ) -> Verdict:
        too_long = next((r for r in rules if len(r.when) > MAX_EXPRESSION_CHARS), None)
        if too_long is not None:
            return Verdict(None, f"rule {too_long.id}: longer than {MAX_EXPRESSION_CHARS}")
        if not rules:
            return Verdict(None)
        message = {
            "rules": [{"id": r.id, "when": r.when} for r in rules],
            "variables": variables,
            "now": now.isoformat(),
        }
        # waiting for a free worker is not part of the budget: only evaluation is
        worker = await self._idle.get()
        try:
            answer = await asyncio.wait_for(worker.ask(message), timeout=self._timeout)
        except (TimeoutError, ConnectionError, ValueError, OSError) as exc:
            self.timeouts += isinstance(exc, TimeoutError)
            logger.warning(
                "rule evaluation abandoned; replacing its worker",
                extra={"error": type(exc).__name__, "rules": [r.id for r in rules]},
            )
            self._all.discard(worker)
            await worker.kill()
            self._replace()
            reason = "timed out" if isinstance(exc, TimeoutError) else "worker failed"
            return Verdict(None, f"evaluation {reason}")
        except BaseException:
            # cancelled mid-answer: the worker's next line would be this answer, not the
            # next caller's, so it cannot go back to the pool
            self._all.discard(worker)
            await worker.kill()
            self._replace()
            raise
        self._idle.put_nowait(worker)
        match = answer.get("match")
        error = answer.get("error")
        return Verdict(match if isinstance(match, int) else None, error if error else None)
