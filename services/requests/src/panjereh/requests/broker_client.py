"""This service's client of the inquiry broker, and of identity for its own token.

Every call is made with no database transaction open (the kernel's clients refuse
otherwise): the orchestration claims work, commits, calls here, then records. The broker is a
service of the platform, reached with the kernel's ``ServiceClient``; identity's token
endpoint, asked once per token lifetime, with an ``outbound_client``.

Nothing here raises for an answer the broker gives: each call returns a :class:`BrokerReply`
that says what to do next (``final``: record it; ``pending``: read it again later;
``retry``: a transient failure, ask again after a backoff; ``refused``: asking again cannot
help). Replies and log lines carry inquiry types, ids and status codes, never the subject.

Retries are safe because every ask carries ``Idempotency-Key: <tracking code>:<type>``: the
broker answers a repeated key (with the same body) with the first inquiry as it is now, so a
crash between the broker's commit and ours, or a lost response, never makes a second inquiry.

Each call does only what varies: the ask's target (with ``?wait=``) is built once, the
``Authorization`` header is built again only when the token changes, and an inquiry is read
from the response's bytes by one pydantic validation.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ValidationError

from panjereh.common.http import ServiceClient, ServiceResponse
from panjereh.common.upstream import UpstreamError
from panjereh.contracts import access

logger = logging.getLogger(__name__)

#: broker statuses that end an inquiry (``failed`` and ``timed_out``: nobody vouched)
FINAL_STATUSES = frozenset({"answered", "not_found", "failed", "timed_out"})
#: ``403 inquiry_not_permitted`` reasons that mean "the broker has not heard of this yet":
#: it learns live purposes from ``requests.request.submitted`` and published cards from
#: ``catalog.service.published``, each of which may reach it a moment after us (a card this
#: service already accepts requests for, as soon as it is published). Asked again, within the
#: retry policy's attempts. Any other refusal is final.
PURPOSE_NOT_YET_KNOWN = frozenset(
    {
        "purpose_unknown",
        "request_unknown",
        "tracking_code_unknown",
        "request_not_found",
        "card_not_published",
    }
)
_TRANSIENT_STATUS_CODES = frozenset({408, 425, 429, 500, 502, 503, 504})
#: a token is renewed this long before it expires, so a call never carries a dying one
TOKEN_RENEW_MARGIN_SECONDS = 30.0

ReplyKind = Literal["final", "pending", "retry", "refused"]


@dataclass(frozen=True)
class InquiryAsk:
    """One inquiry of a request, as the broker's ``POST /api/v1/inquiries`` takes it."""

    type: str
    subject: str = field(repr=False)  # a national code: never in a repr, a log or an event
    service_code: str
    tracking_code: str
    legal_basis: str

    @property
    def idempotency_key(self) -> str:
        return f"{self.tracking_code}:{self.type}"

    def body(self) -> dict[str, Any]:
        # the same request always gives the same body: the broker refuses a repeated key
        # with another body, so nothing here may vary between attempts
        return {
            "type": self.type,
            "subject": self.subject,
            "params": {},
            "purpose": {
                "service_code": self.service_code,
                "tracking_code": self.tracking_code,
                "legal_basis": self.legal_basis,
            },
        }


@dataclass(frozen=True)
class BrokerReply:
    kind: ReplyKind
    inquiry_id: uuid.UUID | None = None
    #: the broker's status when final: answered, not_found, failed or timed_out
    status: str | None = None
    result: dict[str, Any] | None = field(default=None, repr=False)
    signature: str | None = field(default=None, repr=False)
    #: why it is not final: a short machine word, safe to store and log
    error: str | None = None
    #: the broker asked us to wait this long (``Retry-After``)
    retry_after: float | None = None
    #: the inquiry id we held is unknown to the broker: ask again (same key) instead of reading
    forget_inquiry: bool = False


class TokenUnavailable(Exception):
    """Identity did not give this service a token (unreachable, refused, malformed)."""


