"""Access-token verification against a JWKS served over real loopback HTTP."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from jose import jwk

from panjereh.common.app import create_service_app
from panjereh.common.auth import (
    CurrentPrincipal,
    JwksCache,
    OptionalPrincipal,
    Principal,
    SigningKeysUnavailable,
    TokenInvalid,
    TokenVerifier,
    install_auth,
    require_any_role,
    require_qualified_role,
    require_role,
    require_role_with_claim,
    require_scope,
    require_that,
    revoked_sessions_url,
)
from panjereh.common.errors import Text
from panjereh.common.lifespan import Resources
from panjereh.common.settings import ServiceSettings
from panjereh.common.testing.plugin import running_app
from panjereh.common.testing.tokens import JwksServer, SigningKey, TokenFactory, bearer
from panjereh.devstack.pytest_plugin import TEST_NATIONAL_CODE

# The kernel knows no roles: a test vocabulary built from its generic dependencies, shaped
# like the platform's (which lives in panjereh.contracts.access).
CurrentCitizen = Annotated[
    Principal,
    Depends(
        require_role_with_claim(
            "citizen", "national_code", refusal=Text("ویژه شهروندان", "Citizens only")
        )
    ),
]
CurrentClient = Annotated[
    Principal,
    Depends(
        require_that(
            lambda p: any(r.startswith("client:") for r in p.roles),
            refusal=Text("ویژه سامانه‌ها", "Machine clients only"),
        )
    ),
]


def describe(principal: Principal) -> dict[str, Any]:
    return {
        "subject": principal.subject,
        "roles": sorted(principal.roles),
        "national_code": principal.claim("national_code"),
        "agency": principal.claim("agency"),
        "scopes": sorted(principal.scopes),
    }


def build_app(jwks_url: str, **overrides: Any) -> FastAPI:
    settings = ServiceSettings(jwks_url=jwks_url, **overrides)
    router = APIRouter()

    @router.get("/whoami")
    async def whoami(principal: CurrentPrincipal) -> dict[str, Any]:
        return describe(principal)

    @router.get("/maybe")
    async def maybe(principal: OptionalPrincipal) -> dict[str, Any]:
        return {"anonymous": principal is None}

    @router.get("/citizen")
    async def citizen(principal: CurrentCitizen) -> dict[str, Any]:
        return describe(principal)

    @router.get("/client")
    async def client(principal: CurrentClient) -> dict[str, Any]:
        return describe(principal)

    @router.get("/authority")
    async def authority(
        principal: Annotated[Principal, Depends(require_role("catalog-authority"))],
    ) -> dict[str, Any]:
        return describe(principal)

    @router.get("/staff")
    async def staff(
        principal: Annotated[
            Principal, Depends(require_any_role("catalog-authority", "platform-admin"))
        ],
    ) -> dict[str, Any]:
        return describe(principal)

    @router.get("/agencies/{agency_code}/cards")
    async def agency_cards(
        agency_code: str,
        principal: Annotated[
            Principal, Depends(require_qualified_role("agency-admin", path_param="agency_code"))
        ],
    ) -> dict[str, Any]:
        return {"agency": agency_code}

    @router.get("/tax-queue")
    async def tax_queue(
        principal: Annotated[Principal, Depends(require_qualified_role("officer", "tax"))],
    ) -> dict[str, Any]:
        return describe(principal)

    @router.get("/any-queue")
    async def any_queue(
        principal: Annotated[Principal, Depends(require_qualified_role("officer"))],
    ) -> dict[str, Any]:
        return describe(principal)

    @router.get("/inquiries")
    async def inquiries(
        principal: Annotated[Principal, Depends(require_scope("inquiry:write"))],
    ) -> dict[str, Any]:
        return describe(principal)

    async def setup(app: FastAPI, resources: Resources) -> None:
        await resources.enter(install_auth(app, settings))

    return create_service_app(title="auth test", settings=settings, setup=setup, routers=[router])


@pytest.fixture(scope="module")
async def client(jwks_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(build_app(jwks_url)) as client:
        yield client


def assert_rejected(response: httpx.Response, code: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert response.headers["www-authenticate"].startswith("Bearer ")


class TestValidTokens:
    async def test_a_citizen_token_yields_the_citizen(
        self, client: httpx.AsyncClient, token_factory: TokenFactory
    ) -> None:
        token = token_factory(sub="citizen-42", roles=["citizen"])
        response = await client.get("/citizen", headers=bearer(token))
        assert response.status_code == 200, response.text
        assert response.json() == {
            "subject": "citizen-42",
            "roles": ["citizen"],
            "national_code": TEST_NATIONAL_CODE,
            "agency": None,
            "scopes": [],
        }

    async def test_a_client_token_yields_the_client_with_its_scopes(
        self, client: httpx.AsyncClient, token_factory: TokenFactory
    ) -> None:
        token = token_factory(
            sub="tax-portal",
            roles=["client:tax"],
            agency="tax",
            scopes=["inquiry:write", "inquiry:read"],
        )
        response = await client.get("/inquiries", headers=bearer(token))
        assert response.status_code == 200, response.text
        assert response.json() == {
            "subject": "tax-portal",
            "roles": ["client:tax"],
            "national_code": None,
            "agency": "tax",
            "scopes": ["inquiry:read", "inquiry:write"],
        }
        assert (await client.get("/client", headers=bearer(token))).status_code == 200

    async def test_a_token_within_the_clock_skew_leeway_is_accepted(
        self, client: httpx.AsyncClient, token_factory: TokenFactory
    ) -> None:
        token = token_factory(exp=timedelta(seconds=-5), nbf=timedelta(seconds=5))
        assert (await client.get("/whoami", headers=bearer(token))).status_code == 200

    async def test_no_token_is_anonymous_where_optional(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/maybe")
        assert response.json() == {"anonymous": True}

    def test_claims_never_appear_in_the_principal_repr(self) -> None:
        principal = Principal(
            subject="p", roles=frozenset({"citizen"}), claims={"national_code": "0013542419"}
        )
        assert "0013542419" not in repr(principal)
        assert principal.claim("national_code") == "0013542419"

    async def test_a_role_without_its_required_claim_is_an_invalid_token(
        self, client: httpx.AsyncClient, token_factory: TokenFactory
    ) -> None:
        token = token_factory(roles=["citizen"], national_code=None)
        assert_rejected(await client.get("/citizen", headers=bearer(token)), "token_invalid")


class TestRejectedTokens:
    async def test_missing_token_is_401_with_a_bearer_challenge(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/whoami")
        assert response.status_code == 401
        assert response.json()["code"] == "token_missing"
        assert response.headers["www-authenticate"].startswith("Bearer ")

    async def test_a_non_bearer_authorization_header_is_invalid(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/maybe", headers={"Authorization": "Basic dXNlcjpwdw=="})
        assert_rejected(response, "token_invalid")

    async def test_garbage_is_invalid(self, client: httpx.AsyncClient) -> None:
        assert_rejected(await client.get("/whoami", headers=bearer("not.a.jwt")), "token_invalid")

    async def test_alg_none_is_refused(
        self, client: httpx.AsyncClient, token_factory: TokenFactory
    ) -> None:
        token = token_factory.unsigned()
        assert_rejected(await client.get("/whoami", headers=bearer(token)), "token_invalid")

    async def test_hs256_signed_with_the_public_key_is_refused(
        self, client: httpx.AsyncClient, token_factory: TokenFactory
    ) -> None:
        token = token_factory.hs256_with_public_key()
        assert_rejected(await client.get("/whoami", headers=bearer(token)), "token_invalid")

    async def test_a_token_signed_by_another_key_with_our_kid_is_refused(
        self, client: httpx.AsyncClient, token_factory: TokenFactory
    ) -> None:
        impostor = SigningKey(kid=token_factory.key.kid)
        token = token_factory.signed_by(impostor)
        assert_rejected(await client.get("/whoami", headers=bearer(token)), "token_invalid")

    async def test_a_tampered_payload_is_refused(
        self, client: httpx.AsyncClient, token_factory: TokenFactory
    ) -> None:
        head, _, signature = token_factory(roles=["citizen"]).split(".")
        forged_body = token_factory(roles=["platform-admin"]).split(".")[1]
        token = f"{head}.{forged_body}.{signature}"
        assert_rejected(await client.get("/whoami", headers=bearer(token)), "token_invalid")

    @pytest.mark.parametrize(
        ("claims", "code"),
        [
            ({"aud": "someone-else"}, "token_invalid"),
            ({"aud": None}, "token_invalid"),
            ({"iss": "https://evil.example"}, "token_invalid"),
            ({"iss": None}, "token_invalid"),
            ({"exp": timedelta(minutes=-5)}, "token_expired"),
            ({"exp": None}, "token_invalid"),
            ({"nbf": timedelta(minutes=5)}, "token_invalid"),
            ({"sub": None}, "token_invalid"),
            ({"roles": ["citizen"], "national_code": 42}, "token_invalid"),
        ],
        ids=[
            "wrong-aud",
            "no-aud",
            "wrong-iss",
            "no-iss",
            "expired",
            "no-exp",
            "not-yet-valid",
            "no-sub",
            "non-string-claim",
        ],
    )
    async def test_bad_claims_are_refused(
        self,
        client: httpx.AsyncClient,
        token_factory: TokenFactory,
        claims: dict[str, Any],
        code: str,
    ) -> None:
        token = token_factory(**claims)
        assert_rejected(await client.get("/whoami", headers=bearer(token)), code)

    async def test_unknown_kid_is_refused(
        self, client: httpx.AsyncClient, token_factory: TokenFactory
    ) -> None:
        token = token_factory(kid="no-such-key")
        assert_rejected(await client.get("/whoami", headers=bearer(token)), "token_invalid")

    async def test_missing_kid_is_refused(
        self, client: httpx.AsyncClient, token_factory: TokenFactory
    ) -> None:
        token = token_factory(kid=None)
        assert_rejected(await client.get("/whoami", headers=bearer(token)), "token_invalid")

    async def test_a_critical_header_extension_is_refused(
        self, client: httpx.AsyncClient, token_factory: TokenFactory
    ) -> None:
        token = token_factory(headers={"crit": ["exp"]})
        assert_rejected(await client.get("/whoami", headers=bearer(token)), "token_invalid")

    async def test_problem_titles_follow_accept_language(
        self, client: httpx.AsyncClient, token_factory: TokenFactory
    ) -> None:
        token = token_factory(exp=timedelta(minutes=-5))
        fa = await client.get("/whoami", headers=bearer(token))
        en = await client.get("/whoami", headers={**bearer(token), "Accept-Language": "en"})
        assert fa.json()["title"] == "توکن دسترسی منقضی شده است"
        assert en.json()["title"] == "The access token has expired"


class TestRoles:
    async def test_a_citizen_cannot_use_a_role_endpoint(
        self, client: httpx.AsyncClient, token_factory: TokenFactory
    ) -> None:
        response = await client.get("/authority", headers=bearer(token_factory()))
        assert response.status_code == 403
        assert response.json()["code"] == "forbidden"

    async def test_the_role_holder_passes(
        self, client: httpx.AsyncClient, token_factory: TokenFactory
    ) -> None:
        token = token_factory(roles=["catalog-authority"])
        assert (await client.get("/authority", headers=bearer(token))).status_code == 200
        assert (await client.get("/staff", headers=bearer(token))).status_code == 200

    async def test_staff_is_not_a_citizen(
        self, client: httpx.AsyncClient, token_factory: TokenFactory
    ) -> None:
        token = token_factory(roles=["officer:tax"])
        response = await client.get("/citizen", headers=bearer(token))
        assert response.status_code == 403
        assert response.json()["code"] == "forbidden"

    async def test_a_citizen_is_not_a_client(
        self, client: httpx.AsyncClient, token_factory: TokenFactory
    ) -> None:
        response = await client.get("/client", headers=bearer(token_factory()))
        assert response.status_code == 403

    async def test_agency_role_is_checked_against_the_path(
        self, client: httpx.AsyncClient, token_factory: TokenFactory
    ) -> None:
        token = token_factory(roles=["agency-admin:tax"])
        own = await client.get("/agencies/tax/cards", headers=bearer(token))
        other = await client.get("/agencies/post/cards", headers=bearer(token))
        assert own.status_code == 200
        assert other.status_code == 403

    async def test_a_fixed_agency_role_needs_that_agency(
        self, client: httpx.AsyncClient, token_factory: TokenFactory
    ) -> None:
        tax = bearer(token_factory(roles=["officer:tax"]))
        post = bearer(token_factory(roles=["officer:post"]))
        assert (await client.get("/tax-queue", headers=tax)).status_code == 200
        assert (await client.get("/tax-queue", headers=post)).status_code == 403
        assert (await client.get("/any-queue", headers=post)).status_code == 200
        admin = bearer(token_factory(roles=["agency-admin:tax"]))
        assert (await client.get("/any-queue", headers=admin)).status_code == 403

    async def test_a_missing_scope_is_403_insufficient_scope(
        self, client: httpx.AsyncClient, token_factory: TokenFactory
    ) -> None:
        token = token_factory(roles=["client:tax"], agency="tax", scopes=["inquiry:read"])
        response = await client.get("/inquiries", headers=bearer(token))
        assert response.status_code == 403
        assert response.json()["code"] == "insufficient_scope"
        assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestJwksCache:
    async def test_unknown_kids_trigger_at_most_one_fetch_per_interval(
        self, jwks_server: JwksServer, token_signing_key: SigningKey
    ) -> None:
        clock = FakeClock()
        before = jwks_server.requests
        async with httpx.AsyncClient() as http:
            cache = JwksCache(
                jwks_server.url, client=http, ttl=300, refetch_interval=30, clock=clock
            )
            assert await cache.get(token_signing_key.kid) is not None
            for _ in range(50):
                clock.now += 0.1
                assert await cache.get(secrets.token_hex(8)) is None
            assert jwks_server.requests - before == 1
            clock.now += 30
            for _ in range(50):
                assert await cache.get(secrets.token_hex(8)) is None
            assert jwks_server.requests - before == 2
            assert cache.fetches == 2

    async def test_a_flood_of_unknown_kids_at_an_endpoint_costs_identity_one_fetch(
        self, jwks_server: JwksServer, token_factory: TokenFactory
    ) -> None:
        before = jwks_server.requests
        async with running_app(build_app(jwks_server.url)) as client:
            assert (await client.get("/whoami", headers=bearer(token_factory()))).status_code == 200
            for _ in range(30):
                token = token_factory(kid=secrets.token_hex(8))
                assert_rejected(await client.get("/whoami", headers=bearer(token)), "token_invalid")
        assert jwks_server.requests - before == 1

    async def test_keys_are_refetched_after_the_ttl(
        self, jwks_server: JwksServer, token_signing_key: SigningKey
    ) -> None:
        clock = FakeClock()
        before = jwks_server.requests
        async with httpx.AsyncClient() as http:
            cache = JwksCache(
                jwks_server.url, client=http, ttl=300, refetch_interval=30, clock=clock
            )
            await cache.get(token_signing_key.kid)
            clock.now += 299
            await cache.get(token_signing_key.kid)
            assert jwks_server.requests - before == 1
            clock.now += 2
            await cache.get(token_signing_key.kid)
            assert jwks_server.requests - before == 2

    async def test_a_rotated_key_is_accepted_once_the_interval_allows_a_refetch(
        self, jwks_server: JwksServer, token_factory: TokenFactory
    ) -> None:
        app = build_app(jwks_server.url, jwks_refetch_interval_seconds=0)
        async with running_app(app) as client:
            assert (await client.get("/whoami", headers=bearer(token_factory()))).status_code == 200
            rotated = SigningKey(kid="test-key-rotated")
            jwks_server.keys.append(rotated.public_jwk)
            try:
                token = token_factory.signed_by(rotated)
                response = await client.get("/whoami", headers=bearer(token))
            finally:
                jwks_server.keys.remove(rotated.public_jwk)
        assert response.status_code == 200, response.text

    async def test_keys_known_too_long_without_a_refresh_are_no_longer_trusted(
        self, token_signing_key: SigningKey
    ) -> None:
        """A key identity withdrew must not stay trusted by a service cut off from identity."""
        server = JwksServer([token_signing_key.public_jwk])
        server.start()
        clock = FakeClock()
        async with httpx.AsyncClient() as http:
            cache = JwksCache(
                server.url, client=http, ttl=300, refetch_interval=30, max_stale=3600, clock=clock
            )
            assert await cache.get(token_signing_key.kid) is not None
            server.stop()  # identity unreachable from now on
            clock.now += 1800  # past the TTL: the refresh fails, the known keys still serve
            assert await cache.get(token_signing_key.kid) is not None
            clock.now += 1801  # an hour without a successful fetch: fail closed
            with pytest.raises(SigningKeysUnavailable):
                await cache.get(token_signing_key.kid)

    async def test_unreachable_identity_is_503_not_401(self, token_factory: TokenFactory) -> None:
        async with running_app(build_app("http://127.0.0.1:1/.well-known/jwks.json")) as client:
            response = await client.get("/whoami", headers=bearer(token_factory()))
        assert response.status_code == 503
        assert response.json()["code"] == SigningKeysUnavailable.code

    async def test_private_and_foreign_keys_in_the_jwks_are_ignored(
        self, token_signing_key: SigningKey
    ) -> None:
        hs_key = {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}
        leaked = SigningKey(kid="leaked")
        private_jwk = {**jwk.construct(leaked.private_pem, "ES256").to_dict(), "kid": "leaked"}
        assert "d" in private_jwk
        server = JwksServer([hs_key, private_jwk, token_signing_key.public_jwk])
        server.start()
        try:
            async with httpx.AsyncClient() as http:
                cache = JwksCache(server.url, client=http)
                assert await cache.get(token_signing_key.kid) is not None
                assert await cache.get("hmac") is None
                assert await cache.get("leaked") is None
        finally:
            server.stop()


class RememberingVerifier(TokenVerifier):
    """A verifier that skips the signature check for a token it accepted before (as a service
    may, to save CPU): an ended session must be refused all the same."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.accepted: dict[str, Principal] = {}

    async def verify(self, token: str) -> Principal:
        if token not in self.accepted:
            self.accepted[token] = await super().verify(token)
        return self.accepted[token]


