"""HTTP endpoints of the catalog (``/api/v1/catalog``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request
from pydantic import BeforeValidator
from starlette.responses import JSONResponse, Response

from panjereh.catalog import cpsv, persian, service
from panjereh.catalog.dependencies import (
    CatalogSettings,
    PageParams,
    Session,
    connected_within,
    wants_jsonld,
)
from panjereh.catalog.repository import SearchFilters
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
    LifeEvent,
    Page,
    Reason,
    SearchResults,
    Stats,
    TransitionRead,
    VersionSummary,
)
from panjereh.common.auth import CurrentPrincipal

router = APIRouter(prefix="/api/v1/catalog", tags=["catalog"])

# codes typed with Persian or Arabic-Indic digits (۱۱۰۳۰۰۰۰۰۰۱) name the same card
ServiceCode = Annotated[str, BeforeValidator(persian.to_ascii_digits), Path(pattern=CODE_PATTERN)]
AgencyCode = Annotated[str, Path(pattern=CODE_PATTERN)]


@router.get("/services", response_model=SearchResults)
async def search_services(
    *,
    session: Session,
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
    results = await service.search_services(
        session, q=q, filters=filters, page=paging.page, page_size=paging.page_size
    )
    # the hot path: serialised once here rather than validated again against response_model
    return Response(results.model_dump_json(), media_type="application/json")


@router.get(
    "/services/{code}",
    response_model=CardRead,
    responses={200: {"content": {cpsv.MEDIA_TYPE: {}}}},
)
async def get_service(request: Request, session: Session, code: ServiceCode) -> Response:
    """The latest published card; CPSV-AP 3.2 JSON-LD with ``Accept: application/ld+json``."""
    if wants_jsonld(request):
        document = await service.get_published_jsonld(session, code=code)
        return JSONResponse(document, media_type=cpsv.MEDIA_TYPE, headers={"Vary": "Accept"})
    card = await service.get_published(session, code=code)
    return JSONResponse(card.model_dump(mode="json"), headers={"Vary": "Accept"})


@router.get("/services/{code}/versions", response_model=Page[VersionSummary])
async def list_versions(
    session: Session, paging: PageParams, code: ServiceCode
) -> Page[VersionSummary]:
    """Version history of a card, newest first, with who approved each and when."""
    return await service.list_versions(
        session, code=code, page=paging.page, page_size=paging.page_size
    )


@router.get("/services/{code}/versions/{version}", response_model=CardRead)
async def get_version(
    session: Session, code: ServiceCode, version: Annotated[int, Path(ge=1)]
) -> CardRead:
    """One published version of a card, exactly as approved."""
    return await service.get_version(session, code=code, version=version)


@router.get("/agencies", response_model=Page[AgencyRead])
async def list_agencies(
    session: Session, paging: PageParams, settings: CatalogSettings
) -> Page[AgencyRead]:
    """Agencies with their connection status."""
    return await service.list_agencies(
        session,
        page=paging.page,
        page_size=paging.page_size,
        connected_within=connected_within(settings),
    )


@router.get("/agencies/{code}", response_model=AgencyRead)
async def get_agency(session: Session, settings: CatalogSettings, code: AgencyCode) -> AgencyRead:
    """One agency with its connection status."""
    return await service.get_agency(session, code=code, connected_within=connected_within(settings))


@router.get("/stats", response_model=Stats)
async def get_stats(session: Session, settings: CatalogSettings) -> Stats:
    """Headline KPIs computed live from the published cards."""
    return await service.compute_stats(session, connected_within=connected_within(settings))


# --------------------------------------------------------------------------- workflow
@router.post("/services", status_code=201, response_model=DraftRead)
async def create_card(
    session: Session,
    principal: CurrentPrincipal,
    card: CardCreate,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    """Start a new service card as a draft of your agency (agency admins)."""
    created = await service.create_card_once(
        session, actor=principal, card=card, idempotency_key=idempotency_key
    )
    headers = {"Location": f"/api/v1/catalog/services/{card.code}/draft"}
    if created.replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(created.body, status_code=created.status_code, headers=headers)


@router.get("/services/{code}/draft", response_model=DraftRead)
async def get_draft(session: Session, principal: CurrentPrincipal, code: ServiceCode) -> DraftRead:
    """The card's editable draft (its agency's admins and the catalog authority)."""
    return await service.get_draft(session, actor=principal, code=code)


@router.put("/services/{code}/draft", response_model=DraftRead)
async def update_draft(
    session: Session, principal: CurrentPrincipal, code: ServiceCode, content: CardUpdate
) -> DraftRead:
    """Replace the draft's content (admins of the card's agency)."""
    return await service.update_draft(session, actor=principal, code=code, content=content)


@router.post("/services/{code}/submit", response_model=DraftRead)
async def submit_draft(
    session: Session, principal: CurrentPrincipal, code: ServiceCode
) -> DraftRead:
    """Send the draft to the catalog authority (admins of the card's agency)."""
    return await service.submit_draft(session, actor=principal, code=code)


@router.post("/services/{code}/approve", response_model=CardRead)
async def approve_draft(
    session: Session, principal: CurrentPrincipal, settings: CatalogSettings, code: ServiceCode
) -> CardRead:
    """Publish the submitted draft as the next immutable version (catalog authority)."""
    return await service.approve_draft(
        session,
        actor=principal,
        code=code,
        approving_organisation=settings.approving_organisation,
    )


@router.post("/services/{code}/reject", response_model=DraftRead)
async def reject_draft(
    session: Session, principal: CurrentPrincipal, code: ServiceCode, body: Reason
) -> DraftRead:
    """Send the submitted draft back with a reason (catalog authority)."""
    return await service.reject_draft(session, actor=principal, code=code, reason=body.reason)


@router.post("/services/{code}/retire", response_model=DraftRead)
async def retire_card(
    session: Session, principal: CurrentPrincipal, code: ServiceCode, body: Reason | None = None
) -> DraftRead:
    """Withdraw a published card (its agency's admins or the catalog authority)."""
    return await service.retire_card(
        session, actor=principal, code=code, reason=body.reason if body else None
    )


@router.get("/services/{code}/transitions", response_model=list[TransitionRead])
async def list_transitions(
    session: Session, principal: CurrentPrincipal, code: ServiceCode
) -> list[TransitionRead]:
    """Every workflow step of the card with actor and time (its admins, the authority)."""
    return await service.list_transitions(session, actor=principal, code=code)


# --------------------------------------------------------------------------- agencies
@router.post("/agencies", status_code=201, response_model=AgencyRead)
async def create_agency(
    session: Session, principal: CurrentPrincipal, settings: CatalogSettings, agency: AgencyCreate
) -> AgencyRead:
    """Register an agency (platform admins)."""
    return await service.create_agency(
        session, actor=principal, agency=agency, connected_within=connected_within(settings)
    )


@router.post("/agencies/{code}/activity", status_code=204)
async def record_agency_activity(
    session: Session,
    principal: CurrentPrincipal,
    code: AgencyCode,
    body: AgencyActivity | None = None,
) -> Response:
    """Note that the agency was active (the inquiry broker reports its traffic)."""
    await service.record_agency_activity(
        session, actor=principal, code=code, seen_at=body.seen_at if body else None
    )
    return Response(status_code=204)
