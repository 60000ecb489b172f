"""The shared kernel as services use it: traced requests on a real database, the verifier in
the lifespan."""

from __future__ import annotations

import pytest
from fastapi import APIRouter, FastAPI, Request
from opentelemetry.trace import SpanKind
from sqlalchemy import text

from panjereh.catalog.config import Settings as CatalogSettings
from panjereh.catalog.main import create_app as create_catalog_app
from panjereh.common.app import create_service_app
from panjereh.common.auth import TokenVerifier
from panjereh.common.db import Database
from panjereh.common.lifespan import Resources
from panjereh.common.settings import ServiceSettings
from panjereh.common.telemetry import in_memory_exporter
from panjereh.common.testing.plugin import MigratedDatabase, running_app

pytestmark = pytest.mark.integration


def traced_app(database_url: str, *, trace_statements: bool | None = None) -> FastAPI:
    """An app with one route reading the database; ``trace_statements`` as given, else the
    setting's default."""
    settings = ServiceSettings(database_url=database_url)
    if trace_statements is not None:
        settings = settings.model_copy(update={"trace_statements": trace_statements})
    router = APIRouter()

    @router.get("/tables")
    async def tables(request: Request) -> dict[str, int]:
        database: Database = request.app.state.database
        async with database.transaction() as session:
            count = await session.scalar(
                text(
                    "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'catalog'"
                )
            )
        return {"tables": int(count or 0)}

    async def setup(app: FastAPI, resources: Resources) -> None:
        resources.database(settings)

    return create_service_app(
        title="traced", settings=ServiceSettings(), setup=setup, routers=[router]
    )


class TestTracing:
    async def test_a_request_on_a_real_database_exports_server_and_query_spans(
        self, migrated_database: MigratedDatabase
    ) -> None:
        url = await migrated_database("panjereh.catalog")
        spans = in_memory_exporter()
        async with running_app(traced_app(url, trace_statements=True)) as client:
            spans.clear()
            response = await client.get("/tables")
        assert response.status_code == 200
        assert response.json()["tables"] >= 3
        finished = spans.get_finished_spans()
        server = [span for span in finished if span.kind is SpanKind.SERVER]
        assert [span.name for span in server] == ["GET /tables"]
        trace_id = server[0].context.trace_id if server[0].context else None
        queries = [
            span
            for span in finished
            if span.kind is SpanKind.CLIENT
            and "information_schema.tables" in str(span.attributes.get("db.statement", ""))
        ]
        assert len(queries) == 1, [(s.name, dict(s.attributes or {})) for s in finished]
        assert queries[0].context is not None
        assert queries[0].context.trace_id == trace_id
        assert format(trace_id, "032x") in response.headers["traceparent"]

    async def test_by_default_a_request_has_its_span_but_no_statement_spans(
        self, migrated_database: MigratedDatabase
    ) -> None:
        url = await migrated_database("panjereh.catalog")
        spans = in_memory_exporter()
        async with running_app(traced_app(url)) as client:
            spans.clear()
            response = await client.get("/tables")
        assert response.status_code == 200
        finished = spans.get_finished_spans()
        assert [span.name for span in finished if span.kind is SpanKind.SERVER] == ["GET /tables"]
        assert not [span for span in finished if "db.statement" in (span.attributes or {})]


class TestCatalogLifespan:
    async def test_the_catalog_opens_and_closes_its_token_verifier(
        self, migrated_database: MigratedDatabase, jwks_url: str
    ) -> None:
        url = await migrated_database("panjereh.catalog")
        app = create_catalog_app(CatalogSettings(database_url=url, jwks_url=jwks_url))
        async with running_app(app) as client:
            verifier = app.state.token_verifier
            assert isinstance(verifier, TokenVerifier)
            assert verifier.jwks.url == jwks_url
            ready = await client.get("/readyz")
            assert ready.status_code == 200
            assert "traceparent" in ready.headers
        assert verifier._client.is_closed
