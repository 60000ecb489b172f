"""Delivery to agencies that expose an HTTP connector instead of consuming a Kafka topic.

The request's transaction only schedules the attempt (``next_attempt_at``); this dispatcher,
running on every replica, claims due attempts in a short transaction (``SKIP LOCKED``: each
attempt is made by one replica), calls the connectors *outside* any transaction, and records
each answer in its own transaction, exactly like a Kafka reply (signature, NOTIFY, event).

The connector contract: ``POST <connector_url>`` with the ``InquiryToAgency`` payload as JSON;
``200 {"status": "ok" | "not_found" | "error", "result": {...}}``. Anything else (another
status code, a timeout, a malformed body) counts as an ``error`` answer, which is retried while
attempts and time remain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

import httpx

from panjereh.common.db import Database
from panjereh.inquiry_broker import service
from panjereh.inquiry_broker.service import ConnectorCall
from panjereh.inquiry_broker.signing import AnswerSigner

logger = logging.getLogger(__name__)

_STATUSES = frozenset({"ok", "not_found", "error"})


class ConnectorDispatcher:
    """Makes due HTTP-connector attempts; ``wake()`` after a commit skips the next poll."""

    def __init__(
        self,
        *,
        database: Database,
        signer: AnswerSigner,
        client: httpx.AsyncClient,
        poll_interval: float = 0.5,
    ) -> None:
        self._database = database
        self._signer = signer
        self._client = client
        self._poll_interval = poll_interval
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wakeup.set()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="connector-dispatcher")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def dispatch_once(self) -> int:
        """Claim, call and record every due attempt; how many were made."""
        async with self._database.transaction() as session:
            calls = await service.claim_connector_calls(session, now=datetime.now(UTC))
        await asyncio.gather(*(self._attempt(call) for call in calls))
        return len(calls)

    async def _run(self) -> None:
        while True:
            try:
                await self.dispatch_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("calling HTTP connectors failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=self._poll_interval)
            self._wakeup.clear()

    async def _attempt(self, call: ConnectorCall) -> None:
        status, result = await self._call(call)
        async with self._database.transaction() as session:
            await service.record_connector_answer(
                session,
                inquiry_id=call.inquiry_id,
                status=status,
                result=result,
                signer=self._signer,
            )

    async def _call(self, call: ConnectorCall) -> tuple[str, dict[str, Any] | None]:
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
            return "error", None
        if (
            not isinstance(body, dict)
            or body.get("status") not in _STATUSES
            or not isinstance(body.get("result"), dict | None)
        ):
            logger.warning(
                "connector gave no usable answer",
                extra={"inquiry_id": str(call.inquiry_id), "status_code": response.status_code},
            )
            return "error", None
        return str(body["status"]), body.get("result")
