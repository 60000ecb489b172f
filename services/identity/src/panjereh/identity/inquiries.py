"""Identity's client of the inquiry broker: mobile ownership (Shahkar-style) and civil registry.

Identity asks like any other service, over the broker's public API with its own
``service:identity`` token, and with a purpose the broker audits. No citizen's request stands
behind these checks, so each one names a platform purpose the broker reserves to identity:
:data:`LOGIN_PURPOSE` for the mobile-ownership check before a code is sent,
:data:`REGISTRATION_PURPOSE` for the civil-registry read at a first login. The broker's grants
are bound to those names: neither check is allowed under the other's. When the broker cannot
answer within the timeout, callers fail closed: no SMS is sent on an unverified pair.

The HTTP client is the kernel's ``ServiceClient`` (made in the service's setup): the broker is a
service of the platform, reached over its own HTTP/1.1 pool, and asking while a database
transaction is open raises ``NetworkCallInTransaction`` instead of holding a pooled
connection, and perhaps row locks, for as long as an agency takes to answer.

Every login asks twice, so each call does only what varies: the target (with ``?wait=``) is
built once, the ``Authorization`` header is built again only when the token changes, and
the answer is read from the response's bytes by one pydantic validation. An answer that is
not the broker's JSON fails closed like any other unusable answer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from pydantic import BaseModel, ValidationError

from panjereh.common.http import ServiceClient
from panjereh.common.upstream import UpstreamError

logger = logging.getLogger(__name__)

MOBILE_OWNERSHIP = "mobile-registry.ownership"
CIVIL_REGISTRY_PERSON = "civil-registry.person"
#: The platform purposes (``purpose.service_code``) identity's inquiries are asked under.
LOGIN_PURPOSE = "identity.login"
REGISTRATION_PURPOSE = "identity.registration"
LEGAL_BASIS = (
    "Electronic Government Regulation (آیین‌نامه دولت الکترونیک): identification of the "
    "citizen before electronic services"
)

TokenProvider = Callable[[], Awaitable[str]]
#: How long the broker holds a call for the agency's answer (``?wait=``).
WAIT_SECONDS = "5"


class InquiryUnavailable(Exception):
    """The broker (or the agency behind it) did not give a usable answer in time."""


@dataclass(frozen=True)
class PersonProfile:
    first_name: str
    last_name: str
    birth_date: date | None
    alive: bool


class _BrokerAnswer(BaseModel):
    """What identity reads of the broker's inquiry (other fields are ignored)."""

    status: str
    result: Any = None


class InquiryClient:
    """Asks the broker; ``http`` is a ``ServiceClient`` of it, ``token`` mints identity's own
    token."""

    def __init__(self, http: ServiceClient, token: TokenProvider) -> None:
        self._http = http
        self._target = f"/api/v1/inquiries?wait={WAIT_SECONDS}"
        self._token = token
        self._headers: tuple[str, dict[str, str]] = ("", {})

    async def _authorization(self) -> dict[str, str]:
        """The ``Authorization`` header of the current token (built again when it changes)."""
        token = await self._token()
        if token != self._headers[0]:
            self._headers = (token, {"Authorization": f"Bearer {token}"})
        return self._headers[1]

    async def mobile_belongs_to(self, *, national_code: str, mobile: str, reference: str) -> bool:
        """Whether the mobile line is registered to this national code."""
        answer = await self._ask(
            MOBILE_OWNERSHIP,
            subject=national_code,
            params={"mobile": mobile},
            purpose=LOGIN_PURPOSE,
            reference=reference,
        )
        if answer is None:
            return False
        owned = answer.get("owned", answer.get("match"))
        if not isinstance(owned, bool):
            logger.warning("ownership answer without a boolean", extra={"type": MOBILE_OWNERSHIP})
            raise InquiryUnavailable(MOBILE_OWNERSHIP)
        return owned

    async def person(self, *, national_code: str, reference: str) -> PersonProfile | None:
        """The civil registry's record, or ``None`` when it has none."""
        answer = await self._ask(
            CIVIL_REGISTRY_PERSON,
            subject=national_code,
            params={},
            purpose=REGISTRATION_PURPOSE,
            reference=reference,
        )
        if answer is None:
            return None
        try:
            birth = answer.get("birth_date")
            alive = answer.get("alive", not answer.get("deceased", False))
            return PersonProfile(
                first_name=str(answer["first_name"]),
                last_name=str(answer["last_name"]),
                birth_date=date.fromisoformat(str(birth)) if birth else None,
                alive=bool(alive),
            )
        except (KeyError, ValueError) as exc:
            logger.warning("civil registry answer is malformed", extra={"error": repr(exc)})
            raise InquiryUnavailable(CIVIL_REGISTRY_PERSON) from exc

    async def _ask(
        self,
        inquiry_type: str,
        *,
        subject: str,
        params: dict[str, Any],
        purpose: str,
        reference: str,
    ) -> dict[str, Any] | None:
        body = {
            "type": inquiry_type,
            "subject": subject,
            "params": params,
            "purpose": {
                "service_code": purpose,
                "tracking_code": reference,
                "legal_basis": LEGAL_BASIS,
            },
        }
        try:
            response = await self._http.post_json(
                self._target, body, headers=await self._authorization()
            )
        except UpstreamError as exc:
            logger.warning(
                "inquiry broker unreachable", extra={"type": inquiry_type, "error": repr(exc)}
            )
            raise InquiryUnavailable(inquiry_type) from exc
        if response.status_code != 200:
            # 202 (still pending after the wait), 403 (policy), 5xx: no answer we can act on
            logger.warning(
                "inquiry not answered",
                extra={"type": inquiry_type, "status": response.status_code},
            )
            raise InquiryUnavailable(inquiry_type)
        try:
            payload = _BrokerAnswer.model_validate_json(response.content)
        except ValidationError as exc:
            logger.warning(
                "inquiry answer is malformed",
                extra={"type": inquiry_type, "error": f"{exc.error_count()} errors"},
            )
            raise InquiryUnavailable(inquiry_type) from exc
        if payload.status == "not_found":
            return None  # the registry has no record: an answer, not an outage
        if payload.status != "answered":
            # pending, failed, timed_out: nobody vouched for anything
            raise InquiryUnavailable(inquiry_type)
        result = payload.result
        if result is None:
            return None
        if not isinstance(result, dict):
            raise InquiryUnavailable(inquiry_type)
        return result
