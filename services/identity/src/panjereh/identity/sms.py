"""SMS: a queue in the database, a background dispatcher, and gateways to send through.

Messages are written in the business transaction (:func:`enqueue`) and sent after commit by
:class:`SmsDispatcher`; an endpoint never waits on the provider. A provider outage loses
nothing: a message stays ``pending`` and is retried with backoff until it is sent, runs out of
tries, or expires (an OTP is worthless after its challenge ends). Template tokens, which carry
the OTP, are encrypted at rest and erased once the message is settled.

Iranian providers send OTPs through pre-approved templates ("verify lookup"): the request names
a template and its tokens, never free text.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from panjereh.identity.crypto import Keys
from panjereh.identity.models import DevSms, SmsMessage
from panjereh.identity.repository import SmsRepository

logger = logging.getLogger(__name__)

#: ``session.info`` flag: the unit of work that commits this session wakes the dispatcher
ENQUEUED = "sms_enqueued"
DISPATCH_BATCH = 20


class SmsTemporaryFailure(Exception):
    """Worth trying again later (timeouts, 5xx, 429)."""


class SmsPermanentFailure(Exception):
    """Will never succeed as asked (bad template, blocked number, bad credentials)."""


class SmsGateway(Protocol):
    async def send(self, *, mobile: str, template: str, tokens: Sequence[str]) -> str:
        """Send one templated message; the provider's message id."""
        ...


#: How each template reads, for the console gateway (the real texts live at the provider).
TEMPLATE_TEXTS = {
    "panjereh-otp": "پنجره\nکد ورود شما: {0}\nاین کد را به کسی ندهید.",
    "panjereh-request-status": "پنجره\nوضعیت درخواست {0}: {1}",
}


def render(template: str, tokens: Sequence[str]) -> str:
    pattern = TEMPLATE_TEXTS.get(template)
    if pattern is None:
        return f"[{template}] " + " ".join(tokens)
    return pattern.format(*tokens)


class ConsoleSmsGateway:
    """Dev mode: "sends" by storing the message, shown by ``GET /api/v1/dev/sms-outbox``."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def send(self, *, mobile: str, template: str, tokens: Sequence[str]) -> str:
        async with self._sessions() as session, session.begin():
            row = DevSms(
                mobile=mobile, template=template, tokens=list(tokens), text=render(template, tokens)
            )
            session.add(row)
            await session.flush()
            return f"dev-{row.id}"


class VerifyLookupSmsGateway:
    """A Kavenegar-style template API: ``POST {base}/v1/{API_KEY}/verify/lookup.json``.

    Form fields ``receptor``, ``template``, ``token``, ``token2``, ``token3``; success is
    ``{"return": {"status": 200}, "entries": [{"messageid": ...}]}``. Quick retries with
    backoff inside one call; the dispatcher retries again later if all of them fail.
    """

    TOKEN_FIELDS = ("token", "token2", "token3")

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        api_key: str,
        attempts: int = 3,
        backoff_seconds: float = 0.2,
    ) -> None:
        self._http = http
        self._url = f"{base_url.rstrip('/')}/v1/{api_key}/verify/lookup.json"
        self._attempts = attempts
        self._backoff = backoff_seconds

    async def send(self, *, mobile: str, template: str, tokens: Sequence[str]) -> str:
        if not 1 <= len(tokens) <= len(self.TOKEN_FIELDS):
            msg = "a verify-lookup template takes one to three tokens"
            raise SmsPermanentFailure(msg)
        form = {"receptor": mobile, "template": template}
        # the provider refuses spaces inside tokens; Persian words are joined with ZWNJ instead
        form.update(
            {
                field: token.replace(" ", "\u200c")
                for field, token in zip(self.TOKEN_FIELDS, tokens, strict=False)
            }
        )
        last: Exception | None = None
        for attempt in range(self._attempts):
            if attempt:
                await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
            try:
                return await self._send_once(form)
            except SmsTemporaryFailure as exc:
                last = exc
        raise SmsTemporaryFailure(str(last))

    async def _send_once(self, form: dict[str, str]) -> str:
        try:
            response = await self._http.post(self._url, data=form)
        except httpx.HTTPError as exc:
            raise SmsTemporaryFailure(type(exc).__name__) from exc
        if response.status_code >= 500 or response.status_code == 429:
            msg = f"provider answered {response.status_code}"
            raise SmsTemporaryFailure(msg)
        try:
            body = response.json()
            status = int(body["return"]["status"])
        except (ValueError, KeyError, TypeError) as exc:
            msg = f"unreadable provider answer (HTTP {response.status_code})"
            raise SmsTemporaryFailure(msg) from exc
        if status != 200:
            # the provider's own codes: 4xx-style are about this request and will not heal
            msg = f"provider refused the message (status {status})"
            raise SmsPermanentFailure(msg)
        entries = body.get("entries") or [{}]
        return str(entries[0].get("messageid", ""))


def enqueue(
    session: AsyncSession,
    *,
    keys: Keys,
    mobile: str,
    template: str,
    tokens: Sequence[str],
    now: datetime,
    valid_for: timedelta,
) -> uuid.UUID:
    """Queue a message in the caller's transaction; sent after the commit."""
    message_id = uuid.uuid4()
    session.add(
        SmsMessage(
            id=message_id,
            mobile=mobile,
            template=template,
            sealed_tokens=keys.encrypt(json.dumps(list(tokens)).encode(), context=message_id.bytes),
            status="pending",
            attempts=0,
            created_at=now,
            next_attempt_at=now,
            expires_at=now + valid_for,
        )
    )
    session.info[ENQUEUED] = True
    return message_id


