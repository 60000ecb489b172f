"""API shapes of the catalog: service cards, agencies, search results, statistics.

Names follow the official Iranian card (see the domain notes) and, where the concept exists
there, CPSV-AP 3.2 (``processing_time``, ``output``, ``prerequisites``, ``competent
authority``). Amounts are integers in rials, durations ISO-8601, channels an enum with a URL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    StringConstraints,
    field_validator,
)

from panjereh.common.fields import FieldProblem
from panjereh.common.pagination import Page

CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{1,63}$"
SLUG_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
INQUIRY_TYPE_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*\.[a-z0-9]+(?:-[a-z0-9]+)*$"
_ISO_DURATION = re.compile(
    r"^P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$"
)

Code = Annotated[str, StringConstraints(pattern=CODE_PATTERN)]
Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN, max_length=64)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
LongText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20000)]


def _iso_duration(value: str) -> str:
    if not _ISO_DURATION.match(value):
        raise FieldProblem(
            "iso_duration",
            fa="باید مدت‌زمانی به قالب ISO-8601 باشد، مانند P3D یا PT2H",
            en="must be an ISO-8601 duration such as P3D or PT2H",
        )
    return value


IsoDuration = Annotated[str, AfterValidator(_iso_duration)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Text(Strict):
    """Human-facing text; Persian is required, English optional."""

    fa: ShortText
    en: ShortText | None = None


class LongLocalText(Strict):
    fa: LongText
    en: LongText | None = None


class Audience(StrEnum):
    CITIZEN = "citizen"  # G2C
    BUSINESS = "business"  # G2B
    GOVERNMENT = "government"  # G2G


class ServiceNature(StrEnum):
    SOVEREIGN = "sovereign"  # حاکمیتی
    OPERATIONAL = "operational"  # تصدی‌گری


class ServiceLevel(StrEnum):
    NATIONAL = "national"
    REGIONAL = "regional"
    PROVINCIAL = "provincial"
    COUNTY = "county"
    VILLAGE = "village"


class Trigger(StrEnum):
    """How a service starts; the last three are the basis of proactive services."""

    REQUEST = "request"
    DATE = "date"
    LIFE_EVENT = "life-event"
    AGENCY_DETECTION = "agency-detection"
    OTHER = "other"


class LifeEvent(StrEnum):
    """The official card form's fixed list of life events."""

    BIRTH = "birth"
    EDUCATION = "education"
    HEALTH = "health"
    TAXES = "taxes"
    BUSINESS = "business"
    SOCIAL_SECURITY = "social-security"
    PROPERTY_REGISTRATION = "property-registration"
    UTILITIES = "utilities"
    INSURANCE = "insurance"
    MARRIAGE = "marriage"
    RETIREMENT = "retirement"
    DOCUMENTS = "documents-and-certificates"
    DEATH = "death"
    OTHER = "other"


class ChannelType(StrEnum):
    WEB = "web"
    MOBILE = "mobile"
    SMS = "sms"
    PHONE = "phone"
    KIOSK = "kiosk"
    COUNTER = "counter"  # پیشخوان خدمات دولت
    AGENCY_OFFICE = "agency-office"
    IN_PERSON = "in-person"
    OTHER = "other"


#: Channels through which a citizen completes the service without going anywhere.
ONLINE_CHANNELS = frozenset({ChannelType.WEB, ChannelType.MOBILE})


class Maturity(IntEnum):
    INFORMATIONAL = 0
    DOWNLOADABLE_FORMS = 1
    INTERACTIVE = 2
    TRANSACTIONAL = 3
    FULLY_ELECTRONIC = 4
    SMART = 5


class DecisionMode(StrEnum):
    AUTOMATIC = "automatic"
    AGENCY = "agency"


