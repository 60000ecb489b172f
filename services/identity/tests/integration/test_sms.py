"""SMS delivery: the verify-lookup adapter over real HTTP, and the queue's dispatcher."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from panjereh.common.db import Database, in_transaction
from panjereh.common.telemetry import in_memory_exporter
from panjereh.common.testing.plugin import MigratedDatabase, running_app
from panjereh.common.testing.servers import loopback_server
from panjereh.common.workers import PeriodicWorker
from panjereh.identity.crypto import Keys
from panjereh.identity.main import create_app
from panjereh.identity.models import SmsMessage
from panjereh.identity.sms import (
    SmsDispatcher,
    SmsPermanentFailure,
    SmsQueue,
    SmsTemporaryFailure,
    VerifyLookupSmsGateway,
    verify_lookup_client,
)
from panjereh.identity.testing import (
    InquiryBrokerDouble,
    SmsProviderDouble,
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
def fresh_provider(provider: SmsProviderDouble) -> Iterator[SmsProviderDouble]:
    provider.reset()
    yield provider
    provider.release()  # a call a test left hanging ends with the test


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    # the client identity's setup gives the SMS gateway: it holds the key and, like every
    # outbound client, refuses to send inside a transaction
    async with verify_lookup_client("k3y", timeout=httpx.Timeout(2.0)) as client:
        yield client


def gateway(http: httpx.AsyncClient, provider: SmsProviderDouble) -> VerifyLookupSmsGateway:
    return VerifyLookupSmsGateway(http, base_url=provider.url, attempts=3, backoff_seconds=0.01)


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


@pytest.fixture(scope="module")
async def dispatcher_database(migrated_database: MigratedDatabase) -> str:
    """A database of its own: no running app's dispatcher sends these tests' messages first."""
    return await migrated_database("panjereh.identity")


@pytest.fixture
async def queue_database(dispatcher_database: str) -> AsyncIterator[Database]:
    """The dispatcher tests' database, its queue emptied of messages earlier tests left."""
    database = Database(dispatcher_database, pool_size=4)
    async with database.transaction() as session:
        await session.execute(
            text(
                "UPDATE identity.sms_message SET status = 'expired', sealed_tokens = NULL"
                " WHERE status = 'pending'"
            )
        )
    yield database
    await database.dispose()