class SmsDispatcher:
    """Sends due messages; woken after a commit that queued one, else polls."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        gateway: SmsGateway,
        keys: Keys,
        *,
        poll_seconds: float,
        max_attempts: int,
        retry_base_seconds: float,
    ) -> None:
        self._sessions = sessions
        self._gateway = gateway
        self._keys = keys
        self._poll = poll_seconds
        self._max_attempts = max_attempts
        self._retry_base = retry_base_seconds
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                while await self.dispatch_due() == DISPATCH_BATCH:
                    pass
            except Exception:
                logger.exception("sms dispatch pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll)

    async def dispatch_due(self) -> int:
        """One pass over due messages; how many were handled."""
        async with self._sessions() as session, session.begin():
            now = datetime.now(UTC)
            due = await SmsRepository(session).due_for_update(now, DISPATCH_BATCH)
            await asyncio.gather(*(self._dispatch(message, now) for message in due))
        return len(due)

    async def _dispatch(self, message: SmsMessage, now: datetime) -> None:
        if message.expires_at <= now or message.sealed_tokens is None:
            self._settle(message, "expired")
            return
        tokens: list[str] = json.loads(
            self._keys.decrypt(message.sealed_tokens, context=message.id.bytes)
        )
        message.attempts += 1
        try:
            message.provider_message_id = await self._gateway.send(
                mobile=message.mobile, template=message.template, tokens=tokens
            )
        except SmsPermanentFailure as exc:
            message.last_error = str(exc)
            self._settle(message, "failed")
            logger.error("sms refused by the provider", extra={"sms_id": str(message.id)})
        except Exception as exc:
            message.last_error = str(exc) or type(exc).__name__
            if message.attempts >= self._max_attempts:
                self._settle(message, "failed")
                logger.error("sms gave up after retries", extra={"sms_id": str(message.id)})
            else:
                delay = self._retry_base * 2 ** min(message.attempts, 10)
                message.next_attempt_at = datetime.now(UTC) + timedelta(seconds=delay)
                logger.warning(
                    "sms not sent; will retry",
                    extra={"sms_id": str(message.id), "attempts": message.attempts},
                )
        else:
            message.sent_at = datetime.now(UTC)
            self._settle(message, "sent")

    @staticmethod
    def _settle(message: SmsMessage, status: str) -> None:
        message.status = status
        message.sealed_tokens = None  # the OTP leaves the database with the message
