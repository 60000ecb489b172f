"""Test support for the identity service: loopback HTTP servers standing in for its peers.

:class:`LoopbackServer` runs an ASGI app under uvicorn on 127.0.0.1 (real HTTP, real
sockets). :class:`InquiryBrokerDouble` answers the two inquiries identity makes, shaped as
CONTRACT.md's broker answers them, so identity's own tests do not depend on the broker
service (the e2e tests use the real broker and simulators). Like the broker, it allows each
inquiry only under its platform purpose (:data:`GRANTED_PURPOSES`). :class:`SmsProviderDouble` is a
Kavenegar-style verify-lookup API that fails on purpose when told to.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from panjereh.contracts.identifiers import complete_national_code
from panjereh.identity.config import Settings

#: The broker's grants to identity (its migration 0005): each type under one platform purpose.
GRANTED_PURPOSES = {
    "mobile-registry.ownership": "identity.login",
    "civil-registry.person": "identity.registration",
}
#: a national code (valid checksum) the registry double has no record of
UNKNOWN_TO_REGISTRY = "0076229645"
PROFILE = {
    "first_name": "سارا",
    "last_name": "محمدی",
    "birth_date": "1990-03-21",
    "alive": True,
}


def national_code_for(seed: int) -> str:
    """A valid national code made from ``seed`` (tests need many distinct ones)."""
    base = f"{(seed * 7919 + 100_000_007) % 10**9:09d}"
    if len(set(base)) == 1 or base[3:9] == "000000":
        base = "1" + base[1:8] + "7"
    return complete_national_code(base)


def mobile_for(seed: int) -> str:
    """A well-formed mobile that the doubles (and the simulators) treat as owned."""
    number = f"0912{(seed * 104_729 + 1234) % 10**7:07d}"
    return number if not number.endswith("0000") else number[:-1] + "1"


async def login(client: httpx.AsyncClient, national_code: str, mobile: str) -> dict[str, Any]:
    """The whole OTP login against a dev-mode identity: the tokens it issues."""
    challenge = await client.post(
        "/api/v1/auth/otp", json={"national_code": national_code, "mobile": mobile}
    )
    if challenge.status_code != 202:
        msg = f"OTP request refused: {challenge.status_code} {challenge.text}"
        raise AssertionError(msg)
    items: dict[str, Any] = {"items": []}
    for _ in range(200):  # the SMS is queued in the same transaction, sent just after
        items = (await client.get("/api/v1/dev/sms-outbox", params={"mobile": mobile})).json()
        if items["items"]:
            break
        await asyncio.sleep(0.025)
    verified = await client.post(
        "/api/v1/auth/otp/verify",
        json={
            "challenge_id": challenge.json()["challenge_id"],
            "code": items["items"][0]["tokens"][0],
        },
    )
    if verified.status_code != 200:
        msg = f"OTP verification refused: {verified.status_code} {verified.text}"
        raise AssertionError(msg)
    tokens: dict[str, Any] = verified.json()
    return tokens


def settings_for_tests(database_url: str, broker_url: str, **overrides: Any) -> Settings:
    """Identity settings for tests: fast polling, no key caching, a roomy per-address limit."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "inquiry_broker_url": broker_url,
        "otp_per_ip_limit": 12,
        "sms_poll_seconds": 0.2,
        "key_cache_seconds": 0,
        "consume_status_events": False,
        # nothing listens on port 1: a test never talks to some other stack's broker
        "kafka_bootstrap_servers": "127.0.0.1:1",
        **overrides,
    }
    return Settings.model_validate(values)


@dataclass
class InquiryBrokerDouble:
    """``POST /api/v1/inquiries?wait=5`` for ownership and civil-registry inquiries."""

    url: str = ""
    available: bool = True
    #: seconds each answer takes (for races: a second request arrives while one is in flight)
    delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/api/v1/inquiries", self._inquiry, methods=["POST"])])

    def asked(self, inquiry_type: str) -> list[dict[str, Any]]:
        return [body for body in self.requests if body["type"] == inquiry_type]

    async def _inquiry(self, request: Request) -> JSONResponse:
        self.authorizations.append(request.headers.get("authorization", ""))
        if not self.available:
            return JSONResponse({"code": "agency_unavailable"}, status_code=503)
        body: dict[str, Any] = await request.json()
        self.requests.append(body)
        if self.delay:
            await asyncio.sleep(self.delay)
        inquiry_id = f"inq-{len(self.requests)}"
        purpose = body.get("purpose", {}).get("service_code")
        if body["type"] in GRANTED_PURPOSES and purpose != GRANTED_PURPOSES[body["type"]]:
            # the broker's refusal: a grant applies to its own purpose only (and a purpose that
            # is no platform purpose names a service card, which identity may not act for)
            owned = purpose in GRANTED_PURPOSES.values()
            reason = "type_not_granted" if owned else "card_not_published"
            return JSONResponse(
                {"code": "inquiry_not_permitted", "reason": reason}, status_code=403
            )
        if body["type"] == "mobile-registry.ownership":
            owned = not str(body["params"]["mobile"]).endswith("0000")
            result: dict[str, Any] | None = {"owned": owned}
        elif body["type"] == "civil-registry.person":
            result = None if body["subject"] == UNKNOWN_TO_REGISTRY else dict(PROFILE)
        else:
            return JSONResponse({"code": "unknown_inquiry_type"}, status_code=422)
        # shaped like the broker's InquiryRead: no record is status "not_found"
        status = "not_found" if result is None else "answered"
        return JSONResponse(
            {"inquiry_id": inquiry_id, "type": body["type"], "status": status, "result": result}
        )


@dataclass
class SmsProviderDouble:
    """``POST /v1/{key}/verify/lookup.json``: fails ``fail_next`` times (HTTP 502), then works.

    With ``hang`` a call answers only once :meth:`release` is called (or after 30 s): a test
    that makes the provider hang releases it when it ends, so no handler outlives the test and
    the server stops at once.
    """

    url: str = ""
    fail_next: int = 0
    hang: bool = False
    refuse: bool = False
    received: list[dict[str, str]] = field(default_factory=list)
    attempts: int = 0
    _released: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def reset(self) -> None:
        """Back to a working provider with nothing received; hanging calls are let go."""
        self.release()
        self.fail_next, self.hang, self.refuse = 0, False, False
        self.received.clear()
        self.attempts = 0

    def release(self) -> None:
        self._released.set()
        self._released = asyncio.Event()

    def app(self) -> Starlette:
        return Starlette(
            routes=[Route("/v1/{key}/verify/lookup.json", self._lookup, methods=["POST"])]
        )

    async def _lookup(self, request: Request) -> JSONResponse:
        self.attempts += 1
        if self.hang:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._released.wait(), timeout=30)
            # the caller gave up long ago: touch nothing the next test may have set up
            return JSONResponse({"return": {"status": 504, "message": "hung"}}, status_code=504)
        if self.fail_next > 0:
            self.fail_next -= 1
            return JSONResponse({"return": {"status": 502, "message": "down"}}, status_code=502)
        if self.refuse:
            return JSONResponse(
                {"return": {"status": 424, "message": "template not found"}, "entries": None},
                status_code=424,
            )
        form = dict(parse_qsl((await request.body()).decode()))
        form["api_key"] = request.path_params["key"]
        self.received.append(form)
        return JSONResponse(
            {
                "return": {"status": 200, "message": "ok"},
                "entries": [{"messageid": 8792343 + len(self.received), "status": 5}],
            }
        )
