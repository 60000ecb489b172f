"""HTTP endpoints of the catalog (``/api/v1/catalog``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from panjereh.catalog import cpsv, service
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
    AgencyRead,
    Audience,
    CardRead,
    ChannelType,
    LifeEvent,
    Page,
    SearchResults,
    Stats,
    VersionSummary,
)
from starlette.responses import JSONResponse, Response

router = APIRouter(prefix="/api/v1/catalog", tags=["catalog"])

ServiceCode = Annotated[str, Path(pattern=CODE_PATTERN)]
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
) -> SearchResults:
    """Search and browse published services (Persian-aware), with facets."""
    filters = SearchFilters(
        agency=agency,
        category=category,
        life_event=life_event,
        channel=channel,
        maturity=maturity,
        audience=audience,
    )
    return await service.search_services(
        session, q=q, filters=filters, page=paging.page, page_size=paging.page_size
    )


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
