"""Typed dependencies of the requests service's endpoints."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request

from panjereh.common.auth import (
    CurrentPrincipal,
    InsufficientScope,
    Principal,
    require_role_with_claim,
)
from panjereh.common.errors import Text
from panjereh.contracts import access
from panjereh.requests.config import Settings
from panjereh.requests.errors import NotAgencyStaff
from panjereh.requests.keys import DocumentKeys, KeyRing
from panjereh.requests.rules import RuleEvaluator
from panjereh.requests.service.agency import AgencyStaff
from panjereh.requests.service.reads import Reader

#: OAuth scope of an agency's back-office system that decides its agency's requests
DECIDE_SCOPE = "requests:work"


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _now() -> datetime:
    return datetime.now(UTC)


async def _keys(request: Request) -> DocumentKeys:
    ring: KeyRing = request.app.state.key_ring
    return await ring.get()


async def _evaluator(request: Request) -> RuleEvaluator:
    evaluator: RuleEvaluator = request.app.state.evaluator
    return evaluator


async def _wake(request: Request) -> Callable[[], None]:
    """What to wake once a new request is committed: the outbox relay (so the broker learns
    the request's purpose at once) and, where this replica runs it, the orchestration."""
    state = request.app.state
    targets = [getattr(state, name, None) for name in ("outbox_relay", "orchestrator")]

    def wake() -> None:
        for target in targets:
            if target is not None:
                target.wake()

    return wake


def _client_scope(principal: Principal) -> None:
    """A machine client reads or decides requests only with ``requests:work`` (403
    ``insufficient_scope`` otherwise), whatever else its token carries."""
    if access.is_client(principal) and not principal.has_scope(DECIDE_SCOPE):
        raise InsufficientScope(DECIDE_SCOPE)


async def _agency_staff(principal: CurrentPrincipal) -> AgencyStaff:
    """Officers of an agency, or its back-office system with ``requests:work``; else 403."""
    _client_scope(principal)
    officer_of = principal.qualifiers_of(access.OFFICER)
    agency = access.agency_of(principal)
    system_of = (
        frozenset({agency})
        if agency and access.is_client(principal) and principal.has_scope(DECIDE_SCOPE)
        else frozenset()
    )
    if not officer_of and not system_of:
        raise NotAgencyStaff
    return AgencyStaff(subject=principal.subject, officer_of=officer_of, system_of=system_of)


async def _reader(principal: CurrentPrincipal) -> Reader:
    """A citizen reads their own requests; officers and agency systems their agencies'."""
    _client_scope(principal)
    agencies = set(principal.qualifiers_of(access.OFFICER))
    agency = access.agency_of(principal)
    if agency and access.is_client(principal) and principal.has_scope(DECIDE_SCOPE):
        agencies.add(agency)
    citizen = principal.subject if access.is_citizen(principal) else None
    return Reader(
        citizen_id=citizen,
        agencies=frozenset(agencies),
        auditor=principal.has_role(access.PLATFORM_ADMIN),
    )


AppSettings = Annotated[Settings, Depends(_settings)]
AppKeys = Annotated[DocumentKeys, Depends(_keys)]
AppEvaluator = Annotated[RuleEvaluator, Depends(_evaluator)]
WakeWorkers = Annotated[Callable[[], None], Depends(_wake)]
CurrentAgencyStaff = Annotated[AgencyStaff, Depends(_agency_staff)]
Now = Annotated[datetime, Depends(_now)]
CurrentReader = Annotated[Reader, Depends(_reader)]
CurrentCitizen = Annotated[
    Principal,
    Depends(
        require_role_with_claim(
            access.CITIZEN,
            access.NATIONAL_CODE_CLAIM,
            refusal=Text("این کار ویژه شهروندان است", "Only citizens may do this"),
        )
    ),
]
