"""The orchestration worker: claim → call outside any transaction → record, per request.

Each pass claims as many due requests as there are free slots (``step_concurrency``, at most
``step_batch_size`` at once) in one short transaction, then works each claimed request in a
task of its own, so one slow agency never holds up the requests behind it. A task asks the
broker (every pending inquiry of the request in parallel) or evaluates the rules, with no
transaction open, then records the outcome in its own short transaction
(:mod:`panjereh.requests.service.orchestration`). When a step leaves its request due at once
(``submitted`` → ``deciding`` → decided), the worker is woken to take the next step; when it
leaves it due later (an inquiry asked again after a delay, a failed step's lease), the worker
is woken at that time.

Idle pacing: after each look that finds nothing due the worker's wait doubles, from
``step_poll_seconds`` up to ``step_idle_poll_seconds``. Every source of work this replica
knows of wakes it (a request committed here, an answered inquiry, its own steps' due times),
so the long wait delays only work other replicas leave.

Nothing is kept in memory that the database does not also hold: a crash loses at most a
lease (``step_lease_seconds``), after which any replica claims the request again, and the
broker's idempotency keys make the repeated asks replays of the first.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from datetime import UTC, datetime

from panjereh.common.db import Database
from panjereh.common.workers import PeriodicWorker
from panjereh.requests.broker_client import BrokerClient, BrokerReply, InquiryAsk
from panjereh.requests.config import Settings
from panjereh.requests.keys import KeyRing
from panjereh.requests.rules import RuleEvaluator
from panjereh.requests.service import orchestration, rulings
from panjereh.requests.service.orchestration import Claim, PendingInquiry, RetryPolicy
from panjereh.requests.statuses import Status

logger = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


class Orchestrator:
    """Moves requests through the machine; ``wake()`` after a commit that made work due."""

    def __init__(
        self,
        *,
        database: Database,
        broker: BrokerClient,
        evaluator: RuleEvaluator,
        keys: KeyRing,
        settings: Settings,
    ) -> None:
        self._database = database
        self._broker = broker
        self._evaluator = evaluator
        self._keys = keys
        self._batch = settings.step_batch_size
        self._concurrency = settings.step_concurrency
        self._lease = settings.step_lease_seconds
        self._valid_days = settings.document_valid_days
        self._retry = RetryPolicy(
            max_attempts=settings.inquiry_max_attempts, base_seconds=settings.inquiry_retry_seconds
        )
        self._in_flight: dict[uuid.UUID, asyncio.Task[datetime | None]] = {}
        self._worker = PeriodicWorker(
            "orchestration",
            self.step,
            interval=settings.step_poll_seconds,
            idle_interval=settings.step_idle_poll_seconds,
        )
        self._timers: set[asyncio.TimerHandle] = set()
        #: steps that failed before recording (retried after their lease), for tests/metrics
        self.failed_steps = 0

    async def start(self) -> None:
        await self._worker.start()

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming; let steps in flight finish within ``grace`` s, then cancel them.

        A cancelled step records nothing: its lease runs out and a replica takes it again.
        """
        await self._worker.stop(grace)
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        tasks = list(self._in_flight.values())
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    def wake(self) -> None:
        self._worker.wake()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def step(self) -> bool:
        """Claim due requests into free slots; whether more may be due already."""
        free = self._concurrency - len(self._in_flight)
        if free <= 0:
            return False  # a finishing step wakes the worker
        limit = min(self._batch, free)
        async with self._database.transaction() as session:
            claims = await orchestration.claim_due(
                session,
                now=_now(),
                limit=limit,
                lease_seconds=self._lease,
                exclude=list(self._in_flight),
            )
        for claim in claims:
            task = asyncio.create_task(self._work(claim), name=f"step-{claim.tracking_code}")
            self._in_flight[claim.request_id] = task
            task.add_done_callback(functools.partial(self._finished, claim.request_id))
        return len(claims) == limit and limit < free

    def _finished(self, request_id: uuid.UUID, task: asyncio.Task[datetime | None]) -> None:
        saturated = len(self._in_flight) >= self._concurrency
        self._in_flight.pop(request_id, None)
        due = None if task.cancelled() or task.exception() is not None else task.result()
        if saturated or (due is not None and due <= _now()):
            self.wake()
        elif due is not None:
            self._wake_at(due)

    def _wake_at(self, due: datetime) -> None:
        """Wake the worker when a step this replica recorded falls due."""
        if not self._worker.running:
            return

        def fire() -> None:
            self._timers.discard(timer)
            self.wake()

        delay = (due - _now()).total_seconds()
        timer = asyncio.get_running_loop().call_later(max(delay, 0.0), fire)
        self._timers.add(timer)

    async def _work(self, claim: Claim) -> datetime | None:
        """One step of one request; when its next step is due (``None``: none to take)."""
        try:
            if claim.status is Status.SUBMITTED:
                now = _now()
                async with self._database.transaction() as session:
                    due_now = await orchestration.advance_submitted(
                        session, request_id=claim.request_id, now=now
                    )
                return now if due_now else None
            if claim.status is Status.AWAITING_INQUIRIES:
                replies = await self._ask_all(claim)
                async with self._database.transaction() as session:
                    return await orchestration.record_inquiries(
                        session,
                        request_id=claim.request_id,
                        replies=replies,
                        now=_now(),
                        retry=self._retry,
                        leased_until=claim.leased_until,
                    )
            if claim.status is Status.DECIDING:
                at = _now()
                ruling = await self._rule(claim, at=at)
                async with self._database.transaction() as session:
                    await orchestration.record_ruling(
                        session,
                        request_id=claim.request_id,
                        ruling=ruling,
                        at=at,
                        keys=await self._keys.get(),
                        document_valid_days=self._valid_days,
                    )
        except Exception as exc:
            # recorded nothing: the lease runs out and the step is taken again
            self.failed_steps += 1
            logger.warning(
                "orchestration step failed; retried when its lease ends",
                extra={
                    "tracking_code": claim.tracking_code,
                    "status": claim.status.value,
                    "error": type(exc).__name__,
                },
            )
            return claim.leased_until
        return None

    async def _ask_all(self, claim: Claim) -> dict[str, BrokerReply]:
        replies = await asyncio.gather(*(self._ask(claim, pending) for pending in claim.pending))
        return {pending.type: reply for pending, reply in zip(claim.pending, replies, strict=True)}

    async def _ask(self, claim: Claim, pending: PendingInquiry) -> BrokerReply:
        if pending.broker_inquiry_id is not None:
            return await self._broker.read(pending.broker_inquiry_id, inquiry_type=pending.type)
        return await self._broker.ask(
            InquiryAsk(
                type=pending.type,
                subject=claim.subject,
                service_code=claim.service_code,
                tracking_code=claim.tracking_code,
                legal_basis=claim.legal_basis,
            )
        )

    async def _rule(self, claim: Claim, *, at: datetime) -> rulings.Ruling:
        if claim.evaluation is None:
            ruling = rulings.not_evaluated("card version not in the replica")
        else:
            verdict = await self._evaluator.first_match(
                claim.evaluation.rules, claim.evaluation.variables, now=at
            )
            ruling = rulings.ruling_of(claim.evaluation.decision, verdict)
        if ruling.error is not None:
            logger.warning(
                "decision rules not evaluated; the request goes to its agency",
                extra={
                    "tracking_code": claim.tracking_code,
                    "service_code": claim.service_code,
                    "error": ruling.error,
                },
            )
        return ruling
