"""Every contract type, for the schema snapshot, the AsyncAPI document and consumers' lookups."""

from __future__ import annotations

from panjereh.contracts.catalog import ServicePublished, ServiceRetired
from panjereh.contracts.events import Event
from panjereh.contracts.identity import CitizenRegistered
from panjereh.contracts.inquiry import (
    AgencyActive,
    AuditCheckpointed,
    InquiryAnswered,
    InquiryReply,
    InquiryToAgency,
)
from panjereh.contracts.requests import (
    AgencyWorkItem,
    RequestDecided,
    RequestEscalated,
    RequestStatusChanged,
    RequestSubmitted,
)

ALL_EVENTS: tuple[type[Event], ...] = (
    ServicePublished,
    ServiceRetired,
    CitizenRegistered,
    RequestSubmitted,
    RequestStatusChanged,
    RequestDecided,
    AgencyWorkItem,
    RequestEscalated,
    InquiryToAgency,
    InquiryReply,
    InquiryAnswered,
    AgencyActive,
    AuditCheckpointed,
)

#: Who sends each contract: used as the CloudEvents ``source`` documentation and in AsyncAPI.
PRODUCERS: dict[type[Event], str] = {
    ServicePublished: "catalog",
    ServiceRetired: "catalog",
    CitizenRegistered: "identity",
    RequestSubmitted: "requests",
    RequestStatusChanged: "requests",
    RequestDecided: "requests",
    AgencyWorkItem: "requests",
    RequestEscalated: "requests",
    InquiryToAgency: "inquiry-broker",
    InquiryReply: "agency",
    InquiryAnswered: "inquiry-broker",
    AgencyActive: "inquiry-broker",
    AuditCheckpointed: "inquiry-broker",
}


def by_type(event_type: str) -> type[Event]:
    """The contract class of a CloudEvents ``type``; ``KeyError`` when unknown."""
    return {event.event_type: event for event in ALL_EVENTS}[event_type]