class Outcome(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class Otherwise(StrEnum):
    REJECT = "reject"
    AGENCY = "agency"


class InquiryMode(StrEnum):
    ONLINE = "online"
    BATCH = "batch"
    LETTER = "letter"


class Channel(Strict):
    type: ChannelType
    url: HttpUrl | None = None
    description: Text | None = None


class Location(Strict):
    name: Text
    address: Text | None = None
    province: ShortText | None = None
    url: HttpUrl | None = None


class Fee(Strict):
    title: Text
    amount_rials: int = Field(ge=0, le=10**15)
    bank_account: ShortText | None = None
    legal_basis: ShortText | None = None


class LegalResource(Strict):
    title: Text
    reference: ShortText | None = None
    url: HttpUrl | None = None


class RequiredDocument(Strict):
    name: Text
    note: Text | None = None


class InquiryUse(Strict):
    """An inquiry the service makes instead of asking the citizen for a document."""

    type: Annotated[str, StringConstraints(pattern=INQUIRY_TYPE_PATTERN, max_length=100)]
    provider_agency: Code | None = None
    data_items: list[ShortText] = Field(default_factory=list, max_length=50)
    mode: InquiryMode = InquiryMode.ONLINE
    purpose: Text | None = None


class DecisionRule(Strict):
    id: Slug
    when: Annotated[str, StringConstraints(min_length=1, max_length=4000)]
    outcome: Outcome
    reason: Text


class Decision(Strict):
    mode: DecisionMode
    rules: list[DecisionRule] = Field(default_factory=list, max_length=100)
    otherwise: Otherwise = Otherwise.AGENCY


class ElectronicStages(Strict):
    """Per stage of the service, whether it is done electronically (the form's own measure)."""

    information: bool = False
    application: bool = False
    processing: bool = False
    delivery: bool = False

    @property
    def all_electronic(self) -> bool:
        return self.information and self.application and self.processing and self.delivery


class Frequency(Strict):
    times: int = Field(ge=1)
    per: Annotated[str, StringConstraints(pattern=r"^(lifetime|year|month|day)$")]


class Faq(Strict):
    question: Text
    answer: LongLocalText


class FilledBy(Strict):
    """Who filled the card in (staff contact; not shown publicly nor sent in events)."""

    name: ShortText
    unit: ShortText | None = None
    phone: ShortText | None = None
    email: ShortText | None = None


class CardContent(Strict):
    """The editable content of a service card (everything but code, agency and workflow)."""

    title: Text
    process_title: Text | None = None
    description: LongLocalText
    category: Slug
    parent_service: Code | None = None
    life_events: list[LifeEvent] = Field(default_factory=list, max_length=14)
    audience: list[Audience] = Field(min_length=1, max_length=3)
    recipients: Text | None = None
    nature: ServiceNature = ServiceNature.SOVEREIGN
    service_levels: list[ServiceLevel] = Field(
        default_factory=lambda: [ServiceLevel.NATIONAL], min_length=1, max_length=5
    )
    trigger: Trigger = Trigger.REQUEST
    keywords: list[ShortText] = Field(default_factory=list, max_length=50)
    legal_basis: list[LegalResource] = Field(default_factory=list, max_length=50)
    eligibility: LongLocalText | None = None
    channels: list[Channel] = Field(min_length=1, max_length=20)
    locations: list[Location] = Field(default_factory=list, max_length=100)
    fees: list[Fee] = Field(default_factory=list, max_length=20)
    sla_days: int = Field(ge=0, le=3650)
    processing_time: IsoDuration | None = None
    service_hours: Text | None = None
    frequency: Frequency | None = None
    in_person_visits: int = Field(ge=0, le=50)
    electronic_stages: ElectronicStages = Field(default_factory=ElectronicStages)
    documents_required: list[RequiredDocument] = Field(default_factory=list, max_length=50)
    inquiries: list[InquiryUse] = Field(default_factory=list, max_length=50)
    maturity: Maturity
    form_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    decision: Decision
    output: Text | None = None
    prerequisites: list[Code] = Field(default_factory=list, max_length=20)
    steps: list[Text] = Field(default_factory=list, max_length=50)
    faq: list[Faq] = Field(default_factory=list, max_length=50)
    complaint_route: Text | None = None
    yearly_volume: int | None = Field(default=None, ge=0)
    filled_by: FilledBy | None = None

    @field_validator("life_events", "audience", "service_levels")
    @classmethod
    def _no_duplicates(cls, values: list[Any]) -> list[Any]:
        if len(set(values)) != len(values):
            raise FieldProblem(
                "duplicate_value", fa="نباید مقداری تکرار شود", en="must not repeat a value"
            )
        return values


class CardCreate(CardContent):
    """A new card; it starts as a draft of ``agency``."""

    code: Code
    agency: Code


class CardUpdate(CardContent):
    """The whole editable content of the draft (PUT replaces it)."""


class Reason(Strict):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=2000)]


