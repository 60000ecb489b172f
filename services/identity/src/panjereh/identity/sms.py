"""SMS: a queue in the database, a background dispatcher, and gateways to send through.

Messages are written in the business transaction (:meth:`SmsQueue.enqueue`) and sent after
commit by :class:`SmsDispatcher`; an endpoint never waits on the provider. A message queued in
this process is written already claimed and handed to the dispatcher once its unit of work
commits (no claiming transaction, no wait for a pass); the passes send the rest. A provider outage
loses nothing: a message stays ``pending`` and is retried with backoff until it is sent, runs
out of tries, or expires (an OTP is worthless after its challenge ends). Template tokens, which
carry the OTP, are encrypted at rest and erased once the message is settled.

The dispatcher never talks to the provider with a transaction open: it **claims** due
messages in one short transaction (``FOR UPDATE SKIP LOCKED``; the try is counted and
``next_attempt_at`` moved to the end of a lease), commits, **sends** each one, and **records**
each outcome in a short transaction of its own (a message sent: one conditional ``UPDATE``
that commits by itself, no ``BEGIN``/``COMMIT``). A dispatcher that dies between claim and
record loses nothing: the lease runs out, the message falls due again and another pass sends
it (at least once; a send never outlives half its lease, so two dispatchers do not send one
message concurrently while both are alive).

Iranian providers send OTPs through pre-approved templates ("verify lookup"): the request names
a template and its tokens, never free text.

The provider's API key is a secret that must reach neither logs nor exported spans. Kavenegar
accepts it only in the URL path (no header), so the key lives in one place:
:class:`KeyInPathTransport`, under the client :func:`verify_lookup_client` builds. Everything
above the transport (the gateway, httpx's own ``HTTP Request`` log line, exceptions,
``response.request``) sees ``/v1/***/``; the transport swaps the key in on the way to the wire,
with the process-wide httpx tracing suppressed for that call, and records a client span of its
own under the redacted URL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypedDict
from urllib.parse import quote

import httpx
from cryptography.exceptions import InvalidTag
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_http_instrumentation
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.common.db import Database, after_commit
from panjereh.common.http import outbound_client
from panjereh.common.workers import PeriodicWorker
from panjereh.identity.crypto import Keys
from panjereh.identity.metrics import SMS_MESSAGES
from panjereh.identity.models import DevSms, SmsMessage
from panjereh.identity.repository import SmsRepository, mark_sent

logger = logging.getLogger(__name__)

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

    def __init__(self, database: Database) -> None:
        # one statement that commits by itself: the dispatcher calls a gateway with no
        # transaction open
        self._database = database

    async def send(self, *, mobile: str, template: str, tokens: Sequence[str]) -> str:
        row = await self._database.statement(
            _STORE_DEV_SMS,
            {
                "mobile": mobile,
                "template": template,
                "tokens": list(tokens),
                "text": render(template, tokens),
            },
        )
        if row is None:  # pragma: no cover - an INSERT … RETURNING answers its row
            msg = "the dev SMS was not stored"
            raise RuntimeError(msg)
        return f"dev-{row['id']}"


#: the console gateway's INSERT (built once: compiled once)
_STORE_DEV_SMS = insert(DevSms).returning(DevSms.id)


#: what stands for the provider's API key in every URL above :class:`KeyInPathTransport`
REDACTED_KEY = "***"
_REDACTED_SEGMENT = f"/{REDACTED_KEY}/".encode()


class KeyInPathTransport(httpx.AsyncBaseTransport):
    """Puts the provider's API key into the URL path only on the way to the wire.

    Requests name the key as ``/***/``; this transport sends them with the key in its place.
    The process-wide httpx instrumentation would record the real URL (``url.full``), so it is
    suppressed for the call, and this transport records the client span itself, under the
    redacted URL and with only an error's type (an error's text could quote the URL).
    """

    def __init__(self, api_key: str, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self._segment = f"/{quote(api_key, safe='')}/".encode()
        self._inner = inner or httpx.AsyncHTTPTransport()
        self._tracer = trace.get_tracer(__name__)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        attributes: dict[str, Any] = {
            "http.request.method": request.method,
            "url.full": str(url),  # redacted: the key is only ever in ``outgoing``
            "server.address": url.host,
        }
        if url.port is not None:
            attributes["server.port"] = url.port
        # a new request object: the caller's keeps the redacted URL for logs and exceptions
        outgoing = httpx.Request(
            request.method,
            url.copy_with(raw_path=url.raw_path.replace(_REDACTED_SEGMENT, self._segment, 1)),
            headers=request.headers,
            stream=request.stream,
            extensions=request.extensions,
        )
        with self._tracer.start_as_current_span(
            request.method,
            kind=SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                with suppress_http_instrumentation():
                    response = await self._inner.handle_async_request(outgoing)
            except Exception as exc:
                span.set_attribute("error.type", type(exc).__name__)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 500:
                span.set_status(Status(StatusCode.ERROR))
            return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def verify_lookup_client(api_key: str, **options: Any) -> httpx.AsyncClient:
    """The outbound client for :class:`VerifyLookupSmsGateway`; the only holder of the key."""
    return outbound_client(transport=KeyInPathTransport(api_key), **options)


class VerifyLookupSmsGateway:
    """A Kavenegar-style template API: ``POST {base}/v1/{API_KEY}/verify/lookup.json``.

    Form fields ``receptor``, ``template``, ``token``, ``token2``, ``token3``; success is
    ``{"return": {"status": 200}, "entries": [{"messageid": ...}]}``. Quick retries with
    backoff inside one call; the dispatcher retries again later if all of them fail.

    The gateway never holds the API key: it posts to ``/v1/***/verify/lookup.json`` and
    ``http`` must come from :func:`verify_lookup_client`, whose transport puts the key in.
    Any other client fails closed (the provider refuses the placeholder).
    """

    TOKEN_FIELDS = ("token", "token2", "token3")

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        attempts: int = 3,
        backoff_seconds: float = 0.2,
    ) -> None:
        self._http = http
        self._url = f"{base_url.rstrip('/')}/v1/{REDACTED_KEY}/verify/lookup.json"
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


class QueuedMessage(TypedDict):
    """The columns of a pending ``sms_message`` row."""

    id: uuid.UUID
    mobile: str
    template: str
    sealed_tokens: bytes
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class _Claimed:
    """A message this dispatcher holds the lease of; ``attempt`` tells its claim from later ones."""

    id: uuid.UUID
    mobile: str = field(repr=False)
    template: str
    tokens: list[str] = field(repr=False)
    attempt: int


class HandOver(Protocol):
    """A dispatcher that takes a message already claimed by the unit of work that queued it."""

    @property
    def lease(self) -> timedelta: ...

    def hand_over(self, message: _Claimed) -> None: ...


class SmsQueue:
    """Where use cases queue messages: rows in the caller's unit of work.

    With a ``dispatcher`` (the service's), a message is inserted already claimed (its first
    try counted, leased) and handed to the dispatcher once the unit of work commits: it is
    sent at once, with no claiming transaction. Should the process stop before the send is
    recorded, the lease runs out and a later pass sends it, as after any claim. Without one,
    ``wake`` is called after the commit so the next pass comes at once. A rolled-back
    message was never queued, and nothing is handed over or woken for it.
    """

    def __init__(
        self,
        keys: Keys,
        *,
        wake: Callable[[], None] | None = None,
        dispatcher: HandOver | None = None,
    ) -> None:
        self._keys = keys
        self._wake = wake
        self._dispatcher = dispatcher

    def enqueue(
        self,
        session: AsyncSession,
        *,
        mobile: str,
        template: str,
        tokens: Sequence[str],
        now: datetime,
        valid_for: timedelta,
    ) -> uuid.UUID:
        """Queue a message in ``session``'s transaction; sent after the commit."""
        message = self.message(
            mobile=mobile, template=template, tokens=tokens, now=now, valid_for=valid_for
        )
        session.add(SmsMessage(**message))
        after_commit(session, self.queued(message, tokens))
        return message["id"]

    def message(
        self,
        *,
        mobile: str,
        template: str,
        tokens: Sequence[str],
        now: datetime,
        valid_for: timedelta,
    ) -> QueuedMessage:
        """A message's column values (tokens sealed), for a statement that inserts it; the
        caller then runs what :meth:`queued` answers once its unit of work commits."""
        message_id = uuid.uuid4()
        handed_over = self._dispatcher is not None
        return {
            "id": message_id,
            "mobile": mobile,
            "template": template,
            "sealed_tokens": self._keys.encrypt(
                json.dumps(list(tokens)).encode(), context=message_id.bytes
            ),
            "status": "pending",
            # handed over: claimed as it is written, so no pass takes it while it is sent
            "attempts": 1 if handed_over else 0,
            "created_at": now,
            "next_attempt_at": now + self._dispatcher.lease if self._dispatcher else now,
            "expires_at": now + valid_for,
        }

    def queued(self, message: QueuedMessage, tokens: Sequence[str]) -> Callable[[], None]:
        """What to run once the unit of work that inserted ``message`` has committed (never on
        rollback): hand it to the dispatcher (or wake it)."""
        dispatcher = self._dispatcher
        if dispatcher is not None:
            claimed = _Claimed(
                id=message["id"],
                mobile=message["mobile"],
                template=message["template"],
                tokens=list(tokens),
                attempt=message["attempts"],
            )
            return lambda: dispatcher.hand_over(claimed)
        return self._wake or _nothing


