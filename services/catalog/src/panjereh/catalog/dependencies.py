"""Typed dependencies of the catalog's endpoints.

The unit of work (``DbSession``), paging (``PageParams``) and the ``Idempotency-Key`` header
come from the kernel; what is here is the catalog's own.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request

from panjereh.catalog import cpsv
from panjereh.catalog.config import Settings
from panjereh.common.auth import CurrentPrincipal, InsufficientScope, Principal, require_that
from panjereh.common.errors import Text
from panjereh.common.negotiation import preferred
from panjereh.contracts import access

#: OAuth scope a machine client needs to report an agency's activity over the API
ACTIVITY_SCOPE = "agencies:activity"

JSON = "application/json"


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


CatalogSettings = Annotated[Settings, Depends(_settings)]


def connected_within(settings: Settings) -> timedelta:
    return timedelta(minutes=settings.agency_connected_window_minutes)


def wants_jsonld(request: Request) -> bool:
    """True when the client prefers ``application/ld+json`` to ``application/json``."""
    accept = request.headers.get("accept")
    return preferred(accept, (JSON, cpsv.MEDIA_TYPE), default=JSON) == cpsv.MEDIA_TYPE


#: A person (staff, by the role the use case checks): machine clients never edit the catalog.
CurrentPerson = Annotated[
    Principal,
    Depends(
        require_that(
            lambda principal: not access.is_client(principal),
            refusal=Text("این کار ویژه کارکنان است", "Only staff may do this"),
        )
    ),
]


async def _activity_reporter(principal: CurrentPrincipal) -> Principal:
    if access.is_client(principal) and not principal.has_scope(ACTIVITY_SCOPE):
        raise InsufficientScope(ACTIVITY_SCOPE)
    return principal


#: Who reports an agency's activity: platform admins, or a client (the broker's) with
#: ``agencies:activity``; the use case checks the role.
ActivityReporter = Annotated[Principal, Depends(_activity_reporter)]
