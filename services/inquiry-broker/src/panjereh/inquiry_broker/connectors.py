"""Delivery to agencies that expose an HTTP connector instead of consuming a Kafka topic.

The request's transaction only schedules the attempt (``next_attempt_at``); this dispatcher,
running on every replica, claims due attempts in a short transaction (``SKIP LOCKED``: each
attempt is made by one replica), calls the connectors *outside* any transaction, and records
each answer in its own transaction, exactly like a Kafka reply (signature, NOTIFY, event).
Its client is the kernel's :func:`~panjereh.common.http.outbound_client`, which refuses to
send while a transaction is open, so the claim → call → record shape cannot erode unnoticed.

The connector contract: ``POST <connector_url>`` with the ``InquiryToAgency`` payload as JSON;
``200 {"status": "ok" | "not_found" | "error", "result": {...}}``. Anything else (another
status code, a timeout, a malformed body) counts as an ``error`` answer, which is retried while
attempts and time remain.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from panjereh.common.db import Database
from panjereh.common.workers import PeriodicWorker
from panjereh.inquiry_broker.service import answers, delivery
from panjereh.inquiry_broker.service.delivery import ConnectorCall
from panjereh.inquiry_broker.signing import AnswerSigner

logger = logging.getLogger(__name__)

_STATUSES = frozenset({"ok", "not_found", "error"})


@dataclass(frozen=True)
class ConnectorAnswer:
    """What a connector said, as a reply status (``error`` for no usable answer)."""

    status: str
    result: dict[str, Any] | None = None


_NO_ANSWER = ConnectorAnswer(status="error")


class ConnectorDispatcher:
    """Makes due HTTP-connector attempts; ``wake()`` after a commit skips the next poll."""

    def __init__(
        self,
        *,
        database: Database,
        signer: AnswerSigner,
        client: httpx.AsyncClient,
        poll_interval: float = 0.5,
        idle_poll_interval: float | None = None,
    ) -> None:
        self._database = database
        self._signer = signer
        self._client = client
        self._worker = PeriodicWorker(
            "connector-dispatcher",
            self.dispatch_once,
            interval=poll_interval,
            idle_interval=idle_poll_interval,
        )

    def wake(self) -> None:
        self._worker.wake()

    async def start(self) -> None:
        await self._worker.start()

    async def stop(self) -> None:
        await self._worker.stop()

    async def dispatch_once(self) -> bool:
        """Claim, call and record every due attempt; whether more may be due already."""
        async with self._database.transaction() as session:
            calls = await delivery.claim_connector_calls(session, now=datetime.now(UTC))
        if calls:
            self._worker.tighten()  # retries may come due soon: no idle wait yet
        await asyncio.gather(*(self._attempt(call) for call in calls))
        return len(calls) >= delivery.CONNECTOR_BATCH

    async def call(self, call: ConnectorCall) -> ConnectorAnswer:
        """One call to a connector (never inside a transaction: the client refuses)."""
        try:
            response = await self._client.post(
                call.url, json=call.payload, timeout=call.timeout_seconds
            )
            body = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError) as exc:
            logger.warning(
                "connector call failed",
                extra={"inquiry_id": str(call.inquiry_id), "error": type(exc).__name__},
            )
            return _NO_ANSWER
        if (
            not isinstance(body, dict)
            or body.get("status") not in _STATUSES
            or not isinstance(body.get("result"), dict | None)
        ):
            logger.warning(
                "connector gave no usable answer",
                extra={"inquiry_id": str(call.inquiry_id), "status_code": response.status_code},
            )
            return _NO_ANSWER
        return ConnectorAnswer(status=str(body["status"]), result=body.get("result"))

    async def _attempt(self, call: ConnectorCall) -> None:
        answer = await self.call(call)
        async with self._database.transaction() as session:
            await answers.record_connector_answer(
                session,
                inquiry_id=call.inquiry_id,
                status=answer.status,
                result=answer.result,
                signer=self._signer,
            )
