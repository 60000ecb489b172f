"""Test support for the requests service: loopback HTTP servers standing in for its peers.

The inquiry broker and identity are outside systems to this service: its tests stand them up
as real HTTP servers on 127.0.0.1 (real sockets, real HTTP) that speak the contracts of
docs/inquiries.md and docs/api.md, so the service's own code runs unchanged.

- :class:`IdentityDouble`: ``POST /api/v1/auth/token`` (client credentials, form-encoded).
- :class:`InquiryBrokerDouble`: ``POST /api/v1/inquiries?wait=`` (200 final / 202 pending,
  ``Idempotency-Key`` replay and ``409 idempotency_key_reused``, ``403 inquiry_not_permitted``
  with a ``reason``), ``GET /api/v1/inquiries/{id}?wait=`` (the asking client only), signed
  answers, and optionally ``inquiry.inquiry.answered`` on Kafka when an answer arrives. Test
  knobs: an outage (503), answers held back until released, refusals of a purpose it has not
  heard of yet, and what each inquiry type answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from aiokafka import AIOKafkaProducer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from panjereh.common import jwk
from panjereh.common.messaging.envelope import CloudEvent
from panjereh.contracts.inquiry import InquiryAnswered

#: what the civil registry double says about a living adult
PERSON = {
    "first_name": "سارا",
    "last_name": "محمدی",
    "birth_date": "1990-03-21",
    "alive": True,
    "gender": "female",
}
#: broker status → the ``status`` of ``InquiryAnswered``
_EVENT_STATUS = {"answered": "ok", "not_found": "not_found"}

Answer = tuple[str, dict[str, Any] | None]
Registry = Callable[[str], Answer]


def _problem(status: int, code: str, **extra: Any) -> JSONResponse:
    return JSONResponse(
        {"type": f"about:blank#{code}", "title": code, "status": status, "code": code, **extra},
        status_code=status,
        media_type="application/problem+json",
    )


@dataclass
class IdentityDouble:
    """Identity's token endpoint for machine clients (client credentials only)."""

    url: str = ""
    clients: dict[str, str] = field(
        default_factory=lambda: {"service-requests": "dev-only-service-requests"}
    )
    expires_in: int = 300
    available: bool = True
    #: token → client id, for the broker double to check bearers against
    tokens: dict[str, str] = field(default_factory=dict)
    token_requests: int = 0

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/api/v1/auth/token", self._token, methods=["POST"])])

    def client_of(self, authorization: str) -> str | None:
        scheme, _, token = authorization.partition(" ")
        return self.tokens.get(token) if scheme.lower() == "bearer" else None

    def revoke_all(self) -> None:
        self.tokens.clear()

    async def _token(self, request: Request) -> JSONResponse:
        self.token_requests += 1
        if not self.available:
            return _problem(503, "service_unavailable")
        form = dict(parse_qsl((await request.body()).decode()))
        if form.get("grant_type") != "client_credentials":
            return _problem(400, "unsupported_grant_type")
        client_id = form.get("client_id", "")
        if self.clients.get(client_id) != form.get("client_secret"):
            return _problem(401, "invalid_client")
        token = secrets.token_urlsafe(24)
        self.tokens[token] = client_id
        return JSONResponse(
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": self.expires_in,
                "scope": form.get("scope", ""),
            }
        )


@dataclass
class HeldInquiry:
    """One inquiry the broker double holds."""

    id: uuid.UUID
    caller: str
    body: dict[str, Any]
    status: str = "pending"
    result: dict[str, Any] | None = None
    signature: str | None = None
    settled: asyncio.Event = field(default_factory=asyncio.Event)

    def read(self) -> dict[str, Any]:
        return {
            "inquiry_id": str(self.id),
            "type": self.body["type"],
            "status": self.status,
            "result": self.result,
            "signature": self.signature,
            "cached": False,
        }


def default_registry(not_found: frozenset[str] = frozenset()) -> dict[str, Registry]:
    def person(subject: str) -> Answer:
        return ("not_found", None) if subject in not_found else ("answered", dict(PERSON))

    return {"civil-registry.person": person}


