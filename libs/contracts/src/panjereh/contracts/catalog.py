"""Events the catalog publishes, and the published service card they carry.

:class:`PublishedCard` is the card exactly as ``catalog.service.published.v1`` puts it on the
wire: the catalog's public card (``GET /api/v1/catalog/services/{code}``), without the staff
contact details. It is tolerant where a consumer must be (unknown fields are ignored, nested
ones too) and typed where a consumer acts on the value: the decision a request is decided by.

Vocabularies the catalog may grow (channel types, life events, service levels, triggers,
inquiry modes) are plain strings here, so a new value reaches old consumers as data rather
than as a rejected event. Fields that may be missing on the wire default to what the catalog
means by their absence. A new field is added here as optional; a breaking change is ``.v2``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from panjereh.contracts import topics
from panjereh.contracts.events import Event


class CardModel(BaseModel):
    """Base of the card's parts: consumers ignore fields added after they were written."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class CardText(CardModel):
    """Human-facing text: Persian always, English when the card has it."""

    fa: str
    en: str | None = None


class CardChannel(CardModel):
    """Where the service is delivered (``web``, ``mobile``, ``counter``, ``in-person`` ...)."""

    type: str
    url: str | None = None
    description: CardText | None = None


class CardLocation(CardModel):
    """Where to go when the service is not fully electronic."""

    name: CardText
    address: CardText | None = None
    province: str | None = None
    url: str | None = None


class CardFee(CardModel):
    title: CardText
    amount_rials: int = Field(ge=0)
    bank_account: str | None = None
    legal_basis: str | None = None


class CardLegalResource(CardModel):
    title: CardText
    reference: str | None = None
    url: str | None = None


class CardRequiredDocument(CardModel):
    """A document the citizen must still bring (smart cards have none)."""

    name: CardText
    note: CardText | None = None


class CardInquiry(CardModel):
    """An inquiry the service makes instead of asking the citizen for a document."""

    type: str = Field(description="an inquiry type of the broker's registry: <provider>.<subject>")
    provider_agency: str | None = None
    data_items: list[str] = Field(default_factory=list)
    mode: str = Field(default="online", description="online, batch or letter")
    purpose: CardText | None = None


class CardDecisionRule(CardModel):
    """One rule: the first rule whose CEL ``when`` holds decides the request."""

    id: str
    when: str = Field(description="CEL over inputs, inquiries, citizen and now")
    outcome: Literal["approve", "reject"]
    reason: CardText


class CardDecision(CardModel):
    """How a request is decided: by the ordered ``rules``, else ``otherwise``."""

    mode: Literal["automatic", "agency"]
    rules: list[CardDecisionRule] = Field(default_factory=list)
    otherwise: Literal["reject", "agency"] = Field(
        default="agency",
        description="when no rule matches: reject, or hand the request to the agency's officers",
    )


class CardElectronicStages(CardModel):
    """Per stage of the service, whether it is done electronically."""

    information: bool = False
    application: bool = False
    processing: bool = False
    delivery: bool = False


class CardFrequency(CardModel):
    """How often one person may use the service: ``times`` per ``lifetime|year|month|day``."""

    times: int = Field(ge=1)
    per: str


class CardFaq(CardModel):
    question: CardText
    answer: CardText


class PublishedCard(CardModel):
    """A published version of a service card, as the catalog announces it."""

    code: str = Field(min_length=1)
    agency: str = Field(min_length=1, description="the code of the agency that owns the card")
    version: int = Field(ge=1)
    status: str = Field(
        description="published when announced (later reads may say superseded or retired)"
    )
    approved_by: str
    approving_organisation: str
    approved_at: datetime

    title: CardText
    process_title: CardText | None = None
    description: CardText
    category: str
    parent_service: str | None = None
    life_events: list[str] = Field(default_factory=list)
    audience: list[str] = Field(description="citizen, business and/or government")
    recipients: CardText | None = None
    nature: str = Field(default="sovereign", description="sovereign or operational")
    service_levels: list[str] = Field(default_factory=lambda: ["national"])
    trigger: str = Field(
        default="request",
        description="how the service starts: request, date, life-event, agency-detection ...",
    )
    keywords: list[str] = Field(default_factory=list)
    legal_basis: list[CardLegalResource] = Field(default_factory=list)
    eligibility: CardText | None = None
    channels: list[CardChannel]
    locations: list[CardLocation] = Field(default_factory=list)
    fees: list[CardFee] = Field(default_factory=list)
    sla_days: int = Field(ge=0)
    processing_time: str | None = Field(default=None, description="ISO-8601 duration (P3D)")
    service_hours: CardText | None = None
    frequency: CardFrequency | None = None
    in_person_visits: int = Field(ge=0)
    electronic_stages: CardElectronicStages = Field(default_factory=CardElectronicStages)
    documents_required: list[CardRequiredDocument] = Field(default_factory=list)
    inquiries: list[CardInquiry] = Field(default_factory=list)
    maturity: int = Field(
        ge=0, le=5, description="0 informational ... 4 fully electronic, 5 smart (rules decide)"
    )
    form_schema: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object"},
        description="JSON Schema (2020-12) of the request's inputs",
    )
    decision: CardDecision
    output: CardText | None = None
    prerequisites: list[str] = Field(
        default_factory=list, description="codes of the services that must come first"
    )
    steps: list[CardText] = Field(default_factory=list)
    faq: list[CardFaq] = Field(default_factory=list)
    complaint_route: CardText | None = None
    yearly_volume: int | None = Field(default=None, ge=0)


class ServicePublished(Event):
    """A new version of a service card was approved and published (the full public card)."""

    event_type: ClassVar[str] = "catalog.service.published.v1"
    topic: ClassVar[str] = topics.CATALOG_SERVICE_PUBLISHED

    code: str = Field(min_length=1)
    version: int = Field(ge=1)
    card: PublishedCard


class ServiceRetired(Event):
    """A service card was retired: no new requests may be submitted for it."""

    event_type: ClassVar[str] = "catalog.service.retired.v1"
    topic: ClassVar[str] = topics.CATALOG_SERVICE_RETIRED

    code: str = Field(min_length=1)
    version: int = Field(ge=1)