def _nothing() -> None:
    """Nothing to wake: the next pass sends the message."""


@dataclass(frozen=True)
class _Outcome:
    provider_message_id: str | None = None
    error: str | None = None
    permanent: bool = False


class SmsDispatcher:
    """Sends due messages: claim (short transaction) → send (none open) → record (short)."""

    def __init__(
        self,
        database: Database,
        gateway: SmsGateway,
        keys: Keys,
        *,
        max_attempts: int,
        retry_base_seconds: float,
        lease_seconds: float,
    ) -> None:
        self._database = database
        self._gateway = gateway
        self._keys = keys
        self._max_attempts = max_attempts
        self._retry_base = retry_base_seconds
        self._lease = timedelta(seconds=lease_seconds)
        # a send cut off at half the lease is recorded long before anyone else may claim it
        self._send_within = lease_seconds / 2
        self._handed_over: set[asyncio.Task[None]] = set()
        self._closed = False
        self._worker: PeriodicWorker | None = None
        self._retry_timers: set[asyncio.TimerHandle] = set()

    @property
    def lease(self) -> timedelta:
        """How long a claimed message belongs to the dispatcher sending it."""
        return self._lease

    def pace(self, worker: PeriodicWorker) -> None:
        """Keep ``worker`` (whose step is :meth:`step`) on time while it idles at long waits:
        polling at its shortest again after a pass that took something, and woken when a retry
        left to the passes falls due."""
        self._worker = worker

    def _wake_in(self, delay: float) -> None:
        """Wake the worker once a retry recorded ``delay`` seconds from now is due."""
        worker = self._worker
        if worker is None or self._closed:
            return

        def due() -> None:
            self._retry_timers.discard(timer)
            worker.wake()

        timer = asyncio.get_running_loop().call_later(delay, due)
        self._retry_timers.add(timer)

    def hand_over(self, message: _Claimed) -> None:
        """Send ``message``, claimed by the unit of work that queued it and just committed.

        Once closed, nothing is started: the lease runs out and a later pass sends it.
        """
        if self._closed:
            return
        task = asyncio.get_running_loop().create_task(
            self._deliver_handed_over(message), name="sms-hand-over"
        )
        self._handed_over.add(task)
        task.add_done_callback(self._handed_over.discard)

    async def close(self) -> None:
        """Stop the sends handed over and not finished (their leases run out; a later pass,
        here or in another replica, sends them)."""
        self._closed = True
        for timer in self._retry_timers:
            timer.cancel()
        self._retry_timers.clear()
        tasks = list(self._handed_over)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _deliver_handed_over(self, message: _Claimed) -> None:
        """The first try of a message handed over; a failed one is tried once more from here
        after its retry delay (held from the passes until a while after that, so no other
        dispatcher takes it meanwhile); later tries are the passes' (or if this process
        stops first)."""
        try:
            retry_in = await self._deliver(message, hold=self._lease / 2)
            if retry_in is None:
                return
            await asyncio.sleep(retry_in)
            async with self._database.transaction() as session:
                attempt = await SmsRepository(session).claim(
                    message.id, attempt=message.attempt, lease_until=datetime.now(UTC) + self._lease
                )
            if attempt is not None:
                await self._deliver(replace(message, attempt=attempt))
        except Exception as exc:
            # the outcome was not recorded (database down): the lease runs out, a pass retries
            logger.warning(
                "sms outcome not recorded; will retry",
                extra={"sms_id": str(message.id), "error": type(exc).__name__},
            )

    async def step(self) -> bool:
        """One pass for a periodic worker; ``True`` when a full batch suggests more is due."""
        taken = await self.dispatch_due()
        if taken and self._worker is not None:
            self._worker.tighten()  # sent or retried something: more may follow soon
        return taken == DISPATCH_BATCH

    async def dispatch_due(self) -> int:
        """One pass over due messages; how many were taken (sent, retried or settled)."""
        taken, claimed = await self._claim()
        await asyncio.gather(*(self._deliver(message) for message in claimed))
        return taken

    async def _claim(self) -> tuple[int, list[_Claimed]]:
        async with self._database.transaction() as session:
            now = datetime.now(UTC)
            due = await SmsRepository(session).due_for_update(now, DISPATCH_BATCH)
            claimed: list[_Claimed] = []
            for message in due:
                if message.expires_at <= now or message.sealed_tokens is None:
                    self._settle(message, "expired")
                    continue
                try:
                    tokens: list[str] = json.loads(
                        self._keys.decrypt(message.sealed_tokens, context=message.id.bytes)
                    )
                except InvalidTag:
                    # sealed under another master secret: it can never be sent
                    message.last_error = "tokens cannot be decrypted"
                    self._settle(message, "failed")
                    logger.error("sms tokens unreadable", extra={"sms_id": str(message.id)})
                    continue
                message.attempts += 1
                message.next_attempt_at = now + self._lease
                claimed.append(
                    _Claimed(
                        id=message.id,
                        mobile=message.mobile,
                        template=message.template,
                        tokens=tokens,
                        attempt=message.attempts,
                    )
                )
        return len(due), claimed

    async def _deliver(self, message: _Claimed, *, hold: timedelta = timedelta(0)) -> float | None:
        """Send, then record the outcome; the seconds until the next try when there is one."""
        try:
            async with asyncio.timeout(self._send_within):
                provider_message_id = await self._gateway.send(
                    mobile=message.mobile, template=message.template, tokens=message.tokens
                )
        except SmsPermanentFailure as exc:
            outcome = _Outcome(error=str(exc), permanent=True)
        except SmsTemporaryFailure as exc:
            outcome = _Outcome(error=str(exc) or type(exc).__name__)
        except Exception as exc:
            # only the type: an unexpected error's text may quote the mobile or the tokens
            outcome = _Outcome(error=type(exc).__name__)
        else:
            outcome = _Outcome(provider_message_id=provider_message_id)
        return await self._record(message, outcome, hold=hold)

    async def _record(
        self, claimed: _Claimed, outcome: _Outcome, *, hold: timedelta = timedelta(0)
    ) -> float | None:
        """Record ``outcome``; the seconds until the message's next try when it has one.

        ``hold`` keeps a message to be tried again from the passes that much longer than its
        retry delay (the dispatcher that handed it over tries it again itself, in time)."""
        if outcome.error is None:
            # delivered: true whoever holds the lease now; one statement that commits by
            # itself, and nothing when the message was settled meanwhile (by a dispatcher that
            # took over)
            if await mark_sent(
                self._database,
                claimed.id,
                provider_message_id=outcome.provider_message_id,
                now=datetime.now(UTC),
            ):
                SMS_MESSAGES.labels("sent").inc()
            return None
        async with self._database.transaction() as session:
            message = await SmsRepository(session).for_update(claimed.id)
            if message is None or message.status != "pending":
                return None  # settled meanwhile (by a dispatcher that took over after the lease)
            now = datetime.now(UTC)
            if message.attempts != claimed.attempt:
                return None  # the lease ran out and a newer claim owns the message's fate
            message.last_error = outcome.error
            if outcome.permanent:
                self._settle(message, "failed")
                logger.error("sms refused by the provider", extra={"sms_id": str(message.id)})
            elif message.attempts >= self._max_attempts:
                self._settle(message, "failed")
                logger.error("sms gave up after retries", extra={"sms_id": str(message.id)})
            else:
                delay: float = self._retry_base * 2.0 ** min(message.attempts, 10)
                message.next_attempt_at = now + timedelta(seconds=delay) + hold
                if not hold:  # the passes' retry (a hand-over tries again by itself)
                    after_commit(session, lambda: self._wake_in(delay))
                logger.warning(
                    "sms not sent; will retry",
                    extra={"sms_id": str(message.id), "attempts": message.attempts},
                )
                return delay
            return None

    @staticmethod
    def _settle(message: SmsMessage, status: str) -> None:
        SMS_MESSAGES.labels(status).inc()
        message.status = status
        message.sealed_tokens = None  # the OTP leaves the database with the message
