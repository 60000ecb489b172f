"""HTTP endpoints of the catalog (``/api/v1/catalog``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from pydantic import BeforeValidator
from starlette.responses import JSONResponse, Response

from panjereh.catalog import cpsv, persian
from panjereh.catalog.dependencies import (
    ActivityReporter,
    CatalogSettings,
    CurrentPerson,
    connected_within,
    wants_jsonld,
)
from panjereh.catalog.schemas import (
    CODE_PATTERN,
    AgencyActivity,
    AgencyCreate,
    AgencyRead,
    Audience,
    CardCreate,
    CardRead,
    CardUpdate,
    ChannelType,
    DraftRead,
    DraftSummary,
    LifeEvent,
    Reason,
    SearchFilters,
    SearchResults,
    Stats,
    TransitionRead,
    VersionSummary,
)
from panjereh.catalog.service import agencies, reads, search, stats, workflow
from panjereh.common.dependencies import DbSession, IdempotencyKey
from panjereh.common.pagination import Page, PageParams

router = APIRouter(prefix="/api/v1/catalog", tags=["catalog"])

# codes typed with Persian or Arabic-Indic digits (۱۱۰۳۰۰۰۰۰۰۱) name the same card
ServiceCode = Annotated[str, BeforeValidator(persian.to_ascii_digits), Path(pattern=CODE_PATTERN)]
AgencyCode = Annotated[str, Path(pattern=CODE_PATTERN)]


@router.get("/services", response_model=SearchResults)
async def search_services(
    *,
    session: DbSession,
    paging: PageParams,
    q: Annotated[str | None, Query(max_length=200)] = None,
    agency: Annotated[str | None, Query(pattern=CODE_PATTERN)] = None,
    category: Annotated[str | None, Query(max_length=64)] = None,
    life_event: LifeEvent | None = None,
    channel: ChannelType | None = None,
    maturity: Annotated[int | None, Query(ge=0, le=5)] = None,
    audience: Audience | None = None,
) -> Response:
    """Search and browse published services (Persian-aware), with facets."""
    filters = SearchFilters(
        agency=agency,
        category=category,
        life_event=life_event,
        channel=channel,
        maturity=maturity,
        audience=audience,
    )
    results = await search.search_services(session, q=q, filters=filters, paging=paging)
    # the hot path: serialised once here rather than validated again against response_model
    return Response(results.model_dump_json(), media_type="application/json")


@router.get(
    "/services/{code}",
    response_model=CardRead,
    responses={200: {"content": {cpsv.MEDIA_TYPE: {}}}},
)
async def get_service(request: Request, session: DbSession, code: ServiceCode) -> Response:
    """The latest published card; CPSV-AP 3.2 JSON-LD with ``Accept: application/ld+json``."""
    if wants_jsonld(request):
        document = await reads.get_published_jsonld(session, code=code)
        return JSONResponse(document, media_type=cpsv.MEDIA_TYPE, headers={"Vary": "Accept"})
    card = await reads.get_published(session, code=code)
    return JSONResponse(card.model_dump(mode="json"), headers={"Vary": "Accept"})


@router.get("/services/{code}/versions", response_model=Page[VersionSummary])
async def list_versions(
    session: DbSession, paging: PageParams, code: ServiceCode
) -> Page[VersionSummary]:
    """Version history of a card, newest first, with who approved each and when."""
    return await reads.list_versions(session, code=code, paging=paging)


@router.get("/services/{code}/versions/{version}", response_model=CardRead)
async def get_version(
    session: DbSession, code: ServiceCode, version: Annotated[int, Path(ge=1)]
) -> CardRead:
    """One published version of a card, exactly as approved."""
    return await reads.get_version(session, code=code, version=version)


@router.get("/agencies", response_model=Page[AgencyRead])
async def list_agencies(
    session: DbSession, paging: PageParams, settings: CatalogSettings
) -> Page[AgencyRead]:
    """Agencies with their connection status."""
    return await agencies.list_agencies(
        session, paging=paging, connected_within=connected_within(settings)
    )


@router.get("/agencies/{code}", response_model=AgencyRead)
async def get_agency(session: DbSession, settings: CatalogSettings, code: AgencyCode) -> AgencyRead:
    """One agency with its connection status."""
    return await agencies.get_agency(
        session, code=code, connected_within=connected_within(settings)
    )


@router.get("/stats", response_model=Stats)
async def get_stats(session: DbSession, settings: CatalogSettings) -> Stats:
    """Headline KPIs computed live from the published cards."""
    return await stats.compute_stats(session, connected_within=connected_within(settings))


# --------------------------------------------------------------------------- workflow
@router.post("/services", status_code=201, response_model=DraftRead)
async def create_card(
    session: DbSession,
    principal: CurrentPerson,
    card: CardCreate,
    idempotency_key: IdempotencyKey,
) -> Response:
    """Start a new service card as a draft of your agency (agency admins)."""
    outcome = await workflow.create_card_once(
        session, actor=principal, card=card, idempotency_key=idempotency_key
    )
    headers = {"Location": f"/api/v1/catalog/services/{card.code}/draft", **outcome.headers}
    return JSONResponse(outcome.body, status_code=outcome.status_code, headers=headers)


@router.get("/services/{code}/draft", response_model=DraftRead)
async def get_draft(session: DbSession, principal: CurrentPerson, code: ServiceCode) -> DraftRead:
    """The card's editable draft (its agency's admins and the catalog authority)."""
    return await reads.get_draft(session, actor=principal, code=code)


@router.put("/services/{code}/draft", response_model=DraftRead)
async def update_draft(
    session: DbSession, principal: CurrentPerson, code: ServiceCode, content: CardUpdate
) -> DraftRead:
    """Replace the draft's content (admins of the card's agency)."""
    return await workflow.update_draft(session, actor=principal, code=code, content=content)


@router.post("/services/{code}/submit", response_model=DraftRead)
async def submit_draft(
    session: DbSession, principal: CurrentPerson, code: ServiceCode
) -> DraftRead:
    """Send the draft to the catalog authority (admins of the card's agency)."""
    return await workflow.submit_draft(session, actor=principal, code=code)


@router.post("/services/{code}/approve", response_model=CardRead)
async def approve_draft(
    session: DbSession, principal: CurrentPerson, settings: CatalogSettings, code: ServiceCode
) -> CardRead:
    """Publish the submitted draft as the next immutable version (catalog authority)."""
    return await workflow.approve_draft(
        session,
        actor=principal,
        code=code,
        approving_organisation=settings.approving_organisation,
    )


@router.post("/services/{code}/reject", response_model=DraftRead)
async def reject_draft(
    session: DbSession, principal: CurrentPerson, code: ServiceCode, body: Reason
) -> DraftRead:
    """Send the submitted draft back with a reason (catalog authority)."""
    return await workflow.reject_draft(session, actor=principal, code=code, reason=body.reason)


@router.post("/services/{code}/retire", response_model=DraftRead)
async def retire_card(
    session: DbSession, principal: CurrentPerson, code: ServiceCode, body: Reason | None = None
) -> DraftRead:
    """Withdraw a published card (its agency's admins or the catalog authority)."""
    return await workflow.retire_card(
        session, actor=principal, code=code, reason=body.reason if body else None
    )


@router.get("/services/{code}/transitions", response_model=list[TransitionRead])
async def list_transitions(
    session: DbSession, principal: CurrentPerson, code: ServiceCode
) -> list[TransitionRead]:
    """Every workflow step of the card with actor and time (its admins, the authority)."""
    return await reads.list_transitions(session, actor=principal, code=code)


@router.get("/drafts", response_model=Page[DraftSummary])
async def list_submitted_drafts(
    session: DbSession, principal: CurrentPerson, paging: PageParams
) -> Page[DraftSummary]:
    """Drafts submitted for approval, the longest waiting first (catalog authority)."""
    return await reads.submitted_drafts(session, actor=principal, paging=paging)


# --------------------------------------------------------------------------- agencies
@router.post("/agencies", status_code=201, response_model=AgencyRead)
async def create_agency(
    session: DbSession,
    principal: CurrentPerson,
    settings: CatalogSettings,
    agency: AgencyCreate,
) -> AgencyRead:
    """Register an agency (platform admins)."""
    return await agencies.create_agency(
        session, actor=principal, agency=agency, connected_within=connected_within(settings)
    )


@router.post("/agencies/{code}/activity", status_code=204)
async def record_agency_activity(
    session: DbSession,
    principal: ActivityReporter,
    code: AgencyCode,
    body: AgencyActivity | None = None,
) -> Response:
    """Note that the agency was active (the inquiry broker reports its traffic)."""
    await agencies.record_agency_activity(
        session, actor=principal, code=code, seen_at=body.seen_at if body else None
    )
    return Response(status_code=204)