class TestDispatcher:
    @pytest.fixture
    def database(self, queue_database: Database) -> Database:
        return queue_database

    async def queue(self, database: Database, *, valid_for: timedelta) -> uuid.UUID:
        async with database.transaction() as session:
            return SmsQueue(KEYS).enqueue(
                session,
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
        self,
        database: Database,
        http: httpx.AsyncClient,
        provider: SmsProviderDouble,
        *,
        lease_seconds: float = 30,
    ) -> SmsDispatcher:
        return SmsDispatcher(
            database,
            VerifyLookupSmsGateway(http, base_url=provider.url, attempts=1, backoff_seconds=0),
            KEYS,
            max_attempts=5,
            retry_base_seconds=0,
            lease_seconds=lease_seconds,
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

    async def test_a_worker_idling_at_long_waits_is_woken_when_a_retry_falls_due(
        self,
        database: Database,
        http: httpx.AsyncClient,
        fresh_provider: SmsProviderDouble,
    ) -> None:
        """The first pass fails and records a retry 0.5 s later; the worker's own next look
        is 30 s away, so only the retry's due time can send the message in time."""
        provider = VerifyLookupSmsGateway(
            http, base_url=fresh_provider.url, attempts=1, backoff_seconds=0
        )
        dispatcher = SmsDispatcher(
            database,
            provider,
            KEYS,
            max_attempts=5,
            retry_base_seconds=0.25,
            lease_seconds=30,
        )
        worker = PeriodicWorker("sms-dispatcher", dispatcher.step, interval=30, idle_interval=60)
        dispatcher.pace(worker)
        fresh_provider.fail_next = 1
        message_id = await self.queue(database, valid_for=timedelta(minutes=2))
        await worker.start()
        try:
            deadline = time.monotonic() + 5
            while (await self.message(database, message_id)).status != "sent":
                assert time.monotonic() < deadline, "the retry was not sent in time"
                await asyncio.sleep(0.05)
        finally:
            await worker.stop()
            await dispatcher.close()
        assert fresh_provider.attempts == 2
        assert worker.runs == 2  # the first pass, then the one the retry woke

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


class TestSmsQueue:
    async def test_wakes_the_dispatcher_after_the_commit_and_never_on_rollback(
        self, queue_database: Database
    ) -> None:
        woken: list[bool] = []
        sms = SmsQueue(KEYS, wake=lambda: woken.append(in_transaction()))

        def enqueue(session: AsyncSession) -> uuid.UUID:
            return sms.enqueue(
                session,
                mobile=mobile_for(uuid.uuid4().int % 10**6),
                template="panjereh-otp",
                tokens=["1"],
                now=datetime.now(UTC),
                valid_for=timedelta(minutes=2),
            )

        async with queue_database.transaction() as session:
            enqueue(session)
            assert woken == []  # not before the message is committed
        assert woken == [False]
        rolled_back: list[uuid.UUID] = []

        async def fail_after_enqueueing() -> None:
            async with queue_database.transaction() as session:
                rolled_back.append(enqueue(session))
                raise RuntimeError

        with pytest.raises(RuntimeError):
            await fail_after_enqueueing()
        assert woken == [False]
        async with queue_database.transaction() as session:
            assert await session.get(SmsMessage, rolled_back[0]) is None


class RecordingGateway:
    """Sends nothing; notes, at the moment of each send, whether it could have been held up."""

    def __init__(self, database: Database, *, hold: asyncio.Event | None = None) -> None:
        self.database = database
        self.hold = hold
        self.entered = asyncio.Event()
        self.sent: list[tuple[str, list[str]]] = []
        self.in_transaction: list[bool] = []
        self.row_was_free: list[bool] = []

    async def send(self, *, mobile: str, template: str, tokens: Sequence[str]) -> str:
        self.in_transaction.append(in_transaction())
        # another connection can lock the message right now: the dispatcher holds no lock on it
        async with self.database.engine.connect() as connection:
            locked = await connection.execute(
                text(
                    "SELECT id FROM identity.sms_message WHERE mobile = :mobile FOR UPDATE NOWAIT"
                ),
                {"mobile": mobile},
            )
            self.row_was_free.append(locked.first() is not None)
            await connection.rollback()
        self.entered.set()
        if self.hold is not None:
            await self.hold.wait()
        self.sent.append((template, list(tokens)))
        return f"recorded-{len(self.sent)}"


class TestClaimSendRecord:
    @pytest.fixture
    def database(self, queue_database: Database) -> Database:
        return queue_database

    async def queue(self, database: Database) -> uuid.UUID:
        async with database.transaction() as session:
            return SmsQueue(KEYS).enqueue(
                session,
                mobile=mobile_for(uuid.uuid4().int % 10**6),
                template="panjereh-otp",
                tokens=["112233"],
                now=datetime.now(UTC),
                valid_for=timedelta(minutes=2),
            )

    async def message(self, database: Database, message_id: uuid.UUID) -> SmsMessage:
        async with database.transaction() as session:
            row = await session.get(SmsMessage, message_id)
            assert row is not None
            return row

    def dispatcher(
        self, database: Database, gateway: RecordingGateway, *, lease_seconds: float = 30
    ) -> SmsDispatcher:
        return SmsDispatcher(
            database,
            gateway,
            KEYS,
            max_attempts=5,
            retry_base_seconds=0,
            lease_seconds=lease_seconds,
        )

    async def test_sends_with_no_transaction_open_and_no_lock_on_the_message(
        self, database: Database
    ) -> None:
        message_id = await self.queue(database)
        gateway = RecordingGateway(database)
        await self.dispatcher(database, gateway).dispatch_due()
        assert gateway.sent == [("panjereh-otp", ["112233"])]
        assert gateway.in_transaction == [False]
        assert gateway.row_was_free == [True]
        row = await self.message(database, message_id)
        assert (row.status, row.attempts, row.provider_message_id) == ("sent", 1, "recorded-1")
        assert row.sealed_tokens is None

    async def test_a_dispatcher_that_dies_after_claiming_loses_nothing(
        self, database: Database
    ) -> None:
        message_id = await self.queue(database)
        stuck = RecordingGateway(database, hold=asyncio.Event())
        dying = asyncio.create_task(
            self.dispatcher(database, stuck, lease_seconds=1).dispatch_due()
        )
        await asyncio.wait_for(stuck.entered.wait(), timeout=5)
        dying.cancel()  # the process dies mid-send: the outcome is never recorded
        with contextlib.suppress(asyncio.CancelledError):
            await dying
        claimed = await self.message(database, message_id)
        assert claimed.status == "pending"
        assert claimed.attempts == 1
        assert claimed.sealed_tokens is not None
        assert claimed.next_attempt_at > datetime.now(UTC)  # leased, not due

        survivor = RecordingGateway(database)
        assert await self.dispatcher(database, survivor).dispatch_due() == 0  # lease still held
        assert survivor.sent == []
        await asyncio.sleep(1.1)  # the lease runs out
        await self.dispatcher(database, survivor).dispatch_due()
        assert survivor.sent == [("panjereh-otp", ["112233"])]
        sent = await self.message(database, message_id)
        assert (sent.status, sent.attempts) == ("sent", 2)

    async def test_two_dispatchers_at_once_send_a_message_once(self, database: Database) -> None:
        message_id = await self.queue(database)
        release = asyncio.Event()
        first, second = RecordingGateway(database, hold=release), RecordingGateway(database)
        running = asyncio.create_task(self.dispatcher(database, first).dispatch_due())
        await asyncio.wait_for(first.entered.wait(), timeout=5)
        # the first holds the lease while it sends: the second finds nothing due
        assert await self.dispatcher(database, second).dispatch_due() == 0
        release.set()
        await running
        assert (len(first.sent), len(second.sent)) == (1, 0)
        assert (await self.message(database, message_id)).status == "sent"


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


class TestProviderKeyStaysSecret:
    """Kavenegar wants the API key in the URL path: it must reach neither spans nor logs."""

    SECRET = "s3cr3t-Kavenegar-Key-0123456789"

    async def test_a_real_send_leaves_the_key_out_of_spans_and_log_records(
        self,
        identity_database: str,
        broker_double: InquiryBrokerDouble,
        fresh_provider: SmsProviderDouble,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level("DEBUG")
        spans = in_memory_exporter()
        spans.clear()
        settings = settings_for_tests(
            identity_database,
            broker_double.url,
            sms_provider="verify-lookup",
            sms_api_url=fresh_provider.url,
            sms_api_key=self.SECRET,
            sms_attempts_per_dispatch=1,
        )
        seed = 777_002
        fresh_provider.fail_next = 1  # a failed try and a retry: both paths are traced and logged
        root = logging.getLogger()
        async with running_app(create_app(settings)) as client:
            # the app's logging setup replaced the root handlers and quieted httpx's own
            # "HTTP Request: POST <url>" line: listen again, at every level
            root.addHandler(caplog.handler)
            root.setLevel(logging.DEBUG)
            caplog.set_level(logging.DEBUG, logger="httpx")
            response = await client.post(
                "/api/v1/auth/otp",
                json={"national_code": national_code_for(seed), "mobile": mobile_for(seed)},
                headers={"X-Forwarded-For": "192.0.2.78"},
            )
            assert response.status_code == 202
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if mobile_for(seed) in [m["receptor"] for m in fresh_provider.received]:
                    break
                await asyncio.sleep(0.025)
        root.removeHandler(caplog.handler)
        # the send really happened, with the key where the provider wants it (messages other
        # tests left pending in this database may go out too)
        receptors = [m["receptor"] for m in fresh_provider.received]
        assert mobile_for(seed) in receptors, (fresh_provider.attempts, receptors)
        assert {m["api_key"] for m in fresh_provider.received} == {self.SECRET}
        provider_spans = [
            span
            for span in spans.get_finished_spans()
            if "lookup.json" in str(dict(span.attributes or {}))
        ]
        assert len(provider_spans) >= 2  # the calls are still traced, under a redacted URL
        for span in spans.get_finished_spans():
            exported = f"{span.name} {dict(span.attributes or {})} {span.events} {span.status}"
            assert self.SECRET not in exported
        assert any("lookup.json" in record.getMessage() for record in caplog.records)
        for record in caplog.records:
            strings = [str(v) for v in record.__dict__.values()]
            assert self.SECRET not in record.getMessage() + " ".join(strings)
