"""Identity's protected endpoints: token rejections, /me, logout, staff roles, clients admin."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx
import pytest
from fastapi import FastAPI
from jose import jwt
from sqlalchemy import text

from panjereh.common.jwk import generate_private_key
from panjereh.identity.keys import KeySet, SigningKeyPair
from panjereh.identity.service import admin, tokens
from panjereh.identity.testing import login, mobile_for, national_code_for

pytestmark = pytest.mark.integration


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(value: dict[str, Any]) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
async def citizen(identity_app: tuple[FastAPI, httpx.AsyncClient]) -> dict[str, Any]:
    _, client = identity_app
    return await login(client, national_code_for(660_001), mobile_for(660_001))


@pytest.fixture(scope="module")
async def admin_token(identity_app: tuple[FastAPI, httpx.AsyncClient]) -> str:
    app, client = identity_app
    national_code = national_code_for(660_002)
    async with app.state.database.transaction() as session:
        await admin.set_staff_roles(
            session, national_code=national_code, roles=["platform-admin"], granted_by="test"
        )
    tokens = await login(client, national_code, mobile_for(660_002))
    return str(tokens["access_token"])


async def current_keyset(app: FastAPI) -> KeySet:
    keyset: KeySet = await app.state.key_source.keyset()
    return keyset


def claims_like(token: str, **changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {**jwt.get_unverified_claims(token), **changes}
    return claims


class TestTokenRejections:
    async def test_a_valid_token_reads_me(
        self, client: httpx.AsyncClient, citizen: dict[str, Any]
    ) -> None:
        response = await client.get("/api/v1/me", headers=bearer(citizen["access_token"]))
        assert response.status_code == 200
        body = response.json()
        assert body["national_code"] == national_code_for(660_001)
        assert body["mobile"] == mobile_for(660_001)
        assert (body["first_name"], body["last_name"]) == ("سارا", "محمدی")
        assert body["birth_date"] == "1990-03-21"
        assert body["roles"] == ["citizen"]

    async def test_no_token_is_401(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/api/v1/me")
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")

    async def test_alg_none_is_refused(
        self, client: httpx.AsyncClient, app: FastAPI, citizen: dict[str, Any]
    ) -> None:
        kid = (await current_keyset(app)).current.kid
        forged = (
            f"{segment({'alg': 'none', 'typ': 'JWT', 'kid': kid})}."
            f"{segment(claims_like(citizen['access_token']))}."
        )
        response = await client.get("/api/v1/me", headers=bearer(forged))
        assert response.status_code == 401

    async def test_hs256_signed_with_the_public_key_is_refused(
        self, client: httpx.AsyncClient, app: FastAPI, citizen: dict[str, Any]
    ) -> None:
        # the classic confusion attack: the public key (from the JWKS) used as an HMAC secret
        jwks = (await client.get("/.well-known/jwks.json")).json()
        public = jwks["keys"][0]
        header = segment({"alg": "HS256", "typ": "JWT", "kid": public["kid"]})
        payload = segment(claims_like(citizen["access_token"]))
        for secret in (json.dumps(public).encode(), public["x"].encode()):
            signature = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256)
            forged = f"{header}.{payload}.{b64(signature.digest())}"
            response = await client.get("/api/v1/me", headers=bearer(forged))
            assert response.status_code == 401

    @pytest.mark.parametrize(
        ("change", "code"),
        [
            ({"aud": "somewhere-else"}, "token_invalid"),
            ({"iss": "https://evil.example"}, "token_invalid"),
            ({"exp": int(time.time()) - 120, "iat": int(time.time()) - 720}, "token_expired"),
        ],
        ids=["wrong-aud", "wrong-iss", "expired"],
    )
    async def test_tokens_signed_by_identitys_own_key_with_a_wrong_claim_are_refused(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        citizen: dict[str, Any],
        change: dict[str, Any],
        code: str,
    ) -> None:
        keyset = await current_keyset(app)
        forged = jwt.encode(
            claims_like(citizen["access_token"], **change),
            keyset.current.pem,
            algorithm="ES256",
            headers={"kid": keyset.current.kid},
        )
        response = await client.get("/api/v1/me", headers=bearer(forged))
        assert response.status_code == 401
        assert response.json()["code"] == code

    async def test_an_unknown_kid_is_refused(
        self, client: httpx.AsyncClient, citizen: dict[str, Any]
    ) -> None:
        stranger = SigningKeyPair.of(generate_private_key())
        forged = jwt.encode(
            claims_like(citizen["access_token"]),
            stranger.pem,
            algorithm="ES256",
            headers={"kid": stranger.kid},
        )
        response = await client.get("/api/v1/me", headers=bearer(forged))
        assert response.status_code == 401

    async def test_a_known_kid_with_another_keys_signature_is_refused(
        self, client: httpx.AsyncClient, app: FastAPI, citizen: dict[str, Any]
    ) -> None:
        stranger = SigningKeyPair.of(generate_private_key())
        forged = jwt.encode(
            claims_like(citizen["access_token"]),
            stranger.pem,
            algorithm="ES256",
            headers={"kid": (await current_keyset(app)).current.kid},
        )
        assert (await client.get("/api/v1/me", headers=bearer(forged))).status_code == 401

    async def test_a_citizen_token_without_its_national_code_is_invalid(
        self, client: httpx.AsyncClient, app: FastAPI, citizen: dict[str, Any]
    ) -> None:
        keyset = await current_keyset(app)
        claims = claims_like(citizen["access_token"])
        del claims["national_code"]
        forged = jwt.encode(
            claims, keyset.current.pem, algorithm="ES256", headers={"kid": keyset.current.kid}
        )
        response = await client.get("/api/v1/me", headers=bearer(forged))
        assert response.status_code == 401
        assert response.json()["code"] == "token_invalid"

    async def test_a_client_token_is_not_a_citizen(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        token = await tokens.own_service_token(
            key_source=app.state.key_source,
            settings=app.state.settings,
            now=datetime.now(UTC),
        )
        assert (await client.get("/api/v1/me", headers=bearer(token))).status_code == 403


class TestLogout:
    async def test_logout_ends_the_session_the_bearer_belongs_to(
        self, client: httpx.AsyncClient
    ) -> None:
        tokens = await login(client, national_code_for(660_010), mobile_for(660_010))
        other = await login(client, national_code_for(660_010), mobile_for(660_011))
        out = await client.post("/api/v1/auth/logout", headers=bearer(tokens["access_token"]))
        assert out.status_code == 204
        refused = await client.post(
            "/api/v1/auth/token",
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        )
        assert refused.json()["error"] == "invalid_grant"
        # the same person's other device is still signed in
        kept = await client.post(
            "/api/v1/auth/token",
            data={"grant_type": "refresh_token", "refresh_token": other["refresh_token"]},
        )
        assert kept.status_code == 200
        # the ended session's access token is refused from now on, here at once (and by every
        # other service within seconds); logging out again with its refresh token is a no-op
        again = await client.post("/api/v1/auth/logout", headers=bearer(tokens["access_token"]))
        assert again.status_code == 401
        assert again.json()["code"] == "token_revoked"
        with_other = await client.post(
            "/api/v1/auth/logout",
            headers=bearer(other["access_token"]),
            json={"refresh_token": tokens["refresh_token"]},
        )
        assert with_other.status_code == 204

    async def test_logout_needs_a_token(self, client: httpx.AsyncClient) -> None:
        assert (await client.post("/api/v1/auth/logout")).status_code == 401


class TestStaffRoles:
    async def test_platform_admin_sets_roles_that_the_next_token_carries(
        self, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        national_code = national_code_for(660_020)
        response = await client.put(
            f"/api/v1/admin/staff/{national_code}/roles",
            json={"roles": ["officer:tax", "agency-admin:tax"]},
            headers=bearer(admin_token),
        )
        assert response.status_code == 200, response.text
        assert response.json() == {
            "national_code": national_code,
            "roles": ["agency-admin:tax", "officer:tax"],
        }
        tokens = await login(client, national_code, mobile_for(660_020))
        roles = jwt.get_unverified_claims(tokens["access_token"])["roles"]
        assert roles == ["citizen", "agency-admin:tax", "officer:tax"]
        # replacing the set removes what is not named
        await client.put(
            f"/api/v1/admin/staff/{national_code}/roles",
            json={"roles": ["officer:tax"]},
            headers=bearer(admin_token),
        )
        refreshed = await client.post(
            "/api/v1/auth/token",
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        )
        roles = jwt.get_unverified_claims(refreshed.json()["access_token"])["roles"]
        assert roles == ["citizen", "officer:tax"]

    async def test_an_unknown_role_is_422(
        self, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        response = await client.put(
            f"/api/v1/admin/staff/{national_code_for(660_021)}/roles",
            json={"roles": ["emperor"]},
            headers=bearer(admin_token),
        )
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"].startswith("roles")

    async def test_a_bad_national_code_in_the_path_is_422(
        self, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        response = await client.put(
            "/api/v1/admin/staff/1111111111/roles",
            json={"roles": []},
            headers=bearer(admin_token),
        )
        assert response.status_code == 422

    async def test_a_citizen_is_403(
        self, client: httpx.AsyncClient, citizen: dict[str, Any]
    ) -> None:
        response = await client.put(
            f"/api/v1/admin/staff/{national_code_for(660_022)}/roles",
            json={"roles": ["platform-admin"]},
            headers=bearer(citizen["access_token"]),
        )
        assert response.status_code == 403


class TestClientsAdmin:
    async def test_create_shows_the_secret_once_rotate_and_revoke(
        self, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        created = await client.post(
            "/api/v1/admin/clients",
            json={
                "client_id": "agency-police-reports",
                "agency": "police",
                "scopes": ["inquiries"],
            },
            headers=bearer(admin_token),
        )
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["client_id"] == "agency-police-reports"
        assert body["agency"] == "police"
        secret = body["client_secret"]
        listed = (await client.get("/api/v1/admin/clients", headers=bearer(admin_token))).json()
        mine = [c for c in listed if c["client_id"] == "agency-police-reports"]
        assert mine
        assert "client_secret" not in mine[0]

        def grant(secret: str) -> dict[str, str]:
            return {
                "grant_type": "client_credentials",
                "client_id": "agency-police-reports",
                "client_secret": secret,
            }

        assert (await client.post("/api/v1/auth/token", data=grant(secret))).status_code == 200
        rotated = await client.post(
            "/api/v1/admin/clients/agency-police-reports/rotate", headers=bearer(admin_token)
        )
        assert rotated.status_code == 200
        new_secret = rotated.json()["client_secret"]
        assert new_secret != secret
        old_try = await client.post("/api/v1/auth/token", data=grant(secret))
        assert old_try.json()["error"] == "invalid_client"
        revoked = await client.delete(
            "/api/v1/admin/clients/agency-police-reports", headers=bearer(admin_token)
        )
        assert revoked.status_code == 204
        after = await client.post("/api/v1/auth/token", data=grant(new_secret))
        assert after.status_code == 401

    async def test_same_client_id_twice_is_409(
        self, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        spec = {"client_id": "service-analytics", "service": "analytics", "scopes": []}
        first = await client.post("/api/v1/admin/clients", json=spec, headers=bearer(admin_token))
        assert first.status_code == 201
        second = await client.post("/api/v1/admin/clients", json=spec, headers=bearer(admin_token))
        assert second.status_code == 409
        assert second.json()["code"] == "client_exists"

    async def test_a_client_needs_exactly_one_owner(
        self, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        response = await client.post(
            "/api/v1/admin/clients",
            json={"agency": "tax", "service": "requests"},
            headers=bearer(admin_token),
        )
        assert response.status_code == 422

    async def test_rotating_an_unknown_client_is_404(
        self, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        response = await client.post(
            "/api/v1/admin/clients/nobody/rotate", headers=bearer(admin_token)
        )
        assert response.status_code == 404
        assert response.json()["code"] == "client_not_found"


@pytest.fixture(scope="module")
async def second_admin_token(identity_app: tuple[FastAPI, httpx.AsyncClient]) -> str:
    app, client = identity_app
    national_code = national_code_for(660_003)
    async with app.state.database.transaction() as session:
        await admin.set_staff_roles(
            session, national_code=national_code, roles=["platform-admin"], granted_by="test"
        )
    tokens = await login(client, national_code, mobile_for(660_003))
    return str(tokens["access_token"])


class TestCreateClientIdempotently:
    SPEC: ClassVar[dict[str, Any]] = {"agency": "tax", "scopes": ["inquiries"]}

    async def create(
        self, client: httpx.AsyncClient, token: str, key: str, spec: dict[str, Any] | None = None
    ) -> httpx.Response:
        return await client.post(
            "/api/v1/admin/clients",
            json=self.SPEC if spec is None else spec,
            headers={**bearer(token), "Idempotency-Key": key},
        )

    async def clients_like(self, app: FastAPI, client_id: str) -> int:
        async with app.state.database.transaction() as session:
            count = await session.scalar(
                text("SELECT count(*) FROM identity.machine_client WHERE client_id = :id"),
                {"id": client_id},
            )
        return int(count or 0)

    async def test_the_same_key_and_body_answer_the_same_client_and_secret(
        self, client: httpx.AsyncClient, app: FastAPI, admin_token: str
    ) -> None:
        first = await self.create(client, admin_token, "create-tax-client-1")
        again = await self.create(client, admin_token, "create-tax-client-1")
        assert (first.status_code, again.status_code) == (201, 201)
        assert "idempotent-replayed" not in first.headers
        assert again.headers["idempotent-replayed"] == "true"
        assert again.headers["cache-control"] == "no-store"
        assert again.json() == first.json()
        assert await self.clients_like(app, first.json()["client_id"]) == 1
        # the repeated secret is the real one
        grant = await client.post(
            "/api/v1/auth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": again.json()["client_id"],
                "client_secret": again.json()["client_secret"],
            },
        )
        assert grant.status_code == 200

    async def test_the_remembered_answer_does_not_hold_the_secret_in_clear(
        self, client: httpx.AsyncClient, app: FastAPI, admin_token: str
    ) -> None:
        created = (await self.create(client, admin_token, "create-tax-client-2")).json()
        async with app.state.database.transaction() as session:
            stored = await session.scalar(
                text("SELECT response::text FROM identity.idempotency_record WHERE key = :key"),
                {"key": "create-tax-client-2"},
            )
        assert stored is not None
        assert created["client_id"] in stored
        assert created["client_secret"] not in stored
        assert '"client_secret"' not in stored

    async def test_the_same_key_with_another_body_is_409(
        self, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        assert (await self.create(client, admin_token, "create-tax-client-3")).status_code == 201
        other = await self.create(
            client, admin_token, "create-tax-client-3", {"agency": "police", "scopes": []}
        )
        assert other.status_code == 409
        assert other.json()["code"] == "idempotency_key_reused"

    async def test_concurrent_duplicates_create_one_client(
        self, client: httpx.AsyncClient, app: FastAPI, admin_token: str
    ) -> None:
        responses = await asyncio.gather(
            *(self.create(client, admin_token, "create-tax-client-4") for _ in range(4))
        )
        assert [r.status_code for r in responses] == [201] * 4, [r.text for r in responses]
        assert len({r.json()["client_id"] for r in responses}) == 1
        assert len({r.json()["client_secret"] for r in responses}) == 1
        assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 3
        assert await self.clients_like(app, responses[0].json()["client_id"]) == 1

    async def test_keys_belong_to_the_caller(
        self, client: httpx.AsyncClient, admin_token: str, second_admin_token: str
    ) -> None:
        mine = await self.create(client, admin_token, "create-tax-client-5")
        theirs = await self.create(client, second_admin_token, "create-tax-client-5")
        assert (mine.status_code, theirs.status_code) == (201, 201)
        assert "idempotent-replayed" not in theirs.headers
        assert mine.json()["client_id"] != theirs.json()["client_id"]

    async def test_without_a_key_each_request_creates_a_client(
        self, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        responses = [
            await client.post("/api/v1/admin/clients", json=self.SPEC, headers=bearer(admin_token))
            for _ in range(2)
        ]
        assert [r.status_code for r in responses] == [201, 201]
        assert responses[0].json()["client_id"] != responses[1].json()["client_id"]

    async def test_a_malformed_key_is_422(
        self, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        response = await self.create(client, admin_token, "x" * 201)
        assert response.status_code == 422
        assert response.json()["code"] == "invalid_idempotency_key"
