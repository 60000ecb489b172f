"""The OAuth 2.0 token endpoint: refresh rotation with reuse detection, client credentials."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from jose import jwt

from panjereh.common.db import Database
from panjereh.common.jwk import generate_private_key, private_pem
from panjereh.common.testing.plugin import MigratedDatabase
from panjereh.identity import keys as keys_module
from panjereh.identity.keys import DatabaseKeySource
from panjereh.identity.schemas import ClientCreate
from panjereh.identity.service import admin
from panjereh.identity.testing import mobile_for, national_code_for, settings_for_tests

pytestmark = pytest.mark.integration

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def login(client: httpx.AsyncClient, seed: int) -> dict[str, Any]:
    mobile = mobile_for(seed)
    challenge = await client.post(
        "/api/v1/auth/otp",
        json={"national_code": national_code_for(seed), "mobile": mobile},
        headers={"X-Forwarded-For": f"203.0.113.{seed % 250 + 1}"},
    )
    assert challenge.status_code == 202, challenge.text
    for _ in range(200):
        items = (await client.get("/api/v1/dev/sms-outbox", params={"mobile": mobile})).json()
        if items["items"]:
            break
        await asyncio.sleep(0.025)
    code = items["items"][0]["tokens"][0]
    response = await client.post(
        "/api/v1/auth/otp/verify",
        json={"challenge_id": challenge.json()["challenge_id"], "code": code},
    )
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post(
        "/api/v1/auth/token", data={"grant_type": "refresh_token", "refresh_token": token}
    )


async def make_client(app: FastAPI, spec: ClientCreate) -> str:
    async with app.state.database.transaction() as session:
        created = await admin.create_client(
            session, spec=spec, keys=app.state.keys, now=datetime.now(UTC)
        )
    return created.client_secret


class TestRefreshRotation:
    async def test_a_refresh_token_is_exchanged_for_a_new_pair(
        self, client: httpx.AsyncClient, seed: int
    ) -> None:
        first = await login(client, seed)
        response = await refresh(client, first["refresh_token"])
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        second = response.json()
        assert second["refresh_token"] != first["refresh_token"]
        old = jwt.get_unverified_claims(first["access_token"])
        new = jwt.get_unverified_claims(second["access_token"])
        assert new["sub"] == old["sub"]
        assert new["sid"] == old["sid"]
        assert new["jti"] != old["jti"]

    async def test_replaying_a_spent_token_revokes_the_whole_family(
        self, client: httpx.AsyncClient, seed: int
    ) -> None:
        first = await login(client, seed)
        second = (await refresh(client, first["refresh_token"])).json()
        replay = await refresh(client, first["refresh_token"])
        assert replay.status_code == 400
        assert replay.json()["error"] == "invalid_grant"
        assert replay.json()["code"] == "invalid_grant"
        # the thief's (or the owner's) newer token is dead too
        after = await refresh(client, second["refresh_token"])
        assert after.status_code == 400
        assert after.json()["error"] == "invalid_grant"

    async def test_another_login_is_not_touched_by_a_revoked_family(
        self, client: httpx.AsyncClient, seed: int
    ) -> None:
        victim = await login(client, seed)
        other = await login(client, seed + 90_000)
        await refresh(client, victim["refresh_token"])
        await refresh(client, victim["refresh_token"])  # replay
        assert (await refresh(client, other["refresh_token"])).status_code == 200

    async def test_an_unknown_refresh_token_is_invalid_grant(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await refresh(client, "not-a-token")
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_grant"


class TestTokenRequestErrors:
    async def test_unsupported_grant_type(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/api/v1/auth/token", data={"grant_type": "password"})
        assert response.status_code == 400
        assert response.json()["error"] == "unsupported_grant_type"

    async def test_json_body_is_invalid_request(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/api/v1/auth/token", json={"grant_type": "client_credentials"}
        )
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_request"

    async def test_repeated_parameter_is_invalid_request(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/api/v1/auth/token",
            content="grant_type=refresh_token&grant_type=client_credentials",
            headers=FORM,
        )
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_request"

    async def test_missing_grant_type_is_invalid_request(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/api/v1/auth/token", data={"refresh_token": "x"})
        assert response.json()["error"] == "invalid_request"


class TestClientCredentials:
    async def test_right_secret_gets_a_client_token(
        self, client: httpx.AsyncClient, app: FastAPI, seed: int
    ) -> None:
        client_id = f"agency-tax-{seed}"
        secret = await make_client(
            app,
            ClientCreate(client_id=client_id, agency="tax", scopes=["inquiries:reply", "x:y"]),
        )
        response = await client.post(
            "/api/v1/auth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
            },
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["token_type"] == "Bearer"
        assert "refresh_token" not in body
        assert body["scope"] == "inquiries:reply x:y"
        claims = jwt.get_unverified_claims(body["access_token"])
        assert claims["sub"] == client_id
        assert claims["roles"] == ["client:tax"]
        assert claims["agency"] == "tax"
        assert "national_code" not in claims

    async def test_http_basic_and_a_narrower_scope(
        self, client: httpx.AsyncClient, app: FastAPI, seed: int
    ) -> None:
        client_id = f"service-requests-{seed}"
        secret = await make_client(
            app,
            ClientCreate(client_id=client_id, service="requests", scopes=["a", "b"]),
        )
        basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        response = await client.post(
            "/api/v1/auth/token",
            data={"grant_type": "client_credentials", "scope": "b"},
            headers={"Authorization": f"Basic {basic}"},
        )
        assert response.status_code == 200, response.text
        claims = jwt.get_unverified_claims(response.json()["access_token"])
        assert claims["roles"] == ["service:requests"]
        assert claims["scope"] == "b"
        assert "agency" not in claims

    async def test_wrong_secret_is_invalid_client(
        self, client: httpx.AsyncClient, app: FastAPI, seed: int
    ) -> None:
        client_id = f"agency-police-{seed}"
        await make_client(app, ClientCreate(client_id=client_id, agency="police"))
        response = await client.post(
            "/api/v1/auth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": "wrong",
            },
        )
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_client"
        assert response.headers["www-authenticate"].startswith("Basic")

    async def test_unknown_client_is_invalid_client(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/api/v1/auth/token",
            data={"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"},
        )
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_client"

    async def test_a_scope_beyond_the_clients_is_invalid_scope(
        self, client: httpx.AsyncClient, app: FastAPI, seed: int
    ) -> None:
        client_id = f"agency-education-{seed}"
        secret = await make_client(
            app, ClientCreate(client_id=client_id, agency="education", scopes=["a"])
        )
        response = await client.post(
            "/api/v1/auth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
                "scope": "a admin",
            },
        )
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_scope"

    async def test_a_rotated_secret_replaces_the_old_one_and_revocation_ends_the_client(
        self, client: httpx.AsyncClient, app: FastAPI, seed: int
    ) -> None:
        client_id = f"agency-vehicle-registry-{seed}"
        old = await make_client(app, ClientCreate(client_id=client_id, agency="vehicle-registry"))
        async with app.state.database.transaction() as session:
            rotated = await admin.rotate_client_secret(
                session, client_id=client_id, keys=app.state.keys, now=datetime.now(UTC)
            )

        async def ask(secret: str) -> int:
            response = await client.post(
                "/api/v1/auth/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": client_id,
                    "client_secret": secret,
                },
            )
            return response.status_code

        assert await ask(old) == 401
        assert await ask(rotated.client_secret) == 200
        async with app.state.database.transaction() as session:
            await admin.revoke_client(session, client_id=client_id, now=datetime.now(UTC))
        assert await ask(rotated.client_secret) == 401


class TestJwks:
    async def test_publishes_current_and_next_and_keeps_a_rotated_key(
        self, client: httpx.AsyncClient, app: FastAPI, seed: int
    ) -> None:
        before = (await client.get("/.well-known/jwks.json")).json()["keys"]
        assert len(before) >= 2
        assert all(key["alg"] == "ES256" and "d" not in key for key in before)
        current, upcoming = before[0]["kid"], before[1]["kid"]
        source = app.state.key_source
        assert isinstance(source, DatabaseKeySource)
        promoted = await source.rotate()
        assert promoted == upcoming
        after = [key["kid"] for key in (await client.get("/.well-known/jwks.json")).json()["keys"]]
        assert after[0] == upcoming
        assert current in after  # tokens it signed stay verifiable until they expire
        assert len(after) >= 3
        tokens = await login(client, seed)
        assert jwt.get_unverified_header(tokens["access_token"])["kid"] == upcoming


class TestRotationCommand:
    async def test_rotate_promotes_the_next_key_in_the_database(
        self, migrated_database: MigratedDatabase
    ) -> None:
        url = await migrated_database("panjereh.identity")
        settings = settings_for_tests(url, "http://127.0.0.1:1")
        first = await keys_module.rotate_database_keys(settings)  # first run also creates the keys
        second = await keys_module.rotate_database_keys(settings)
        assert first != second
        database = Database(url, pool_size=1)
        try:
            source = DatabaseKeySource(database, settings)
            keyset = await source.keyset()
        finally:
            await database.dispose()
        assert keyset.current.kid == second
        published = [key["kid"] for key in keyset.published]
        assert published[0] == second
        assert first in published  # retired a moment ago: still verifiable

    def test_refuses_when_keys_come_from_a_secret(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setenv("PANJEREH_IDENTITY_SIGNING_KEY_PEM", private_pem(generate_private_key()))
        assert keys_module.main(["rotate"]) == 2
        assert "secret" in capsys.readouterr().err