class ServiceToken:
    """This service's access token (client credentials), cached until shortly before expiry."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        identity_url: str,
        client_id: str,
        client_secret: str,
        scope: str = access.INQUIRIES_SCOPE,
    ) -> None:
        self._http = http
        self._url = f"{identity_url.rstrip('/')}/api/v1/auth/token"
        self._client_id = client_id
        self._client_secret = client_secret
        self._scope = scope
        self._token: str | None = None
        self._renew_at = 0.0
        # one fetch at a time: fifty inquiries starting together need one token, not fifty
        self._lock = asyncio.Lock()
        #: tokens fetched, for tests and metrics
        self.fetched = 0

    async def get(self) -> str:
        async with self._lock:
            if self._token is not None and time.monotonic() < self._renew_at:
                return self._token
            self._token, lifetime = await self._fetch()
            self._renew_at = time.monotonic() + max(lifetime - TOKEN_RENEW_MARGIN_SECONDS, 0.0)
            self.fetched += 1
            return self._token

    def forget(self, token: str) -> None:
        """The broker refused ``token``: fetch a new one next time (unless already renewed)."""
        if self._token == token:
            self._token = None

    async def _fetch(self) -> tuple[str, float]:
        try:
            response = await self._http.post(
                self._url,
                data={
                    "grant_type": "client_credentials",
                    "client_id": self._client_id,
                    "client_secret": self._client_secret,
                    "scope": self._scope,
                },
            )
        except httpx.HTTPError as exc:
            raise TokenUnavailable(type(exc).__name__) from exc
        if response.status_code != httpx.codes.OK:
            raise TokenUnavailable(f"identity answered {response.status_code}")
        try:
            body = response.json()
            token, lifetime = str(body["access_token"]), float(body.get("expires_in", 60))
        except (ValueError, KeyError, TypeError) as exc:
            raise TokenUnavailable("malformed token response") from exc
        return token, lifetime


class _Inquiry(BaseModel):
    """What this service reads of the broker's inquiry (other fields are ignored)."""

    inquiry_id: uuid.UUID
    status: str
    result: Any = None
    signature: Any = None


class BrokerClient:
    """Asks the broker and reads its inquiries, as ``service:requests``."""

    def __init__(self, http: ServiceClient, *, token: ServiceToken, wait: float) -> None:
        self._http = http
        self._base = "/api/v1/inquiries"
        self._query = f"?wait={wait:g}"
        self._ask_target = f"{self._base}{self._query}"
        self._token = token
        self._authorization: tuple[str, str] = ("", "")

    async def ask(self, ask: InquiryAsk) -> BrokerReply:
        """``POST /api/v1/inquiries?wait=``: 200 final, 202 pending, else why not."""
        return await self._call(
            "POST",
            self._ask_target,
            json=ask.body(),
            headers={"Idempotency-Key": ask.idempotency_key},
            inquiry_type=ask.type,
        )

    async def read(self, inquiry_id: uuid.UUID, *, inquiry_type: str) -> BrokerReply:
        """``GET /api/v1/inquiries/{id}?wait=``: the inquiry as it is (after waiting)."""
        return await self._call(
            "GET",
            f"{self._base}/{inquiry_id}{self._query}",
            inquiry_type=inquiry_type,
            known_id=inquiry_id,
        )

    def _bearer(self, token: str) -> str:
        """``Bearer <token>``, built again only when the token changes."""
        if token != self._authorization[0]:
            self._authorization = (token, f"Bearer {token}")
        return self._authorization[1]

    async def _call(
        self,
        method: str,
        target: str,
        *,
        inquiry_type: str,
        json: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        known_id: uuid.UUID | None = None,
    ) -> BrokerReply:
        for renewed in (False, True):
            try:
                token = await self._token.get()
            except TokenUnavailable as exc:
                logger.warning("no service token for the broker", extra={"error": str(exc)})
                return BrokerReply("retry", inquiry_id=known_id, error="token_unavailable")
            try:
                response = await self._http.request(
                    method,
                    target,
                    json=json,
                    headers={**(headers or {}), "Authorization": self._bearer(token)},
                )
            except UpstreamError as exc:
                logger.warning(
                    "inquiry broker unreachable",
                    extra={"inquiry_type": inquiry_type, "error": type(exc).__name__},
                )
                return BrokerReply("retry", inquiry_id=known_id, error="broker_unreachable")
            if response.status_code == httpx.codes.UNAUTHORIZED and not renewed:
                self._token.forget(token)  # expired or revoked early: one fresh token, once
                continue
            return self._reply(response, inquiry_type=inquiry_type, known_id=known_id)
        return BrokerReply("retry", inquiry_id=known_id, error="unauthorized")

    def _reply(
        self, response: ServiceResponse, *, inquiry_type: str, known_id: uuid.UUID | None
    ) -> BrokerReply:
        code = response.status_code
        if code in (httpx.codes.OK, httpx.codes.ACCEPTED):
            return _answer(response, known_id=known_id)
        if code == httpx.codes.NOT_FOUND and known_id is not None:
            # the broker lost track of it (or another client's id): ask again with our key
            return BrokerReply("retry", error="inquiry_unknown", forget_inquiry=True)
        if code in _TRANSIENT_STATUS_CODES or code == httpx.codes.UNAUTHORIZED:
            return BrokerReply(
                "retry",
                inquiry_id=known_id,
                error="unauthorized" if code == httpx.codes.UNAUTHORIZED else f"broker_{code}",
                retry_after=_retry_after(response),
            )
        return _refusal(response, inquiry_type=inquiry_type, known_id=known_id)


