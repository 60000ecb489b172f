"""Identity on a real, migrated PostgreSQL, with loopback HTTP doubles for its peers."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI

from panjereh.common.testing.plugin import MigratedDatabase, running_app
from panjereh.common.testing.servers import loopback_server
from panjereh.identity.main import create_app
from panjereh.identity.testing import InquiryBrokerDouble, settings_for_tests


@pytest.fixture(scope="session")
async def identity_database(migrated_database: MigratedDatabase) -> str:
    return await migrated_database("panjereh.identity")


@pytest.fixture(scope="session")
async def broker_double() -> AsyncIterator[InquiryBrokerDouble]:
    double = InquiryBrokerDouble()
    async with loopback_server(double.app()) as url:
        double.url = url
        yield double


@pytest.fixture(autouse=True)
def broker_available(broker_double: InquiryBrokerDouble) -> Iterator[None]:
    broker_double.available, broker_double.delay = True, 0.0
    yield
    broker_double.available, broker_double.delay = True, 0.0


@pytest.fixture(scope="session")
async def identity_app(
    identity_database: str, broker_double: InquiryBrokerDouble
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings_for_tests(identity_database, broker_double.url))
    async with running_app(app) as client:
        yield app, client


@pytest.fixture
def client(identity_app: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return identity_app[1]


@pytest.fixture
def app(identity_app: tuple[FastAPI, httpx.AsyncClient]) -> FastAPI:
    return identity_app[0]


_seeds = itertools.count(1)


@pytest.fixture
def seed() -> int:
    """A number no other test in this session uses (distinct codes, mobiles, addresses)."""
    return next(_seeds)
