"""Fixtures of the requests service's tests: a migrated database, the app, cards, tokens."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from panjereh.common.db import Database
from panjereh.common.testing.kafka import create_topics
from panjereh.common.testing.plugin import MigratedDatabase, running_app
from panjereh.common.testing.servers import loopback_server
from panjereh.common.testing.tokens import TokenFactory, bearer
from panjereh.contracts.catalog import PublishedCard
from panjereh.contracts.topics import PLATFORM_TOPICS, agency_requests, with_dead_letters
from panjereh.requests.config import Settings
from panjereh.requests.main import create_app
from panjereh.requests.orchestrator import Orchestrator
from panjereh.requests.service import replica
from panjereh.requests.testing import IdentityDouble, InquiryBrokerDouble

#: agencies whose work topics the tests' cards send to (the relay needs the topics to exist)
TEST_AGENCIES = ("student-welfare", "tax", "civil-registry")


@pytest.fixture(scope="session")
async def platform_topics(kafka_bootstrap_servers: str) -> str:
    agency_topics = [agency_requests(agency) for agency in TEST_AGENCIES]
    await create_topics(
        kafka_bootstrap_servers, with_dead_letters([*PLATFORM_TOPICS, *agency_topics])
    )
    return kafka_bootstrap_servers


@pytest.fixture(scope="session")
async def requests_url(migrated_database: MigratedDatabase) -> str:
    return await migrated_database("panjereh.requests")


@pytest.fixture(scope="session")
async def database(requests_url: str) -> AsyncIterator[Database]:
    db = Database(requests_url, pool_size=4)
    try:
        yield db
    finally:
        await db.dispose()


PublishCard = Callable[[PublishedCard], Awaitable[None]]


@pytest.fixture(scope="session")
def publish_card(database: Database) -> PublishCard:
    """Put a card into the replica, as the catalog event handler would."""

    async def publish(card: PublishedCard) -> None:
        async with database.transaction() as session:
            await replica.record_published(session, card=card)

    return publish


def settings_for(database_url: str, *, jwks_url: str, kafka: str, **overrides: Any) -> Settings:
    return Settings(
        database_url=database_url,
        jwks_url=jwks_url,
        kafka_bootstrap_servers=kafka,
        kafka_idempotence=False,  # the embedded broker refuses idempotent producers
        **overrides,
    )


@pytest.fixture(scope="session")
async def api(
    requests_url: str, jwks_url: str, platform_topics: str
) -> AsyncIterator[httpx.AsyncClient]:
    """The requests app with no background workers: intake and reads only."""
    settings = settings_for(
        requests_url, jwks_url=jwks_url, kafka=platform_topics, run_workers=False
    )
    async with running_app(create_app(settings)) as client:
        yield client


class People:
    """Tokens for the people and systems the tests act as."""

    def __init__(self, tokens: TokenFactory) -> None:
        self.tokens = tokens

    def citizen(self, sub: str = "citizen-a", national_code: str = "0013542419") -> dict[str, str]:
        return bearer(self.tokens(sub=sub, roles=["citizen"], national_code=national_code))

    def officer(self, agency: str) -> dict[str, str]:
        return bearer(self.tokens(sub=f"officer-{agency}", roles=[f"officer:{agency}"]))

    def agency_system(
        self, agency: str, *, scopes: tuple[str, ...] = ("requests:work",)
    ) -> dict[str, str]:
        return bearer(
            self.tokens(
                sub=f"agency-{agency}", roles=[f"client:{agency}"], agency=agency, scopes=scopes
            )
        )


@pytest.fixture(scope="session")
def people(token_factory: TokenFactory) -> People:
    return People(token_factory)


# ------------------------------------------------------------------------ processing
@dataclass
class Doubles:
    identity: IdentityDouble
    broker: InquiryBrokerDouble


@pytest.fixture(scope="session")
async def doubles() -> AsyncIterator[Doubles]:
    """Identity's token endpoint and the inquiry broker, as real HTTP servers on loopback."""
    identity = IdentityDouble()
    broker = InquiryBrokerDouble(identity=identity)
    async with (
        loopback_server(identity.app()) as identity_url,
        loopback_server(broker.app()) as broker_url,
    ):
        identity.url, broker.url = identity_url, broker_url
        yield Doubles(identity=identity, broker=broker)