class PublicCardContent(CardContent):
    """Card content as published: staff contact details are left out."""

    filled_by: None = Field(default=None, exclude=True)


class CardRead(PublicCardContent):
    """A published version of a card: what citizens, agencies and the requests service use."""

    code: str
    agency: str
    version: int
    status: str
    approved_by: str
    approving_organisation: str
    approved_at: datetime


class DraftRead(CardContent):
    code: str
    agency: str
    state: str
    card_status: str
    latest_version: int
    rejection_reason: str | None
    updated_at: datetime
    updated_by: str
    submitted_at: datetime | None


class DraftSummary(BaseModel):
    """A draft in the catalog authority's queue."""

    code: str
    agency: str
    title: Text
    state: str
    card_status: str
    latest_version: int
    submitted_at: datetime | None
    updated_at: datetime


class VersionSummary(BaseModel):
    version: int
    title: Text
    approved_by: str
    approving_organisation: str
    approved_at: datetime


class TransitionRead(BaseModel):
    action: str
    from_state: str | None
    to_state: str
    version: int | None
    actor: str
    reason: str | None
    at: datetime


class CardSummary(BaseModel):
    code: str
    title: Text
    agency: str
    category: str
    life_events: list[str]
    channels: list[str]
    audience: list[str]
    maturity: int
    version: int


class FacetCount(BaseModel):
    value: str
    count: int
    #: the value's name, where the catalog names it (categories); front ends name the rest
    label: Text | None = None


class Facets(BaseModel):
    agency: list[FacetCount]
    category: list[FacetCount]
    life_event: list[FacetCount]
    channel: list[FacetCount]
    maturity: list[FacetCount]
    audience: list[FacetCount]


@dataclass(frozen=True)
class SearchFilters:
    """The facets a search is narrowed to (each ``None`` when not asked for)."""

    agency: str | None = None
    category: str | None = None
    life_event: str | None = None
    channel: str | None = None
    maturity: int | None = None
    audience: str | None = None


class SearchResults(Page[CardSummary]):
    facets: Facets
    #: ``fulltext`` when words matched, ``fuzzy`` when only the typo-tolerant fallback did
    match: str | None = None


class AgencyCreate(Strict):
    code: Code
    name: Text
    kind: Annotated[
        str,
        StringConstraints(
            pattern=r"^(ministry|organisation|company|council|"
            r"judiciary|municipality|other)$"
        ),
    ]
    parent: Code | None = None
    spatial: ServiceLevel = ServiceLevel.NATIONAL
    contact: dict[str, str] = Field(default_factory=dict)


class AgencyRead(BaseModel):
    code: str
    name: Text
    kind: str
    parent: str | None
    spatial: str
    contact: dict[str, str]
    last_seen_at: datetime | None
    connected: bool


class AgencyActivity(Strict):
    seen_at: datetime | None = None


class Stats(BaseModel):
    services_total: int
    by_maturity: dict[str, int]
    electronic_share: float
    smart_share: float
    once_only_share: float
    agencies_total: int
    agencies_connected_share: float