class CountingVerifier(TokenVerifier):
    """The kernel's verifier, counting the tokens whose signature and claims it checked."""

    def __init__(self, jwks_server: JwksServer, **options: Any) -> None:
        settings = ServiceSettings()
        super().__init__(
            jwks_url=jwks_server.url,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            **options,
        )
        self.checks = 0

    async def _checked(self, token: str) -> Principal:
        self.checks += 1
        return await super()._checked(token)


class TestRememberedVerdicts:
    """A caller sends the same token with each request: its signature is checked once."""

    async def test_an_accepted_token_is_checked_once(
        self, jwks_server: JwksServer, token_factory: TokenFactory
    ) -> None:
        verifier = CountingVerifier(jwks_server)
        try:
            token = token_factory(sub="first")
            first = await verifier.verify(token)
            assert await verifier.verify(token) == first
            assert verifier.checks == 1
            assert (await verifier.verify(token_factory(sub="second"))).subject == "second"
            assert verifier.checks == 2
        finally:
            await verifier.aclose()

    async def test_a_refused_token_is_checked_every_time(
        self, jwks_server: JwksServer, token_factory: TokenFactory
    ) -> None:
        verifier = CountingVerifier(jwks_server)
        forged = token_factory.signed_by(SigningKey(kid=token_factory.key.kid))
        try:
            for _ in range(2):
                with pytest.raises(TokenInvalid):
                    await verifier.verify(forged)
            assert verifier.checks == 2
        finally:
            await verifier.aclose()

    async def test_a_verdict_lasts_no_longer_than_the_token_nor_the_bound(
        self, jwks_server: JwksServer, token_factory: TokenFactory
    ) -> None:
        verifier = CountingVerifier(jwks_server, remember_seconds=0.1)
        try:
            token = token_factory()
            await verifier.verify(token)
            await asyncio.sleep(0.15)
            await verifier.verify(token)
            assert verifier.checks == 2
            dying = token_factory(exp=timedelta(seconds=1))
            await verifier.verify(dying)
            await verifier.verify(dying)
            assert verifier.checks == 3
            await asyncio.sleep(1.1)  # expired (the leeway still accepts it): checked again
            await verifier.verify(dying)
            assert verifier.checks == 4
        finally:
            await verifier.aclose()

    async def test_remembering_can_be_turned_off(
        self, jwks_server: JwksServer, token_factory: TokenFactory
    ) -> None:
        verifier = CountingVerifier(jwks_server, remember_seconds=0)
        try:
            token = token_factory()
            await verifier.verify(token)
            await verifier.verify(token)
            assert verifier.checks == 2
        finally:
            await verifier.aclose()