@dataclass
class InquiryBrokerDouble:
    """The broker's inquiry API as ``service:requests`` sees it."""

    identity: IdentityDouble
    url: str = ""
    #: False: every call is ``503`` (an outage)
    available: bool = True
    #: True: answers stay pending until :meth:`release`
    holding: bool = False
    #: this many asks are refused ``403 inquiry_not_permitted`` (reason ``request_unknown``)
    refuse_unknown_purpose: int = 0
    #: inquiry type → the policy's reason for refusing it (``403 inquiry_not_permitted``)
    refuse: dict[str, str] = field(default_factory=dict)
    #: inquiry type → subject → (status, result); unknown types are ``failed``
    registry: dict[str, Registry] = field(default_factory=default_registry)
    #: called with each inquiry when its answer arrives (e.g. publish ``InquiryAnswered``)
    on_answer: Callable[[HeldInquiry], Coroutine[Any, Any, None]] | None = None
    inquiries: dict[uuid.UUID, HeldInquiry] = field(default_factory=dict)
    #: (caller, Idempotency-Key) → (body fingerprint, inquiry id)
    keys: dict[tuple[str, str], tuple[str, uuid.UUID]] = field(default_factory=dict)
    #: every ``POST`` body and ``Idempotency-Key`` received, and how many reads
    asked: list[tuple[str | None, dict[str, Any]]] = field(default_factory=list)
    reads: int = 0
    replays: int = 0
    _key: jwk.PrivateKey = field(default_factory=jwk.generate_private_key, repr=False)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, repr=False)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/v1/inquiries", self._ask, methods=["POST"]),
                Route("/api/v1/inquiries/{inquiry_id}", self._read, methods=["GET"]),
            ]
        )

    def reset(self) -> None:
        self.available, self.holding, self.refuse_unknown_purpose = True, False, 0
        self.refuse = {}
        self.registry = default_registry()
        self.on_answer = None

    def asked_for(self, tracking_code: str) -> list[tuple[str | None, dict[str, Any]]]:
        return [(key, body) for key, body in self.asked if _tracking(body) == tracking_code]

    def of_request(self, tracking_code: str) -> list[HeldInquiry]:
        return [i for i in self.inquiries.values() if _tracking(i.body) == tracking_code]

    def release(self) -> None:
        """Answer every held inquiry now (and stop holding)."""
        self.holding = False
        for inquiry in list(self.inquiries.values()):
            if inquiry.status == "pending":
                self._settle(inquiry)

    async def _ask(self, request: Request) -> JSONResponse:
        if not self.available:
            return _problem(503, "service_unavailable")
        caller = self.identity.client_of(request.headers.get("authorization", ""))
        if caller is None:
            return _problem(401, "token_invalid")
        body: dict[str, Any] = await request.json()
        key = request.headers.get("idempotency-key")
        self.asked.append((key, body))
        if self.refuse_unknown_purpose > 0:
            self.refuse_unknown_purpose -= 1
            return _problem(403, "inquiry_not_permitted", reason="request_unknown")
        if body.get("type") in self.refuse:
            return _problem(403, "inquiry_not_permitted", reason=self.refuse[body["type"]])
        fingerprint = hashlib.sha256(jwk.canonical_json(body)).hexdigest()
        headers: dict[str, str] = {}
        earlier = self.keys.get((caller, key)) if key else None
        if earlier is not None:
            if earlier[0] != fingerprint:
                return _problem(409, "idempotency_key_reused")
            inquiry = self.inquiries[earlier[1]]
            self.replays += 1
            headers["Idempotent-Replayed"] = "true"
        else:
            inquiry = HeldInquiry(id=uuid.uuid4(), caller=caller, body=body)
            self.inquiries[inquiry.id] = inquiry
            if key:
                self.keys[(caller, key)] = (fingerprint, inquiry.id)
            if not self.holding:
                self._settle(inquiry)
        return await self._answer(inquiry, request, headers)

    async def _read(self, request: Request) -> JSONResponse:
        if not self.available:
            return _problem(503, "service_unavailable")
        caller = self.identity.client_of(request.headers.get("authorization", ""))
        if caller is None:
            return _problem(401, "token_invalid")
        self.reads += 1
        try:
            inquiry = self.inquiries.get(uuid.UUID(request.path_params["inquiry_id"]))
        except ValueError:
            inquiry = None
        if inquiry is None or inquiry.caller != caller:
            return _problem(404, "inquiry_not_found")
        return await self._answer(inquiry, request, {})

    async def _answer(
        self, inquiry: HeldInquiry, request: Request, headers: dict[str, str]
    ) -> JSONResponse:
        wait = min(float(request.query_params.get("wait", "0") or 0), 10.0)
        if inquiry.status == "pending" and wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(inquiry.settled.wait(), timeout=wait)
        final = inquiry.status != "pending"
        body = inquiry.read() if final else {"inquiry_id": str(inquiry.id), "status": "pending"}
        return JSONResponse(body, status_code=200 if final else 202, headers=headers)

    def _settle(self, inquiry: HeldInquiry) -> None:
        answer = self.registry.get(inquiry.body["type"])
        status, result = answer(inquiry.body["subject"]) if answer else ("failed", None)
        inquiry.status, inquiry.result = status, result
        if status in ("answered", "not_found"):
            inquiry.signature = jwk.sign_compact(
                self._key,
                {"typ": "inquiry-answer+jws"},
                {
                    "inquiry_id": str(inquiry.id),
                    "type": inquiry.body["type"],
                    "subject_sha256": hashlib.sha256(inquiry.body["subject"].encode()).hexdigest(),
                    "status": status,
                    "result": result,
                    "answered_at": datetime.now(UTC).isoformat(),
                },
            )
        inquiry.settled.set()
        if self.on_answer is not None:
            task = asyncio.get_running_loop().create_task(self.on_answer(inquiry))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


def _tracking(body: dict[str, Any]) -> str | None:
    purpose = body.get("purpose") or {}
    return purpose.get("tracking_code") if isinstance(purpose, dict) else None


@contextlib.asynccontextmanager
async def answered_events(
    bootstrap_servers: str,
) -> AsyncIterator[Callable[[HeldInquiry], Coroutine[Any, Any, None]]]:
    """A publisher of ``inquiry.inquiry.answered`` (as the broker sends it: no result)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, enable_idempotence=False)
    await producer.start()

    async def publish(inquiry: HeldInquiry) -> None:
        purpose = inquiry.body.get("purpose") or {}
        event = InquiryAnswered(
            inquiry_id=str(inquiry.id),
            type=inquiry.body["type"],
            status=_EVENT_STATUS.get(inquiry.status, "error"),  # type: ignore[arg-type]
            tracking_code=purpose.get("tracking_code"),
            service_code=purpose.get("service_code"),
        )
        envelope = CloudEvent.from_event(event, source="inquiry-broker")
        await producer.send_and_wait(
            InquiryAnswered.topic,
            value=envelope.to_bytes(),
            key=str(purpose.get("tracking_code") or inquiry.id).encode(),
        )

    try:
        yield publish
    finally:
        await producer.stop()
