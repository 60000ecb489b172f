"""The CloudEvents 1.0 envelope (structured JSON mode) every Kafka record carries.

The record value is the envelope; the record key is the aggregate id (so one aggregate's
events land on one partition, in order); W3C ``traceparent``/``tracestate`` travel in the
record headers, never in the body, so the payload stays a pure business fact and any Kafka
client can continue the trace. Only the OpenTelemetry *API* is used here: without an SDK the
propagator is a no-op and nothing breaks.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from opentelemetry import propagate
from opentelemetry.context import Context
from pydantic import BaseModel, ConfigDict, Field

from panjereh.contracts.events import Event

#: Kafka record headers are ``(name, bytes)`` pairs.
KafkaHeaders = Sequence[tuple[str, bytes]]

TRACE_HEADERS = ("traceparent", "tracestate")


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 event; unknown attributes (extensions) are ignored when read."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    time: datetime
    subject: str | None = None
    datacontenttype: str = "application/json"
    data: Any = None

    @classmethod
    def from_event(
        cls, event: Event, *, source: str | None = None, subject: str | None = None
    ) -> CloudEvent:
        """Wrap a contract event: a fresh id, the current UTC time, ``data`` by alias.

        Built without validation: every attribute is made here from a validated event or is
        a plain string, so none could fail (an empty ``source`` takes the default), and every
        event the platform writes would pay for it.
        """
        event_type = type(event).event_type
        return cls.model_construct(
            id=str(uuid.uuid4()),
            source=source or default_source(event_type),
            type=event_type,
            time=datetime.now(UTC),
            subject=subject,
            data=event.model_dump(mode="json", by_alias=True),
        )

    def to_json(self) -> dict[str, Any]:
        """The structured-mode JSON object (``None`` optional attributes left out)."""
        return self.model_dump(mode="json", exclude_none=True)

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json(), ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, value: bytes | None) -> CloudEvent:
        """Parse a record value; raises ``ValueError`` (pydantic) on anything malformed."""
        if value is None:
            msg = "record has no value (tombstone); not a CloudEvent"
            raise ValueError(msg)
        return cls.model_validate_json(value)


def default_source(event_type: str) -> str:
    """``/panjereh/<producer>`` from a ``<producer>.<aggregate>.<event>.v1`` type."""
    return f"/panjereh/{event_type.split('.', 1)[0]}"


def inject_trace_context() -> dict[str, str]:
    """The current trace context as W3C headers, through the global propagator.

    Called when the event is added to the outbox, so the context saved is that of the
    operation that produced the fact (the HTTP request), not of the relay that publishes it.
    """
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return {name: value for name, value in carrier.items() if name in TRACE_HEADERS}


def kafka_headers(headers: Mapping[str, str]) -> list[tuple[str, bytes]]:
    return [(name, value.encode()) for name, value in headers.items()]


def extract_trace_context(headers: KafkaHeaders | None) -> Context:
    """The producer's trace context from record headers (an empty context when absent)."""
    carrier = {
        name: value.decode(errors="replace")
        for name, value in headers or ()
        if name in TRACE_HEADERS and value is not None
    }
    return propagate.extract(carrier)
