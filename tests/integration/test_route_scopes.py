"""Every route of every service, and what a machine client needs to call it.

:data:`ROUTES` declares, for each route of catalog, identity, requests and the inquiry broker,
who may call it: anyone (``PUBLIC``), people only (``PEOPLE``: a machine client is refused
whatever its scopes), or machine clients holding an OAuth scope (the scope's name). The tests
check the table against the running services:

- it names exactly the routes each app serves: a new route fails until it is declared;
- a client token (an agency's, a platform service's) without the declared scope is refused
  with 403 ``insufficient_scope`` naming the scope, and the scope lets it past that check;
- a people-only route refuses clients; a public route does not ask for a token.

A route a client may call with no scope at all cannot be declared: a planted one shows the
check catching it.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

from panjereh.common.auth import CurrentPrincipal, Principal
from panjereh.common.messaging.kafka import create_topics
from panjereh.common.testing.plugin import MigratedDatabase, running_app
from panjereh.common.testing.tokens import TokenFactory, bearer
from panjereh.contracts.topics import PLATFORM_TOPICS
from panjereh.identity.service.tokens import token_policy
from panjereh.identity.tokens import issue_access_token

pytestmark = pytest.mark.integration

PUBLIC = "public"
PEOPLE = "people"

#: what every service serves beside its API (probes, metrics, documents)
KERNEL: dict[tuple[str, str], str] = {
    ("GET", "/livez"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
}

ROUTES: dict[str, dict[tuple[str, str], str]] = {
    "panjereh.catalog": {
        ("GET", "/api/v1/catalog/services"): PUBLIC,
        ("GET", "/api/v1/catalog/services/{code}"): PUBLIC,
        ("GET", "/api/v1/catalog/services/{code}/versions"): PUBLIC,
        ("GET", "/api/v1/catalog/services/{code}/versions/{version}"): PUBLIC,
        ("GET", "/api/v1/catalog/agencies"): PUBLIC,
        ("GET", "/api/v1/catalog/agencies/{code}"): PUBLIC,
        ("GET", "/api/v1/catalog/stats"): PUBLIC,
        ("POST", "/api/v1/catalog/services"): PEOPLE,
        ("GET", "/api/v1/catalog/services/{code}/draft"): PEOPLE,
        ("PUT", "/api/v1/catalog/services/{code}/draft"): PEOPLE,
        ("POST", "/api/v1/catalog/services/{code}/submit"): PEOPLE,
        ("POST", "/api/v1/catalog/services/{code}/approve"): PEOPLE,
        ("POST", "/api/v1/catalog/services/{code}/reject"): PEOPLE,
        ("POST", "/api/v1/catalog/services/{code}/retire"): PEOPLE,
        ("GET", "/api/v1/catalog/services/{code}/transitions"): PEOPLE,
        ("GET", "/api/v1/catalog/drafts"): PEOPLE,
        ("POST", "/api/v1/catalog/agencies"): PEOPLE,
        # the broker's service client may report an agency's traffic over the API
        ("POST", "/api/v1/catalog/agencies/{code}/activity"): "agencies:activity",
    },
    "panjereh.identity": {
        ("POST", "/api/v1/auth/otp"): PUBLIC,
        ("POST", "/api/v1/auth/otp/verify"): PUBLIC,
        # OAuth token endpoint: clients authenticate with their secret, not a bearer token
        ("POST", "/api/v1/auth/token"): PUBLIC,
        ("POST", "/api/v1/auth/logout"): PEOPLE,
        ("GET", "/api/v1/me"): PEOPLE,
        ("PUT", "/api/v1/admin/staff/{national_code}/roles"): PEOPLE,
        ("GET", "/api/v1/admin/clients"): PEOPLE,
        ("POST", "/api/v1/admin/clients"): PEOPLE,
        ("POST", "/api/v1/admin/clients/{client_id}/rotate"): PEOPLE,
        ("DELETE", "/api/v1/admin/clients/{client_id}"): PEOPLE,
        ("GET", "/.well-known/jwks.json"): PUBLIC,
        ("GET", "/.well-known/revoked-sessions"): PUBLIC,
        ("GET", "/api/v1/dev/sms-outbox"): PUBLIC,  # dev mode only
    },
    "panjereh.requests": {
        ("POST", "/api/v1/requests"): PEOPLE,
        ("GET", "/api/v1/requests"): PEOPLE,
        ("GET", "/api/v1/requests/stats"): PUBLIC,
        # an agency's back-office system reads and decides its agency's requests
        ("GET", "/api/v1/requests/{tracking_code}"): "requests:work",
        ("POST", "/api/v1/requests/{tracking_code}/cancel"): PEOPLE,
        ("GET", "/api/v1/requests/{tracking_code}/document"): PEOPLE,
        ("GET", "/api/v1/requests/{tracking_code}/receipt"): "requests:work",
        ("POST", "/api/v1/requests/{tracking_code}/receipt/replay"): "requests:work",
        ("GET", "/api/v1/agency/requests"): "requests:work",
        ("GET", "/api/v1/agency/requests/{tracking_code}"): "requests:work",
        ("POST", "/api/v1/agency/requests/{tracking_code}/decision"): "requests:work",
        ("GET", "/api/v1/verify/keys"): PUBLIC,
        ("GET", "/api/v1/verify/{document_id}"): PUBLIC,
        ("POST", "/api/v1/verify/{document_id}"): PUBLIC,
        ("GET", "/api/v1/verify/{document_id}/qr.png"): PUBLIC,
    },
    "panjereh.inquiry_broker": {
        ("GET", "/api/v1/inquiry-types"): "inquiries",
        ("GET", "/api/v1/inquiry-types/keys"): PUBLIC,
        ("POST", "/api/v1/inquiries"): "inquiries",
        ("GET", "/api/v1/inquiries/{inquiry_id}"): "inquiries",
        ("GET", "/api/v1/me/data-access"): PEOPLE,
        ("GET", "/api/v1/audit/verify"): PEOPLE,
        ("POST", "/api/v1/audit/verify"): PEOPLE,
        ("GET", "/api/v1/audit/checkpoints/latest"): PUBLIC,
    },
}

#: a value for each path parameter (any well-formed one: the caller is judged before the object)
PATH_VALUES = {
    "code": "tax",
    "version": "1",
    "national_code": "0499370899",
    "client_id": "agency-tax",
    "tracking_code": "8100000001",
    "document_id": str(uuid.uuid4()),
    "inquiry_id": str(uuid.uuid4()),
}

#: Mints a token the service trusts: ``mint(roles=..., scopes=..., agency=...)``.
Mint = Callable[..., str]


def served_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path) of the app's API routes, the hidden ones included."""
    routes = set()
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute):
            path = getattr(context, "path", None) or route.path
            routes |= {(method, path) for method in route.methods}
    return routes


