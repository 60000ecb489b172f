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
from panjereh.common.negotiation import preferred

JSON = "application/json"


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


CatalogSettings = Annotated[Settings, Depends(_settings)]


def connected_within(settings: Settings) -> timedelta:
    return timedelta(minutes=settings.agency_connected_window_minutes)


def wants_jsonld(request: Request) -> bool:
    """True when the client prefers ``application/ld+json`` to ``application/json``."""
    accept = request.headers.get("accept")
    return preferred(accept, (JSON, cpsv.MEDIA_TYPE), default=JSON) == cpsv.MEDIA_TYPE
