"""Due times are watched (overdue requests are escalated to their agency once) and the public
KPIs are computed by PostgreSQL over a known set of requests."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from panjereh.common.testing.kafka import read_topic
from panjereh.common.testing.plugin import MigratedDatabase
from panjereh.contracts.samples import published_card
from panjereh.contracts.topics import agency_requests
from panjereh.requests.models import Request
from panjereh.requests.testing import InquiryBrokerDouble

pytestmark = pytest.mark.integration

AGENCY = "student-welfare"


async def escalations(platform: Any, tracking_code: str) -> list[tuple[dict[str, Any], Any]]:
    async with platform.database.transaction() as session:
        rows = await session.execute(
            text(
                "SELECT payload, sent_at FROM requests.outbox_message"
                " WHERE key = :k AND event_type = 'requests.request.escalated.v1' ORDER BY id"
            ),
            {"k": tracking_code},
        )
    return [(payload, sent_at) for payload, sent_at in rows.all()]


class TestSlaWatch:
    async def test_an_overdue_request_is_marked_and_escalated_once(
        self, platform: Any, people: Any, broker: InquiryBrokerDouble, platform_topics: str
    ) -> None:
        code = "94" + "".join(secrets.choice("0123456789") for _ in range(9))
        await platform.publish(published_card(code, agency=AGENCY, mode="agency"))
        citizen = people.citizen(f"citizen-{secrets.token_hex(4)}")
        late = await platform.submit(citizen, code)
        on_time = await platform.submit(citizen, code)
        for tracking_code in (late, on_time):
            await platform.settled(citizen, tracking_code, ("in_review",))
        async with platform.database.transaction() as session:
            await session.execute(
                text(
                    "UPDATE requests.request SET due_at = now() - interval '1 hour'"
                    " WHERE tracking_code = :t"
                ),
                {"t": late},
            )
        watch = platform.app.state.sla_watch

        await watch.run_once()
        await watch.run_once()  # a second pass finds nothing new

        body = (await platform.client.get(f"/api/v1/requests/{late}", headers=citizen)).json()
        assert body["overdue"] is True
        assert body["status"] == "in_review"  # escalation does not move the request
        assert (await platform.client.get(f"/api/v1/requests/{on_time}", headers=citizen)).json()[
            "overdue"
        ] is False
        assert await escalations(platform, on_time) == []
        ((event, _),) = await escalations(platform, late)
        assert event["data"]["agency"] == AGENCY
        assert event["data"]["status"] == "in_review"
        deadline = time.monotonic() + 10
        while (await escalations(platform, late))[0][1] is None:  # the relay publishes it
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        records = await read_topic(platform_topics, agency_requests(AGENCY), count=1)
        published = [r for r in records if r.key == late.encode() and b"escalated" in r.value]
        assert len(published) == 1

    async def test_a_decided_request_past_its_due_time_is_left_alone(
        self, platform: Any, people: Any, broker: InquiryBrokerDouble
    ) -> None:
        code = "94" + "".join(secrets.choice("0123456789") for _ in range(9))
        await platform.publish(
            published_card(
                code,
                rules=[{"id": "all", "when": "true", "outcome": "approve", "reason": {"fa": "-"}}],
            )
        )
        citizen = people.citizen(f"citizen-{secrets.token_hex(4)}")
        tracking_code = await platform.submit(citizen, code)
        await platform.settled(citizen, tracking_code, ("approved",))
        async with platform.database.transaction() as session:
            await session.execute(
                text(
                    "UPDATE requests.request SET due_at = now() - interval '1 day'"
                    " WHERE tracking_code = :t"
                ),
                {"t": tracking_code},
            )

        await platform.app.state.sla_watch.run_once()

        assert await escalations(platform, tracking_code) == []


T0 = datetime(2026, 11, 7, 8, 0, tzinfo=UTC)


def request_row(
    status: str,
    *,
    decided_after: timedelta | None = None,
    due_after: timedelta | None = timedelta(days=1),
    decided_by: str | None = None,
    inquiries: int = 0,
    documents: int = 0,
    service_code: str = "s1",
) -> Request:
    return Request(
        id=uuid.uuid4(),
        tracking_code=secrets.token_hex(6),
        service_code=service_code,
        service_version=1,
        agency=AGENCY,
        citizen_id="c1",
        national_code="0013542419",
        inputs={},
        status=status,
        decision_mode="automatic",
        submitted_at=T0,
        due_at=T0 + due_after if due_after else None,
        decided_at=T0 + decided_after if decided_after else None,
        decided_by=decided_by,
        outcome={"approved": "approve", "rejected": "reject"}.get(status),
        inquiries_made=inquiries,
        documents_asked=documents,
    )


class TestStats:
    async def test_the_kpis_of_a_known_set_of_requests(
        self, start_platform: Any, migrated_database: MigratedDatabase
    ) -> None:
        url = await migrated_database("panjereh.requests")
        async with start_platform(url, run_workers=False) as platform:
            empty = (await platform.client.get("/api/v1/requests/stats")).json()
            async with platform.database.transaction() as session:
                session.add_all(
                    [
                        request_row(
                            "approved",
                            decided_after=timedelta(minutes=10),
                            decided_by="rules",
                            inquiries=2,
                        ),
                        request_row(
                            "rejected",
                            decided_after=timedelta(minutes=20),
                            decided_by="rules",
                            inquiries=1,
                            documents=1,
                            service_code="s2",
                        ),
                        # decided by an officer, after its due time
                        request_row(
                            "approved",
                            decided_after=timedelta(minutes=60),
                            due_after=timedelta(minutes=30),
                            decided_by="officer",
                            inquiries=1,
                        ),
                        request_row("in_review", documents=2, service_code="s2"),
                        request_row("failed", inquiries=1),
                        request_row("submitted", due_after=None, service_code="s3"),
                    ]
                )
            stats = (await platform.client.get("/api/v1/requests/stats")).json()

        assert empty == {
            "requests_total": 0,
            "by_status": {},
            "decided_without_human_share": 0.0,
            "median_minutes_to_decision": None,
            "sla_met_share": 0.0,
            "once_only_share": 0.0,
            "most_used": [],
        }
        assert stats == {
            "requests_total": 6,
            "by_status": {
                "approved": 2,
                "rejected": 1,
                "in_review": 1,
                "failed": 1,
                "submitted": 1,
            },
            "decided_without_human_share": 0.6667,  # 2 of 3 decided by the rules
            "median_minutes_to_decision": 20.0,  # of 10, 20 and 60
            "sla_met_share": 0.6667,  # 2 of 3 decided by their due time
            "once_only_share": 0.625,  # 5 inquiries, 3 documents asked
            # requests by service, the most asked for first (a tie by code): counts only
            "most_used": [
                {"service_code": "s1", "requests": 3},
                {"service_code": "s2", "requests": 2},
                {"service_code": "s3", "requests": 1},
            ],
        }