def undeclared(app: FastAPI, declared: Mapping[tuple[str, str], str]) -> set[tuple[str, str]]:
    return served_routes(app) - set(declared) - set(KERNEL)


def url_of(path: str) -> str:
    return path.format(**PATH_VALUES)


@dataclass
class Caller:
    """What a route answered a caller with: its status and problem code."""

    status: int
    code: str | None
    challenge: str

    @classmethod
    def of(cls, response: httpx.Response) -> Caller:
        is_problem = response.headers.get("content-type", "").startswith("application/problem")
        return cls(
            status=response.status_code,
            code=response.json().get("code") if is_problem else None,
            challenge=response.headers.get("www-authenticate", ""),
        )


async def call(
    client: httpx.AsyncClient, method: str, path: str, token: str | None = None
) -> Caller:
    headers = bearer(token) if token else {}
    if method in ("POST", "PUT"):
        response = await client.request(method, url_of(path), headers=headers, json={})
    else:
        response = await client.request(method, url_of(path), headers=headers)
    return Caller.of(response)


def clients_without(mint: Mint, scope: str | None) -> Iterator[tuple[str, str]]:
    """An agency's system and a platform service, holding every scope in use but ``scope``."""
    scopes = {s for table in ROUTES.values() for s in table.values()} - {PUBLIC, PEOPLE, scope}
    yield "agency", mint(roles=["client:tax"], agency="tax", scopes=sorted(scopes))
    yield "service", mint(roles=["service:requests"], scopes=sorted(scopes))


async def problems_of(
    client: httpx.AsyncClient, mint: Mint, declared: Mapping[tuple[str, str], str]
) -> list[str]:
    """Where the service does not do what the table says (empty: it does)."""
    problems = []
    for (method, path), rule in {**KERNEL, **declared}.items():
        route = f"{method} {path}"
        if rule == PUBLIC:
            anonymous = await call(client, method, path)
            if anonymous.status in (401, 403):
                problems.append(f"{route}: declared public, refuses anonymous callers")
            continue
        needed = None if rule == PEOPLE else rule
        for kind, token in clients_without(mint, needed):
            answer = await call(client, method, path, token)
            if rule == PEOPLE:
                if answer.status not in (401, 403) or answer.code == "insufficient_scope":
                    problems.append(f"{route}: people only, lets a {kind} client in ({answer})")
            elif (answer.status, answer.code) != (403, "insufficient_scope") or (
                f'scope="{rule}"' not in answer.challenge
            ):
                problems.append(f"{route}: a {kind} client without {rule!r} got {answer}")
        if needed is not None:
            holder = mint(roles=["client:tax"], agency="tax", scopes=[needed])
            answer = await call(client, method, path, holder)
            # past the scope check (the use case may still refuse it for other reasons)
            if answer.status == 401 or answer.code == "insufficient_scope":
                problems.append(f"{route}: a client with {needed!r} is still refused ({answer})")
    return problems