def _refusal(
    response: ServiceResponse, *, inquiry_type: str, known_id: uuid.UUID | None
) -> BrokerReply:
    """A 4xx: final, except a 403 that only says the broker does not know the request yet."""
    problem = _problem(response)
    if response.status_code == httpx.codes.FORBIDDEN:
        reason = str(problem.get("reason") or problem.get("code") or "forbidden")
        if purpose_not_yet_known(reason):
            return BrokerReply("retry", inquiry_id=known_id, error=f"refused:{reason}")
        error = f"refused:{reason}"
    else:
        error = str(problem.get("code") or f"broker_{response.status_code}")
    logger.warning(
        "inquiry refused by the broker",
        extra={"inquiry_type": inquiry_type, "status": response.status_code, "error": error},
    )
    return BrokerReply("refused", inquiry_id=known_id, error=error)


def _answer(response: ServiceResponse, *, known_id: uuid.UUID | None) -> BrokerReply:
    try:
        body = _Inquiry.model_validate_json(response.content)
    except ValidationError:
        return BrokerReply("retry", inquiry_id=known_id, error="malformed_answer")
    inquiry_id, status = body.inquiry_id, body.status
    if status not in FINAL_STATUSES:
        return BrokerReply("pending", inquiry_id=inquiry_id, status=status)
    result = body.result
    signature = body.signature
    if result is not None and not isinstance(result, dict):
        return BrokerReply("retry", inquiry_id=inquiry_id, error="malformed_answer")
    return BrokerReply(
        "final",
        inquiry_id=inquiry_id,
        status=status,
        result=result,
        signature=signature if isinstance(signature, str) else None,
        error=None if status in ("answered", "not_found") else status,
    )


def purpose_not_yet_known(reason: str) -> bool:
    """Whether a refusal says only that the broker has not heard of the request yet."""
    if reason in PURPOSE_NOT_YET_KNOWN:
        return True
    # the broker's words for it may still change while purpose binding is being built:
    # "<purpose|request|tracking code>... unknown" is read the same way
    return reason.endswith("_unknown") and reason.startswith(("purpose", "request", "tracking"))


def _problem(response: ServiceResponse) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _retry_after(response: ServiceResponse) -> float | None:
    value = response.header("retry-after") or ""
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None  # an HTTP date: the backoff is long enough
