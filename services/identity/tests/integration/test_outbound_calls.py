"""No call to another system while a transaction is open: the guard is in place, and it holds.

Identity's clients of the inquiry broker and the SMS provider are the kernel's
``outbound_client``: a request sent while the task holds a database transaction raises
``NetworkCallInTransaction`` before anything leaves the process. So a first login (which asks
the civil registry) and an SMS sent through the provider *succeeding* with these clients proves
they call out with no transaction open; the guard firing when called inside one proves it would
have caught them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from panjereh.common.http import NetworkCallInTransaction
from panjereh.common.testing.plugin import MigratedDatabase, running_app
from panjereh.common.testing.servers import loopback_server
from panjereh.identity.main import create_app
from panjereh.identity.sms import VerifyLookupSmsGateway, verify_lookup_client
from panjereh.identity.testing import (
    InquiryBrokerDouble,
    SmsProviderDouble,
    login,
    mobile_for,
    national_code_for,
    settings_for_tests,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def provider() -> AsyncIterator[SmsProviderDouble]:
    double = SmsProviderDouble()
    async with loopback_server(double.app()) as url:
        double.url = url
        yield double


@pytest.fixture(scope="module")
async def app_with_provider(
    migrated_database: MigratedDatabase,
    broker_double: InquiryBrokerDouble,
    provider: SmsProviderDouble,
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """Identity sending its SMS through the (double of the) real provider API.

    On a database of its own: the session's app, with the console gateway, must not take
    these messages first.
    """
    settings = settings_for_tests(
        await migrated_database("panjereh.identity"),
        broker_double.url,
        sms_provider="verify-lookup",
        sms_api_url=provider.url,
        sms_api_key="k3y",
        sms_attempts_per_dispatch=1,
    )
    app = create_app(settings)
    async with running_app(app) as client:
        yield app, client


class TestTheGuardHolds:
    async def test_a_first_login_asks_the_registry_and_signs_in(
        self, client: httpx.AsyncClient, broker_double: InquiryBrokerDouble
    ) -> None:
        national_code = national_code_for(990_001)
        asked = len(broker_double.asked("civil-registry.person"))
        tokens = await login(client, national_code, mobile_for(990_001))
        assert tokens["token_type"] == "Bearer"
        registry = broker_double.asked("civil-registry.person")[asked:]
        assert [body["subject"] for body in registry] == [national_code]

    async def test_sms_leave_through_the_provider_api(
        self,
        app_with_provider: tuple[FastAPI, httpx.AsyncClient],
        provider: SmsProviderDouble,
    ) -> None:
        _, client = app_with_provider
        mobile = mobile_for(990_002)
        response = await client.post(
            "/api/v1/auth/otp",
            json={"national_code": national_code_for(990_002), "mobile": mobile},
            headers={"X-Forwarded-For": "192.0.2.99"},
        )
        assert response.status_code == 202
        for _ in range(200):
            if any(sms["receptor"] == mobile for sms in provider.received):
                break
            await asyncio.sleep(0.025)
        delivered = [sms for sms in provider.received if sms["receptor"] == mobile]
        assert len(delivered) == 1
        assert delivered[0]["template"] == "panjereh-otp"
        assert len(delivered[0]["token"]) == 6


class TestTheGuardFires:
    async def test_the_inquiry_client_refuses_to_call_inside_a_transaction(
        self, app: FastAPI, broker_double: InquiryBrokerDouble
    ) -> None:
        asked = len(broker_double.requests)
        async with app.state.database.transaction():
            with pytest.raises(NetworkCallInTransaction):
                await app.state.inquiries.person(
                    national_code=national_code_for(990_003), reference="guard-test"
                )
        assert len(broker_double.requests) == asked  # nothing left the process

    async def test_the_sms_gateway_refuses_to_send_inside_a_transaction(
        self, app: FastAPI, provider: SmsProviderDouble
    ) -> None:
        attempts = provider.attempts
        async with verify_lookup_client("k3y", timeout=httpx.Timeout(2.0)) as http:
            gateway = VerifyLookupSmsGateway(http, base_url=provider.url)
            async with app.state.database.transaction():
                with pytest.raises(NetworkCallInTransaction):
                    await gateway.send(
                        mobile=mobile_for(990_004), template="panjereh-otp", tokens=["123456"]
                    )
            # the same call outside the transaction goes through
            assert await gateway.send(
                mobile=mobile_for(990_004), template="panjereh-otp", tokens=["123456"]
            )
        assert provider.attempts == attempts + 1
