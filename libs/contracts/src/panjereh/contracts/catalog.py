"""Events the catalog publishes."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from panjereh.contracts import topics
from panjereh.contracts.events import Event


class ServicePublished(Event):
    """A new version of a service card was approved and published.

    ``card`` is the full published card as JSON; its typed model is owned by the catalog and
    will be tightened here additively.
    """

    event_type: ClassVar[str] = "catalog.service.published.v1"
    topic: ClassVar[str] = topics.CATALOG_SERVICE_PUBLISHED

    code: str = Field(min_length=1)
    version: int = Field(ge=1)
    card: dict[str, Any]


class ServiceRetired(Event):
    """A service card was retired: no new requests may be submitted for it."""

    event_type: ClassVar[str] = "catalog.service.retired.v1"
    topic: ClassVar[str] = topics.CATALOG_SERVICE_RETIRED

    code: str = Field(min_length=1)
    version: int = Field(ge=1)
