"""SMS delivery: the verify-lookup adapter over real HTTP, and the queue's dispatcher."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from panjereh.common.db import Database
from panjereh.common.testing.plugin import running_app
from panjereh.identity.crypto import Keys
from panjereh.identity.dependencies import unit_of_work
from panjereh.identity.main import create_app
from panjereh.identity.models import SmsMessage
from panjereh.identity.sms import (
    SmsDispatcher,
    SmsPermanentFailure,
    SmsTemporaryFailure,
    VerifyLookupSmsGateway,
    enqueue,
)
from panjereh.identity.testing import (
    InquiryBrokerDouble,
    SmsProviderDouble,
    loopback_server,
    mobile_for,
    national_code_for,
    settings_for_tests,
)

pytestmark = pytest.mark.integration

KEYS = Keys.from_secret("test-master-key")


@pytest.fixture(scope="module")
async def provider() -> AsyncIterator[SmsProviderDouble]:
    double = SmsProviderDouble()
    async with loopback_server(double.app()) as url:
        double.url = url
        yield double


@pytest.fixture
def fresh_provider(provider: SmsProviderDouble) -> SmsProviderDouble:
    provider.fail_next, provider.hang, provider.refuse = 0, False, False
    provider.received.clear()
    provider.attempts = 0
    return provider


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(2.0)) as client:
        yield client


def gateway(http: httpx.AsyncClient, provider: SmsProviderDouble) -> VerifyLookupSmsGateway:
    return VerifyLookupSmsGateway(
        http, base_url=provider.url, api_key="k3y", attempts=3, backoff_seconds=0.01
    )


class TestVerifyLookupAdapter:
    async def test_retries_a_provider_that_fails_twice_then_succeeds(
        self, http: httpx.AsyncClient, fresh_provider: SmsProviderDouble
    ) -> None:
        fresh_provider.fail_next = 2
        message_id = await gateway(http, fresh_provider).send(
            mobile="09121234567", template="panjereh-otp", tokens=["123456"]
        )
        assert fresh_provider.attempts == 3
        assert message_id == "8792344"
        assert fresh_provider.received == [
            {
                "receptor": "09121234567",
                "template": "panjereh-otp",
                "token": "123456",
                "api_key": "k3y",
            }
        ]

    async def test_gives_up_after_its_attempts_with_a_temporary_failure(
        self, http: httpx.AsyncClient, fresh_provider: SmsProviderDouble
    ) -> None:
        fresh_provider.fail_next = 5
        with pytest.raises(SmsTemporaryFailure):
            await gateway(http, fresh_provider).send(
                mobile="09121234567", template="panjereh-otp", tokens=["1"]
            )
        assert fresh_provider.attempts == 3

    async def test_a_refusal_is_permanent_and_not_retried(
        self, http: httpx.AsyncClient, fresh_provider: SmsProviderDouble
    ) -> None:
        fresh_provider.refuse = True
        with pytest.raises(SmsPermanentFailure):
            await gateway(http, fresh_provider).send(
                mobile="09121234567", template="nope", tokens=["1"]
            )
        assert fresh_provider.attempts == 1

    async def test_persian_tokens_travel_without_spaces(
        self, http: httpx.AsyncClient, fresh_provider: SmsProviderDouble
    ) -> None:
        await gateway(http, fresh_provider).send(
            mobile="09121234567", template="panjereh-request-status", tokens=["12345", "تأیید شد"]
        )
        assert fresh_provider.received[0]["token2"] == "تأیید\u200cشد"


class TestDispatcher:
    @pytest.fixture
    async def database(self, identity_database: str) -> AsyncIterator[Database]:
        database = Database(identity_database, pool_size=2)
        yield database
        await database.dispose()

    async def queue(self, database: Database, *, valid_for: timedelta) -> uuid.UUID:
        async with unit_of_work(database) as session:
            return enqueue(
                session,
                keys=KEYS,
                mobile=mobile_for(uuid.uuid4().int % 10**6),
                template="panjereh-otp",
                tokens=["654321"],
                now=datetime.now(UTC),
                valid_for=valid_for,
            )

    async def message(self, database: Database, message_id: uuid.UUID) -> SmsMessage:
        async with database.sessions() as session:
            row = await session.get(SmsMessage, message_id)
            assert row is not None
            return row

    def dispatcher(
        self, database: Database, http: httpx.AsyncClient, provider: SmsProviderDouble
    ) -> SmsDispatcher:
        return SmsDispatcher(
            database.sessions,
            VerifyLookupSmsGateway(
                http, base_url=provider.url, api_key="k", attempts=1, backoff_seconds=0
            ),
            KEYS,
            poll_seconds=1,
            max_attempts=5,
            retry_base_seconds=0,
        )

    async def test_an_outage_keeps_the_message_and_a_later_pass_sends_it(
        self,
        database: Database,
        http: httpx.AsyncClient,
        fresh_provider: SmsProviderDouble,
    ) -> None:
        message_id = await self.queue(database, valid_for=timedelta(minutes=2))
        dispatcher = self.dispatcher(database, http, fresh_provider)
        fresh_provider.fail_next = 1
        await dispatcher.dispatch_due()
        pending = await self.message(database, message_id)
        assert pending.status == "pending"
        assert pending.attempts == 1
        assert pending.sealed_tokens is not None
        assert pending.last_error
        await dispatcher.dispatch_due()
        sent = await self.message(database, message_id)
        assert sent.status == "sent"
        assert sent.sealed_tokens is None  # the code is erased once delivered
        assert sent.provider_message_id
        assert [m["token"] for m in fresh_provider.received] == ["654321"]

    async def test_an_expired_otp_message_is_dropped_not_sent(
        self,
        database: Database,
        http: httpx.AsyncClient,
        fresh_provider: SmsProviderDouble,
    ) -> None:
        message_id = await self.queue(database, valid_for=timedelta(seconds=-1))
        await self.dispatcher(database, http, fresh_provider).dispatch_due()
        row = await self.message(database, message_id)
        assert row.status == "expired"
        assert row.sealed_tokens is None
        assert fresh_provider.received == []

    async def test_the_tokens_are_encrypted_at_rest(self, database: Database) -> None:
        message_id = await self.queue(database, valid_for=timedelta(minutes=2))
        row = await self.message(database, message_id)
        assert row.sealed_tokens is not None
        assert b"654321" not in row.sealed_tokens
        assert KEYS.decrypt(row.sealed_tokens, context=message_id.bytes) == b'["654321"]'


class TestOtpEndpointDuringAProviderOutage:
    async def test_answers_quickly_while_the_provider_hangs(
        self,
        identity_database: str,
        broker_double: InquiryBrokerDouble,
        fresh_provider: SmsProviderDouble,
    ) -> None:
        fresh_provider.hang = True
        settings = settings_for_tests(
            identity_database,
            broker_double.url,
            sms_provider="verify-lookup",
            sms_api_url=fresh_provider.url,
            sms_api_key="k",
            sms_timeout_seconds=0.3,
            sms_attempts_per_dispatch=1,
        )
        seed = 777_001
        async with running_app(create_app(settings)) as client:
            started = time.monotonic()
            response = await client.post(
                "/api/v1/auth/otp",
                json={"national_code": national_code_for(seed), "mobile": mobile_for(seed)},
                headers={"X-Forwarded-For": "192.0.2.77"},
            )
            elapsed = time.monotonic() - started
        assert response.status_code == 202
        assert elapsed < 1.0
