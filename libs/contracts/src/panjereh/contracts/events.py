"""The base of every event and agency-facing message.

Producers validate strictly (``extra="forbid"``) so a typo never leaves a service; consumers
parse with :meth:`Event.parse_data`, which ignores unknown fields, so additive changes on the
producing side never break a consumer. A breaking change is a new ``.v2`` type, never an edit.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict


class Event(BaseModel):
    """A past-tense fact (or an agency-facing message) carried as CloudEvents ``data``.

    ``event_type`` is ``<producer>.<aggregate>.<event>.v1``. ``topic`` is the Kafka topic; a
    templated topic (``agency.{agency}.inquiries``) must be resolved by the producer and passed
    to ``outbox.add(..., topic=...)``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    event_type: ClassVar[str]
    topic: ClassVar[str]

    @classmethod
    def parse_data(cls, data: Any) -> Self:
        """Parse a received payload, ignoring fields this consumer does not know yet."""
        if not isinstance(data, dict):
            msg = f"{cls.__name__} payload must be a JSON object"
            raise TypeError(msg)
        known = {
            name
            for field_name, field in cls.model_fields.items()
            for name in (field_name, field.alias)
            if name
        }
        return cls.model_validate({k: v for k, v in data.items() if k in known})
