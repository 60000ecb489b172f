"""The orchestration survives what production does to it: a broker outage, answers that come
late, a replica that dies mid-step, and two replicas working the same table."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import pytest
from sqlalchemy import text

from panjereh.common.db import Database
from panjereh.common.testing.plugin import MigratedDatabase
from panjereh.contracts.samples import published_card
from panjereh.requests.testing import InquiryBrokerDouble, answered_events

pytestmark = pytest.mark.integration

PERSON_INQUIRY = "civil-registry.person"
APPROVE_THE_LIVING = [
    {
        "id": "alive",
        "when": f'inquiries["{PERSON_INQUIRY}"].alive',
        "outcome": "approve",
        "reason": {"fa": "در قید حیات", "en": "Alive"},
    }
]


def new_code() -> str:
    return "97" + "".join(secrets.choice("0123456789") for _ in range(9))


async def loan_card(platform: Any, **overrides: Any) -> str:
    code = new_code()
    card = {"agency": "student-welfare", "inquiries": [PERSON_INQUIRY], **overrides}
    await platform.publish(published_card(code, rules=APPROVE_THE_LIVING, **card))
    return code


async def evidence(database: Database, tracking_code: str) -> dict[str, Any]:
    async with database.transaction() as session:
        row = (
            await session.execute(
                text(
                    "SELECT i.status, i.attempts, i.error, i.broker_inquiry_id, r.status"
                    " FROM requests.request_inquiry i JOIN requests.request r"
                    " ON r.id = i.request_id WHERE r.tracking_code = :t"
                ),
                {"t": tracking_code},
            )
        ).one()
    return {
        "status": row[0],
        "attempts": row[1],
        "error": row[2],
        "broker_inquiry_id": row[3],
        "request_status": row[4],
    }


async def until(check: Any, *, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            msg = "condition not met in time"
            raise AssertionError(msg)
        await asyncio.sleep(0.05)


async def decisions_made(database: Database, tracking_code: str) -> tuple[int, int, int]:
    """(decisions in the history, documents, receipts) of one request."""
    async with database.transaction() as session:
        row = (
            await session.execute(
                text(
                    "SELECT"
                    " (SELECT count(*) FROM requests.request_transition t"
                    "   WHERE t.request_id = r.id AND t.to_status IN ('approved', 'rejected')),"
                    " (SELECT count(*) FROM requests.document d WHERE d.request_id = r.id),"
                    " (SELECT count(*) FROM requests.decision_receipt c WHERE c.request_id = r.id)"
                    " FROM requests.request r WHERE r.tracking_code = :t"
                ),
                {"t": tracking_code},
            )
        ).one()
    return int(row[0]), int(row[1]), int(row[2])


class TestBrokerOutage:
    async def test_the_request_waits_and_finishes_when_the_broker_is_back(
        self, platform: Any, people: Any, broker: InquiryBrokerDouble
    ) -> None:
        code = await loan_card(platform)
        citizen = people.citizen(f"citizen-{secrets.token_hex(4)}")
        broker.available = False
        tracking_code = await platform.submit(citizen, code)

        async def retried() -> bool:
            return (await evidence(platform.database, tracking_code))["attempts"] >= 2

        await until(retried)
        during = await evidence(platform.database, tracking_code)
        assert during["request_status"] == "awaiting_inquiries"
        assert (during["status"], during["error"]) == ("pending", "broker_503")

        broker.available = True
        body = await platform.settled(citizen, tracking_code)

        assert body["status"] == "approved"
        assert len(broker.of_request(tracking_code)) == 1

    async def test_an_outage_past_every_attempt_fails_the_inquiry(
        self,
        start_platform: Any,
        migrated_database: MigratedDatabase,
        people: Any,
        broker: InquiryBrokerDouble,
    ) -> None:
        url = await migrated_database("panjereh.requests")
        async with start_platform(url, inquiry_max_attempts=2) as platform:
            code = await loan_card(platform, otherwise="reject")
            citizen = people.citizen()
            broker.available = False
            tracking_code = await platform.submit(citizen, code)

            body = await platform.settled(citizen, tracking_code)
            assert (await evidence(platform.database, tracking_code))["attempts"] == 2

        assert body["status"] == "failed"
        assert "could not be answered" in body["history"][-1]["reason"]["en"]


class TestLateAnswers:
    async def test_the_answered_event_wakes_a_request_waiting_on_a_pending_inquiry(
        self,
        start_platform: Any,
        migrated_database: MigratedDatabase,
        people: Any,
        broker: InquiryBrokerDouble,
        platform_topics: str,
    ) -> None:
        """Without the event the pending inquiry would be read again only after 60 s."""
        url = await migrated_database("panjereh.requests")
        settings = {
            "consume_events": True,
            "inquiry_wait_seconds": 0.2,
            "inquiry_retry_seconds": 60,
        }
        async with (
            answered_events(platform_topics) as publish,
            start_platform(url, **settings) as platform,
        ):
            broker.holding = True
            broker.on_answer = publish
            code = await loan_card(platform)
            citizen = people.citizen()
            tracking_code = await platform.submit(citizen, code)

            async def pending_at_the_broker() -> bool:
                return (await evidence(platform.database, tracking_code))[
                    "broker_inquiry_id"
                ] is not None

            await until(pending_at_the_broker)
            started = time.monotonic()
            broker.release()
            body = await platform.settled(citizen, tracking_code, within=30)

        assert body["status"] == "approved"
        assert time.monotonic() - started < 30  # well before the 60 s re-read
        assert len(broker.asked_for(tracking_code)) == 1  # then read, never asked again


class TestIdlePacing:
    async def test_a_worker_idling_at_long_waits_takes_a_step_when_it_falls_due(
        self,
        start_platform: Any,
        migrated_database: MigratedDatabase,
        people: Any,
        broker: InquiryBrokerDouble,
    ) -> None:
        """No event says the answer came: the re-read 1 s later is this replica's own due
        time, which wakes the worker; its own next look is at least 5 s away."""
        url = await migrated_database("panjereh.requests")
        settings = {
            "step_poll_seconds": 5.0,
            "step_idle_poll_seconds": 60.0,
            "inquiry_wait_seconds": 0.2,
            "inquiry_retry_seconds": 1.0,
        }
        async with start_platform(url, **settings) as platform:
            broker.holding = True
            code = await loan_card(platform)
            citizen = people.citizen()
            tracking_code = await platform.submit(citizen, code)  # the commit wakes the worker

            async def pending_at_the_broker() -> bool:
                return (await evidence(platform.database, tracking_code))[
                    "broker_inquiry_id"
                ] is not None

            await until(pending_at_the_broker, within=4.0)  # taken at once, not in 5 s
            started = time.monotonic()
            broker.release()
            body = await platform.settled(citizen, tracking_code, within=10)
            elapsed = time.monotonic() - started

        assert body["status"] == "approved"
        assert elapsed < 3.5, f"decided {elapsed:.1f} s after the answer"
        assert len(broker.asked_for(tracking_code)) == 1  # read again, not asked again


class TestRestart:
    async def test_a_crashed_step_is_taken_again_after_its_lease_and_decided_once(
        self,
        start_platform: Any,
        migrated_database: MigratedDatabase,
        people: Any,
        broker: InquiryBrokerDouble,
    ) -> None:
        url = await migrated_database("panjereh.requests")
        settings = {"step_lease_seconds": 1.0, "inquiry_wait_seconds": 5.0}
        citizen = people.citizen()
        broker.holding = True
        replays = broker.replays
        async with start_platform(url, **settings) as first:
            code = await loan_card(first)
            tracking_code = await first.submit(citizen, code)

            async def asked() -> bool:
                return bool(broker.of_request(tracking_code))

            await until(asked)
            # the replica dies while its call waits at the broker: nothing is recorded
            await first.orchestrator.stop(grace=0)
            stalled = await evidence(first.database, tracking_code)
            assert stalled["request_status"] == "awaiting_inquiries"
            assert stalled["broker_inquiry_id"] is None

        broker.release()
        async with start_platform(url, **settings) as second:
            body = await second.settled(citizen, tracking_code)
            assert await decisions_made(second.database, tracking_code) == (1, 1, 1)

        assert body["status"] == "approved"
        # asked again with the same key: the broker replayed its one inquiry
        assert len(broker.of_request(tracking_code)) == 1
        assert broker.replays > replays


class TestTwoReplicas:
    async def test_each_request_is_decided_once_by_one_of_them(
        self,
        start_platform: Any,
        migrated_database: MigratedDatabase,
        people: Any,
        broker: InquiryBrokerDouble,
    ) -> None:
        url = await migrated_database("panjereh.requests")
        settings = {"step_batch_size": 2, "step_poll_seconds": 0.05}
        citizen = people.citizen()
        async with start_platform(url, **settings) as one, start_platform(url, **settings) as two:
            code = await loan_card(one)
            codes = [await (one if i % 2 else two).submit(citizen, code) for i in range(8)]
            bodies = [await one.settled(citizen, tracking_code) for tracking_code in codes]
            made = [await decisions_made(one.database, tracking_code) for tracking_code in codes]

        assert {body["status"] for body in bodies} == {"approved"}
        assert made == [(1, 1, 1)] * len(codes)
        assert all(len(broker.of_request(tracking_code)) == 1 for tracking_code in codes)
