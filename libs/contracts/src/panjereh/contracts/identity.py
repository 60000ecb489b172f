"""Events identity publishes. No personal data: only the opaque citizen id."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from panjereh.contracts import topics
from panjereh.contracts.events import Event


class CitizenRegistered(Event):
    """A citizen signed in for the first time."""

    event_type: ClassVar[str] = "identity.citizen.registered.v1"
    topic: ClassVar[str] = topics.IDENTITY_CITIZEN_REGISTERED

    citizen_id: str = Field(min_length=1)
