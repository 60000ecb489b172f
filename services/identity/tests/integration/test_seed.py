"""Demo staff and machine clients for ``make run``: idempotent, dev only."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from jose import jwt

from panjereh.identity.repository import StaffRoleRepository
from panjereh.identity.seed import DEV_STAFF, dev_client_secret, dev_clients, main, seed

pytestmark = pytest.mark.integration


async def run_seed(app: FastAPI) -> None:
    async with app.state.database.transaction() as session:
        await seed(session, keys=app.state.keys)


class TestSeed:
    async def test_seeds_staff_and_a_client_per_service_and_agency_idempotently(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        await run_seed(app)
        await run_seed(app)  # again: no error, nothing doubled
        async with app.state.database.transaction() as session:
            roles = await StaffRoleRepository(session).roles_of("1001001001")
        assert roles == ["platform-admin"]
        assert len(DEV_STAFF) == 16
        ids = {client_id for client_id, *_ in dev_clients()}
        assert {"service-requests", "service-inquiry-broker", "agency-tax"} <= ids
        assert len(ids) == 4 + 7

        response = await client.post(
            "/api/v1/auth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "agency-civil-registry",
                "client_secret": dev_client_secret("agency-civil-registry"),
            },
        )
        assert response.status_code == 200, response.text
        claims = jwt.get_unverified_claims(response.json()["access_token"])
        assert claims["roles"] == ["client:civil-registry"]
        assert claims["agency"] == "civil-registry"


def test_refuses_to_run_outside_dev(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PANJEREH_ENV", "test")
    monkeypatch.setenv("PANJEREH_IDENTITY_SECRET_KEY", "k7f3a9c1eB2d4F6h8J0kL3m5N7p9Q1r")
    # an unreachable database proves nothing was attempted
    monkeypatch.setenv("PANJEREH_IDENTITY_DATABASE_URL", "postgresql+asyncpg://x@127.0.0.1:1/x")
    assert main() == 0
    assert "dev mode only" in capsys.readouterr().err