@pytest.fixture
def broker(doubles: Doubles) -> InquiryBrokerDouble:
    """The broker double, answering normally again (a test may break it on purpose)."""
    doubles.broker.reset()
    doubles.identity.available = True
    return doubles.broker


@dataclass
class Platform:
    """A requests app with its workers, and a handle on its own database."""

    app: FastAPI
    client: httpx.AsyncClient
    database: Database

    @property
    def orchestrator(self) -> Orchestrator:
        orchestrator: Orchestrator = self.app.state.orchestrator
        return orchestrator

    async def publish(self, card: PublishedCard) -> None:
        async with self.database.transaction() as session:
            await replica.record_published(session, card=card)

    async def submit(
        self, headers: dict[str, str], code: str, inputs: dict[str, Any] | None = None
    ) -> str:
        response = await self.client.post(
            "/api/v1/requests", json={"service_code": code, "inputs": inputs or {}}, headers=headers
        )
        assert response.status_code == 201, response.text
        tracking_code: str = response.json()["tracking_code"]
        return tracking_code

    async def settled(
        self,
        headers: dict[str, str],
        tracking_code: str,
        statuses: Iterable[str] = ("approved", "rejected", "in_review", "failed"),
        *,
        within: float = 20.0,
    ) -> dict[str, Any]:
        """The request once it reaches one of ``statuses`` (fails after ``within`` s)."""
        wanted = set(statuses)
        deadline = time.monotonic() + within
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            response = await self.client.get(f"/api/v1/requests/{tracking_code}", headers=headers)
            body = response.json()
            if body.get("status") in wanted:
                return body
            await asyncio.sleep(0.05)
        msg = f"{tracking_code} still {body.get('status')} after {within} s, wanted {wanted}"
        raise AssertionError(msg)


#: fast loops for tests: poll often, wait briefly at the broker, retry soon
FAST = {
    "step_poll_seconds": 0.1,
    "step_lease_seconds": 5.0,
    "inquiry_wait_seconds": 1.0,
    "inquiry_retry_seconds": 0.2,
    # 0.2 + 0.4 + 0.8 + 1.6 + 3.2 s of retries before an inquiry fails: room for an outage
    "inquiry_max_attempts": 6,
    "sla_check_seconds": 3600.0,
    "consume_events": False,
}
StartPlatform = Callable[..., contextlib.AbstractAsyncContextManager[Platform]]


@pytest.fixture(scope="session")
def start_platform(doubles: Doubles, jwks_url: str, platform_topics: str) -> StartPlatform:
    """``async with start_platform(database_url, **settings) as platform:`` a running app."""

    @contextlib.asynccontextmanager
    async def start(database_url: str, **overrides: Any) -> AsyncIterator[Platform]:
        settings = settings_for(
            database_url,
            jwks_url=jwks_url,
            kafka=platform_topics,
            inquiry_broker_url=doubles.broker.url,
            identity_url=doubles.identity.url,
            **{**FAST, **overrides},
        )
        app = create_app(settings)
        database = Database(database_url, pool_size=2)
        try:
            async with running_app(app) as client:
                yield Platform(app=app, client=client, database=database)
        finally:
            await database.dispose()

    return start


@pytest.fixture(scope="session")
async def platform(
    start_platform: StartPlatform, migrated_database: MigratedDatabase
) -> AsyncIterator[Platform]:
    """One running app with workers on a database of its own, shared by the processing tests."""
    url = await migrated_database("panjereh.requests")
    async with start_platform(url) as running:
        yield running