class TestRevokedSessions:
    async def test_a_token_of_an_ended_session_is_refused_within_the_poll_interval(
        self, jwks_server: JwksServer, token_factory: TokenFactory
    ) -> None:
        ended, alive = f"s-{secrets.token_hex(6)}", f"s-{secrets.token_hex(6)}"
        token, other = token_factory(sid=ended), token_factory(sid=alive)
        app = build_app(jwks_server.url, revocation_poll_seconds=0.05)
        try:
            async with running_app(app) as client:
                assert (await client.get("/whoami", headers=bearer(token))).status_code == 200
                jwks_server.revoked[ended] = time.time() + 600  # identity ends the session
                async with asyncio.timeout(5):
                    while (await client.get("/whoami", headers=bearer(token))).status_code == 200:  # noqa: ASYNC110
                        await asyncio.sleep(0.02)
                refused = await client.get("/whoami", headers=bearer(token))
                kept = await client.get("/whoami", headers=bearer(other))
        finally:
            jwks_server.revoked.pop(ended, None)
        assert_rejected(refused, "token_revoked")
        assert kept.status_code == 200

    async def test_a_remembered_verdict_does_not_outlive_the_session(
        self, jwks_server: JwksServer, token_factory: TokenFactory
    ) -> None:
        ended = f"s-{secrets.token_hex(6)}"
        token = token_factory(sid=ended)
        settings = ServiceSettings(jwks_url=jwks_server.url, revocation_poll_seconds=0.05)
        verifier = RememberingVerifier(
            jwks_url=jwks_server.url,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            revoked_sessions_url=revoked_sessions_url(jwks_server.url),
            revocation_poll_seconds=0.05,
        )
        router = APIRouter()

        @router.get("/whoami")
        async def whoami(principal: CurrentPrincipal) -> dict[str, Any]:
            return describe(principal)

        async def setup(app: FastAPI, resources: Resources) -> None:
            app.state.token_verifier = verifier
            resources.on_close(verifier.aclose)

        app = create_service_app(title="t", settings=settings, setup=setup, routers=[router])
        try:
            async with running_app(app) as client:
                assert (await client.get("/whoami", headers=bearer(token))).status_code == 200
                jwks_server.revoked[ended] = time.time() + 600
                await asyncio.sleep(0.2)
                await client.get("/whoami", headers=bearer(token))  # starts the poll
                await asyncio.sleep(0.2)
                refused = await client.get("/whoami", headers=bearer(token))
        finally:
            jwks_server.revoked.pop(ended, None)
        assert token in verifier.accepted  # the signature was not checked again...
        assert_rejected(refused, "token_revoked")  # ...and the session's end still counts

    async def test_a_session_is_forgotten_once_its_tokens_have_expired_anyway(
        self, jwks_server: JwksServer, token_factory: TokenFactory
    ) -> None:
        ended = f"s-{secrets.token_hex(6)}"
        jwks_server.revoked[ended] = time.time() - 1
        try:
            async with running_app(build_app(jwks_server.url)) as client:
                response = await client.get("/whoami", headers=bearer(token_factory(sid=ended)))
        finally:
            jwks_server.revoked.pop(ended, None)
        assert response.status_code == 200

    def test_the_list_sits_beside_identitys_jwks(self) -> None:
        assert (
            revoked_sessions_url("http://identity:8002/.well-known/jwks.json")
            == "http://identity:8002/.well-known/revoked-sessions"
        )
        assert revoked_sessions_url("https://keys.example/other.json") is None


class TestLifespan:
    async def test_the_verifier_lives_on_app_state_and_is_closed_at_shutdown(
        self, jwks_url: str
    ) -> None:
        app = build_app(jwks_url)
        async with running_app(app):
            verifier = app.state.token_verifier
            assert isinstance(verifier, TokenVerifier)
            assert not verifier._client.is_closed
        assert verifier._client.is_closed