@dataclass
class Service:
    app: FastAPI
    client: httpx.AsyncClient
    mint: Mint


def shared_key_minter(token_factory: TokenFactory) -> Mint:
    def mint(*, roles: list[str], scopes: list[str], agency: str | None = None) -> str:
        return token_factory(
            roles=roles, scopes=scopes, agency=agency, national_code=None, sub="client-x"
        )

    return mint


def identity_minter(app: FastAPI) -> Mint:
    """Identity trusts only its own keys: its tokens for it."""

    def mint(*, roles: list[str], scopes: list[str], agency: str | None = None) -> str:
        return issue_access_token(
            keyset=app.state.test_keyset,
            policy=token_policy(app.state.settings),
            subject="client-x",
            roles=roles,
            now=datetime.now(UTC),
            agency=agency,
            scopes=scopes,
        )

    return mint


@pytest.fixture(scope="module")
async def services(
    migrated_database: MigratedDatabase,
    kafka_bootstrap_servers: str,
    jwks_url: str,
    token_factory: TokenFactory,
) -> AsyncIterator[dict[str, Service]]:
    await create_topics(kafka_bootstrap_servers, PLATFORM_TOPICS)
    started: dict[str, Service] = {}
    contexts = []
    try:
        for package in ROUTES:
            config = importlib.import_module(f"{package}.config")
            main = importlib.import_module(f"{package}.main")
            settings = config.Settings(
                database_url=await migrated_database(package),
                kafka_bootstrap_servers=kafka_bootstrap_servers,
                kafka_idempotence=False,
                jwks_url=jwks_url,
            )
            app = main.create_app(settings)
            context = running_app(app)
            client = await context.__aenter__()
            contexts.append(context)
            mint = shared_key_minter(token_factory)
            if package == "panjereh.identity":
                app.state.test_keyset = await app.state.key_source.keyset()
                mint = identity_minter(app)
            started[package] = Service(app=app, client=client, mint=mint)
        yield started
    finally:
        for context in reversed(contexts):
            await context.__aexit__(None, None, None)


@pytest.mark.parametrize("package", ROUTES)
class TestRouteTable:
    async def test_every_route_is_declared(
        self, services: dict[str, Service], package: str
    ) -> None:
        app = services[package].app
        assert undeclared(app, ROUTES[package]) == set()
        assert set(ROUTES[package]) <= served_routes(app), "the table names a route no more"

    async def test_clients_need_the_declared_scope(
        self, services: dict[str, Service], package: str
    ) -> None:
        service = services[package]
        problems = await problems_of(service.client, service.mint, ROUTES[package])
        assert not problems, "\n".join(problems)


class TestAPlantedRoute:
    async def test_a_client_route_without_a_scope_is_caught(
        self, services: dict[str, Service]
    ) -> None:
        service = services["panjereh.inquiry_broker"]
        app = service.app
        before = [id(route) for route in app.router.routes]

        @app.get("/api/v1/planted")
        async def planted(principal: CurrentPrincipal) -> dict[str, Any]:
            """Any valid token, a machine client's included, and no scope asked."""
            assert isinstance(principal, Principal)
            return {}

        try:
            missing = undeclared(app, ROUTES["panjereh.inquiry_broker"])
            # declaring it as if it needed a scope does not help: the service asks for none
            pretended = {**ROUTES["panjereh.inquiry_broker"], ("GET", "/api/v1/planted"): "x"}
            problems = await problems_of(service.client, service.mint, pretended)
            as_people = {**ROUTES["panjereh.inquiry_broker"], ("GET", "/api/v1/planted"): PEOPLE}
            people_problems = await problems_of(service.client, service.mint, as_people)
        finally:
            app.router.routes[:] = [r for r in app.router.routes if id(r) in before]
        assert missing == {("GET", "/api/v1/planted")}
        assert any(problem.startswith("GET /api/v1/planted") for problem in problems)
        assert any(problem.startswith("GET /api/v1/planted") for problem in people_problems)
