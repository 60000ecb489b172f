"""Typed dependencies of the catalog's endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.catalog.config import Settings
from panjereh.common.db import Database

MAX_PAGE_SIZE = 100


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed when the endpoint returns, else rolled back."""
    database: Database = request.app.state.database
    async with database.transaction() as session:
        yield session


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


# scope="function": the transaction commits before the response is sent, so a client never
# sees a success for a change that then failed to commit
Session = Annotated[AsyncSession, Depends(_session, scope="function")]
CatalogSettings = Annotated[Settings, Depends(_settings)]


@dataclass(frozen=True)
class Paging:
    page: int
    page_size: int


def _paging(
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 20,
) -> Paging:
    return Paging(page=page, page_size=page_size)


PageParams = Annotated[Paging, Depends(_paging)]


def connected_within(settings: Settings) -> timedelta:
    return timedelta(minutes=settings.agency_connected_window_minutes)


def wants_jsonld(request: Request) -> bool:
    """True when the client prefers ``application/ld+json`` to ``application/json``."""
    best, best_q = "application/json", 0.0
    for part in request.headers.get("accept", "").split(","):
        media, _, params = part.strip().partition(";")
        media = media.strip().lower()
        if media not in {"application/ld+json", "application/json"}:
            continue
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > best_q:
            best, best_q = media, quality
    return best == "application/ld+json"
