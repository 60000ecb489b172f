"""Faults across the platform while citizens keep submitting smart requests.

On the e2e session's platform (every process real and separate), one fault at a time:

- PostgreSQL restarted (fast shutdown: every connection cut) under load: the services recover
  on their own, no process restarted, every accepted request decided once;
- the simulated agencies frozen (SIGSTOP) for longer than the inquiries' deadline: an inquiry
  the agency has not read was not delivered, so it does not time out; the requests wait in
  ``awaiting_inquiries`` and finish once the agencies answer again;
- an agency that reads its inquiries and does not answer: at the deadline each request follows
  its card's rule (a smart card fails with a reason naming the inquiry; an agency-mode card
  goes to its officers);
- the embedded Kafka broker (Tansu) frozen for 10 s under load (not restarted: it keeps
  messages in memory only, so a restart loses them by design): nothing accepted is lost, every
  event is sent and consumed once it runs again;
- the inquiry broker killed (``kill -9``) mid-load and started again: every request final and
  approved (an answer waiting on Kafka is consumed before anything times out), none decided
  twice, no inquiry asked twice.

Loads are small (tens of requests) so that the module stays within the suite's time, yet
large enough that each fault lands while requests are in flight (asserted).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from panjereh.contracts.identifiers import complete_national_code
from panjereh.contracts.topics import agency_inquiries
from panjereh.devstack.testing import (
    Launch,
    RunningStack,
    kill_component,
    pause_supervisor,
    restart_component,
    restart_postgres,
)
from tests.e2e.test_requests_faults import Citizen, database_url, login, wait_ready

pytestmark = pytest.mark.e2e

CRIMINAL_RECORD_CERTIFICATE = "11030000001"  # smart: civil registry (cached at login) + police
COPY_OF_BIRTH_CERTIFICATE = "11010000001"  # smart: civil registry only
ORDINARY_PASSPORT = "11020000001"  # agency mode: civil registry + police, then an officer
FINAL = ("approved", "rejected", "failed", "cancelled")
DECIDED_EVENT = "requests.request.decided.v1"
#: the inquiry types' deadline (``timeout_ms`` of the broker's registry: 5 s)
INQUIRY_DEADLINE = 5.0
#: how long the agencies are down: longer than the deadline
AGENCIES_DOWN_FOR = 8.0


@dataclass
class Load:
    """What the citizens saw while submitting, shared by their tasks."""

    accepted: dict[str, str] = field(default_factory=dict)  # Idempotency-Key → tracking code
    owner: dict[str, Citizen] = field(default_factory=dict)  # tracking code → citizen
    refused: Counter[str] = field(default_factory=Counter)  # retried answers, by status


class Platform:
    """The session's platform, and connections to the databases of the requests service and
    of the inquiry broker (read-only use)."""

    def __init__(self, stack: RunningStack) -> None:
        self.stack = stack
        self.requests_url = database_url(
            Launch.of(stack.pid("requests")), "PANJEREH_REQUESTS_DATABASE_URL"
        )
        self.broker_url = database_url(
            Launch.of(stack.pid("inquiry-broker")), "PANJEREH_INQUIRY_BROKER_DATABASE_URL"
        )

    async def query(self, url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
        """One short connection per query: PostgreSQL may be restarted between two."""
        for attempt in range(20):
            try:
                connection = await asyncpg.connect(url, timeout=5)
            except (OSError, asyncpg.PostgresError):
                if attempt == 19:
                    raise
                await asyncio.sleep(0.5)
                continue
            try:
                return await connection.fetch(sql, *args)
            finally:
                await connection.close()
        raise AssertionError("unreachable")

    async def statuses(self, tracking_codes: Sequence[str]) -> dict[str, str]:
        rows = await self.query(
            self.requests_url,
            "SELECT tracking_code, status FROM requests.request WHERE tracking_code = ANY($1)",
            list(tracking_codes),
        )
        return {row["tracking_code"]: row["status"] for row in rows}

    async def wait_final(self, tracking_codes: Sequence[str], *, within: float) -> dict[str, str]:
        deadline = time.monotonic() + within
        statuses: dict[str, str] = {}
        while time.monotonic() < deadline:
            statuses = await self.statuses(tracking_codes)
            if len(statuses) == len(tracking_codes) and all(
                status in FINAL for status in statuses.values()
            ):
                break
            await asyncio.sleep(0.25)
        return statuses

    async def facts(self, tracking_codes: Sequence[str]) -> list[asyncpg.Record]:
        """Per request: status, final moves, decided events (and how many unsent), documents."""
        return await self.query(
            self.requests_url,
            """
            SELECT r.tracking_code, r.status,
              (SELECT count(*) FROM requests.request_transition t
                WHERE t.request_id = r.id AND t.to_status = ANY($2)) AS final_moves,
              (SELECT count(*) FROM requests.outbox_message o
                WHERE o.key = r.tracking_code AND o.event_type = $3) AS decided_events,
              (SELECT count(*) FROM requests.document d WHERE d.request_id = r.id) AS documents
            FROM requests.request r WHERE r.tracking_code = ANY($1)
            """,
            list(tracking_codes),
            list(FINAL),
            DECIDED_EVENT,
        )

    async def unsent(self) -> dict[str, int]:
        """Outbox messages not yet handed to Kafka, per service."""
        counts = {}
        for name, url, schema in (
            ("requests", self.requests_url, "requests"),
            ("inquiry-broker", self.broker_url, "inquiry_broker"),
        ):
            rows = await self.query(
                url, f"SELECT count(*) AS n FROM {schema}.outbox_message WHERE sent_at IS NULL"
            )
            counts[name] = rows[0]["n"]
        return counts

    async def evidence(self, tracking_codes: Sequence[str]) -> list[dict[str, Any]]:
        """The evidence rows (inquiry type, status, attempts, error) of the given requests."""
        rows = await self.query(
            self.requests_url,
            """
            SELECT r.tracking_code, r.status AS request_status, i.inquiry_type, i.status,
              i.attempts, i.error, i.broker_inquiry_id
            FROM requests.request r JOIN requests.request_inquiry i ON i.request_id = r.id
            WHERE r.tracking_code = ANY($1)
            """,
            list(tracking_codes),
        )
        return [dict(row) for row in rows]

    async def inquiries(self, tracking_codes: Sequence[str]) -> Counter[tuple[str, str]]:
        """(tracking code, type) → how many inquiries the broker holds."""
        rows = await self.query(
            self.broker_url,
            "SELECT tracking_code, type FROM inquiry_broker.inquiry WHERE tracking_code = ANY($1)",
            list(tracking_codes),
        )
        return Counter((row["tracking_code"], row["type"]) for row in rows)


@pytest.fixture(scope="module")
async def platform_under_test(platform: RunningStack) -> Platform:
    return Platform(platform)


@pytest.fixture(scope="module")
async def client(platform: RunningStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=platform.gateway, timeout=15.0, limits=httpx.Limits(max_connections=40)
    ) as http:
        yield http


class People:
    """Fresh people per test: the inquiries' answer cache (per subject) must not answer for
    an agency that is down."""

    def __init__(self, code_prefix: str = "2750", mobile_prefix: str = "0936750") -> None:
        self.next = 1
        self.code_prefix = code_prefix
        self.mobile_prefix = mobile_prefix

    async def log_in(self, client: httpx.AsyncClient, count: int) -> list[Citizen]:
        first = self.next
        self.next += count
        return list(
            await asyncio.gather(
                *(
                    login(
                        client,
                        complete_national_code(f"{self.code_prefix}{n:05d}"),
                        f"{self.mobile_prefix}{n:04d}",
                    )
                    for n in range(first, first + count)
                )
            )
        )


@pytest.fixture(scope="module")
def people() -> People:
    return People()


async def submit_once(
    client: httpx.AsyncClient, citizen: Citizen, card: str, load: Load, *, within: float = 60.0
) -> str:
    """Submit until accepted, always with the same key: a retry never makes a second one."""
    key = f"fault-{uuid.uuid4()}"
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            response = await client.post(
                "/api/v1/requests",
                json={"service_code": card, "inputs": {}},
                headers={**citizen.headers, "Idempotency-Key": key},
            )
        except httpx.TransportError as exc:
            load.refused[type(exc).__name__] += 1
            await asyncio.sleep(0.2)
            continue
        if response.status_code == 201:
            tracking_code: str = response.json()["tracking_code"]
            load.accepted[key] = tracking_code
            load.owner[tracking_code] = citizen
            return tracking_code
        assert response.status_code in {429, 502, 503, 504}, response.text
        load.refused[str(response.status_code)] += 1
        await asyncio.sleep(min(float(response.headers.get("Retry-After") or 0.2), 2.0))
    raise AssertionError(f"not accepted within {within:.0f} s; refused {dict(load.refused)}")


async def keep_submitting(
    client: httpx.AsyncClient,
    citizens: Sequence[Citizen],
    card: str,
    load: Load,
    *,
    each: int,
    interval: float,
) -> list[asyncio.Task[list[str]]]:
    async def one_citizen(citizen: Citizen, offset: float) -> list[str]:
        await asyncio.sleep(offset)
        codes = []
        for _ in range(each):
            codes.append(await submit_once(client, citizen, card, load))
            await asyncio.sleep(interval)
        return codes

    return [
        asyncio.create_task(one_citizen(citizen, n * interval / len(citizens)))
        for n, citizen in enumerate(citizens)
    ]


async def until(condition: Any, *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within:.0f} s")
        await asyncio.sleep(0.02)


async def simulators_ready(client: httpx.AsyncClient, launch: Launch, *, within: float) -> None:
    """Until restarted simulators' ``/readyz`` says every agency has joined its group."""
    url = f"http://127.0.0.1:{launch.env['PANJEREH_SIMULATORS_HEALTH_PORT']}/readyz"
    deadline = time.monotonic() + within
    while True:
        try:
            if (await client.get(url)).status_code == 200:
                return
        except httpx.TransportError:
            pass  # not listening yet
        if time.monotonic() > deadline:
            raise AssertionError(f"the simulators not ready within {within:.0f} s")
        await asyncio.sleep(0.2)


def assert_decided_once(facts: Sequence[asyncpg.Record], tracking_codes: Sequence[str]) -> None:
    assert sorted(row["tracking_code"] for row in facts) == sorted(tracking_codes)
    assert len(set(tracking_codes)) == len(tracking_codes), "one submission became two"
    assert {row["final_moves"] for row in facts} == {1}, "decided twice"
    assert {row["decided_events"] for row in facts} <= {0, 1}, "decided event twice"


async def only_in_flight_failed(
    client: httpx.AsyncClient,
    load: Load,
    statuses: dict[str, str],
    at_kill: dict[str, str],
    *,
    at_most: float | None = None,
    only_before_kill: bool = True,
) -> list[str]:
    """Every request approved, except some that were mid-inquiry when a broker died (the
    failed ones, returned).

    A reply waiting on a partition whose consumer died is consumed before its inquiry times
    out only for ``reply_grace_seconds`` (30 s) after a broker sees it waiting; past that the
    inquiry times out and the request fails, by its card's rule, naming the inquiry. None
    submitted after the kill may (unless not ``only_before_kill``); at most ``at_most`` of
    those in flight at the kill may (None: no bound).
    """
    assert set(statuses.values()) <= {"approved", "failed"}, Counter(statuses.values())
    failed = [code for code, status in statuses.items() if status == "failed"]
    if only_before_kill:
        assert set(failed) <= set(at_kill), "a request submitted after the kill failed"
    for code in failed:
        request = await read_request(client, load.owner[code], code)
        assert "police.clean-record" in request["history"][-1]["reason"]["en"], request
    in_flight = sum(1 for status in at_kill.values() if status not in FINAL)
    if at_most is not None:
        assert len(failed) <= max(in_flight * at_most, 1), f"{len(failed)} failed: {failed}"
    return failed


class TestPostgresRestartedUnderLoad:
    async def test_services_recover_on_their_own_and_decide_everything_once(
        self,
        platform: RunningStack,
        platform_under_test: Platform,
        client: httpx.AsyncClient,
        people: People,
    ) -> None:
        pids = {name: platform.pid(name) for name in ("requests", "inquiry-broker", "identity")}
        citizens = await people.log_in(client, 6)
        load = Load()
        tasks = await keep_submitting(
            client, citizens, COPY_OF_BIRTH_CERTIFICATE, load, each=5, interval=0.4
        )
        await until(lambda: len(load.accepted) >= 10, within=30, what="submissions")
        took = await asyncio.to_thread(restart_postgres, platform)
        per_citizen = await asyncio.gather(*tasks)
        codes = [code for codes in per_citizen for code in codes]
        statuses = await platform_under_test.wait_final(codes, within=60)
        facts = await platform_under_test.facts(codes)
        print(
            f"\nPostgreSQL restarted in {took:.1f} s; {len(codes)} accepted, refused and "
            f"retried {dict(load.refused)}; statuses {Counter(statuses.values())}"
        )
        assert len(codes) == 30
        undecided = [code for code, status in statuses.items() if status != "approved"]
        assert not undecided, (
            Counter(statuses.values()),
            await platform_under_test.evidence(undecided),
        )
        assert_decided_once(facts, codes)
        assert {row["documents"] for row in facts} == {1}
        await wait_ready(client, within=30)
        # no service was restarted: they reconnected by themselves
        assert {name: platform.pid(name) for name in pids} == pids
        # and they still work end to end: a new login and request
        (late,) = await people.log_in(client, 1)
        late_code = await submit_once(client, late, COPY_OF_BIRTH_CERTIFICATE, Load())
        assert (await platform_under_test.wait_final([late_code], within=30)) == {
            late_code: "approved"
        }


def simulators_frozen(platform: RunningStack) -> Freeze:
    return Freeze(platform.pid("agency-simulators"))


@dataclass
class Freeze:
    """SIGSTOP a process now; SIGCONT it on :meth:`thaw` (or on leaving the ``with``)."""

    pid: int
    frozen_at: float = 0.0

    def __enter__(self) -> Freeze:
        os.kill(self.pid, signal.SIGSTOP)
        self.frozen_at = time.monotonic()
        return self

    def thaw(self) -> float:
        """Let it run again; how long it was frozen."""
        if self.frozen_at:
            os.kill(self.pid, signal.SIGCONT)
            frozen, self.frozen_at = time.monotonic() - self.frozen_at, 0.0
            return frozen
        return 0.0

    def __exit__(self, *_: object) -> None:
        self.thaw()


async def read_request(client: httpx.AsyncClient, citizen: Citizen, code: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/requests/{code}", headers=citizen.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def stop_gracefully(platform: RunningStack, name: str, *, within: float = 15.0) -> Launch:
    """SIGTERM one component (its consumers leave their groups) and wait until it exited;
    how it was started, to start it again."""
    pid = platform.pid(name)
    launch = Launch.of(pid)
    pause_supervisor(platform)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return launch
        if state == "Z":
            return launch
        time.sleep(0.05)
    raise AssertionError(f"{name} still runs {within:.0f} s after SIGTERM")


@asynccontextmanager
async def reading_without_answering(launch: Launch, agency: str) -> AsyncIterator[list[str]]:
    """``agency``'s consumer group, joined here: it reads (and commits) every inquiry and
    answers none. Yields the records read so far, once the group gave it the partitions."""
    consumer = AIOKafkaConsumer(
        agency_inquiries(agency),
        bootstrap_servers=launch.env["KAFKA_BOOTSTRAP_SERVERS"],
        group_id=f"agency-{agency}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=25,
    )
    await consumer.start()
    read: list[str] = []

    async def loop() -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=100)
            for partition, records in batches.items():
                read.extend(str(record.offset) for record in records)
                await consumer.commit({partition: records[-1].offset + 1})

    task = asyncio.create_task(loop())
    try:
        await until(lambda: bool(consumer.assignment()), within=30, what="the police's partitions")
        yield read
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await consumer.stop()


class TestAgencyDown:
    async def test_requests_wait_for_an_agency_that_is_down_and_finish_when_it_returns(
        self,
        platform: RunningStack,
        platform_under_test: Platform,
        client: httpx.AsyncClient,
        people: People,
    ) -> None:
        citizens = await people.log_in(client, 6)
        load = Load()
        with simulators_frozen(platform) as freeze:
            codes = list(
                await asyncio.gather(
                    *(submit_once(client, c, CRIMINAL_RECORD_CERTIFICATE, load) for c in citizens)
                )
            )
            # every inquiry is past its deadline while the agencies are still down
            await asyncio.sleep(AGENCIES_DOWN_FOR - (time.monotonic() - freeze.frozen_at))
            waiting = await platform_under_test.statuses(codes)
            frozen_for = freeze.thaw()
        assert frozen_for > INQUIRY_DEADLINE + 2
        assert set(waiting.values()) == {"awaiting_inquiries"}, waiting
        statuses = await platform_under_test.wait_final(codes, within=30)
        assert set(statuses.values()) == {"approved"}, statuses
        request = await read_request(client, load.owner[codes[0]], codes[0])
        assert {i["type"]: i["status"] for i in request["inquiries"]} == {
            "civil-registry.person": "answered",
            "police.clean-record": "answered",
        }

    async def test_an_agency_timing_out_sends_each_request_where_its_card_says(
        self,
        platform: RunningStack,
        platform_under_test: Platform,
        client: httpx.AsyncClient,
        people: People,
    ) -> None:
        smart_citizen, agency_citizen = await people.log_in(client, 2)
        load = Load()
        launch = await asyncio.to_thread(stop_gracefully, platform, "agency-simulators")
        try:
            # the police reads its inquiries (and commits) but answers none
            async with reading_without_answering(launch, "police") as read:
                smart = await submit_once(client, smart_citizen, CRIMINAL_RECORD_CERTIFICATE, load)
                by_officer = await submit_once(client, agency_citizen, ORDINARY_PASSPORT, load)
                await asyncio.sleep(INQUIRY_DEADLINE + 2.5)
                decided = await platform_under_test.statuses([smart, by_officer])
        finally:
            # started again whatever happens: the session's other modules need it
            restart_component(platform, "agency-simulators", launch)
        # and in their groups again before the next test logs anyone in
        await simulators_ready(client, launch, within=30)
        assert read, "the police read no inquiry"
        # a smart card whose rules cannot run without the answer ("otherwise: reject"): failed,
        # with the inquiry named; an agency-mode card: to its officers, with the same reason
        assert decided == {smart: "failed", by_officer: "in_review"}, decided
        failed = await read_request(client, smart_citizen, smart)
        assert {i["type"]: i["status"] for i in failed["inquiries"]}["police.clean-record"] in {
            "failed",
            "timed_out",
        }
        assert "police.clean-record" in failed["history"][-1]["reason"]["en"]
        in_review = await read_request(client, agency_citizen, by_officer)
        assert "police.clean-record" in in_review["history"][-1]["reason"]["en"]


class TestKafkaBrokerFrozen:
    async def test_nothing_accepted_is_lost_while_the_broker_is_frozen_for_10_s(
        self,
        platform: RunningStack,
        platform_under_test: Platform,
        client: httpx.AsyncClient,
        people: People,
    ) -> None:
        kafka = platform.state()["broker"]
        assert isinstance(kafka, int)
        citizens = await people.log_in(client, 6)
        load = Load()
        tasks = await keep_submitting(
            client, citizens, COPY_OF_BIRTH_CERTIFICATE, load, each=5, interval=0.5
        )
        await until(lambda: len(load.accepted) >= 8, within=30, what="submissions")
        with Freeze(kafka) as freeze:
            await asyncio.sleep(10.0)
            during = len(load.accepted)
            frozen_for = freeze.thaw()
        per_citizen = await asyncio.gather(*tasks)
        codes = [code for codes in per_citizen for code in codes]
        statuses = await platform_under_test.wait_final(codes, within=60)
        # every event written while Kafka was frozen is sent once it runs again
        unsent: dict[str, int] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            unsent = await platform_under_test.unsent()
            if not any(unsent.values()):
                break
            await asyncio.sleep(0.5)
        facts = await platform_under_test.facts(codes)
        # and consumed: the broker heard every request's submission and its end (its consumer
        # may be rejoining its group after the freeze: sent is not yet consumed)
        purposes: list[asyncpg.Record] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            purposes = await platform_under_test.query(
                platform_under_test.broker_url,
                "SELECT tracking_code, closed_at IS NOT NULL AS closed"
                " FROM inquiry_broker.live_purpose WHERE tracking_code = ANY($1)",
                codes,
            )
            if len(purposes) == len(codes) and all(row["closed"] for row in purposes):
                break
            await asyncio.sleep(0.5)
        consumed_after = 30 - (deadline - time.monotonic())
        print(
            f"\nKafka frozen {frozen_for:.1f} s; {during} accepted by its end, {len(codes)} in "
            f"all; statuses {Counter(statuses.values())}; retried {dict(load.refused)}; "
            f"purposes closed {consumed_after:.1f} s after the last event was sent"
        )
        assert frozen_for >= 10
        assert len(codes) == 30
        assert len(statuses) == len(codes)
        assert set(statuses.values()) <= set(FINAL), Counter(statuses.values())
        assert_decided_once(facts, codes)
        assert {row["decided_events"] for row in facts} == {1}
        assert unsent == {"requests": 0, "inquiry-broker": 0}
        assert len(purposes) == len(codes)
        assert all(row["closed"] for row in purposes)


class TestInquiryBrokerKilled:
    async def test_every_request_is_final_once_and_no_inquiry_is_asked_twice(
        self,
        platform: RunningStack,
        platform_under_test: Platform,
        client: httpx.AsyncClient,
        people: People,
    ) -> None:
        citizens = await people.log_in(client, 8)
        load = Load()
        tasks = await keep_submitting(
            client, citizens, CRIMINAL_RECORD_CERTIFICATE, load, each=5, interval=0.3
        )
        killed = None
        try:
            await until(lambda: len(load.accepted) >= 15, within=30, what="submissions")
            killed = await asyncio.to_thread(kill_component, platform, "inquiry-broker")
            killed_at = time.monotonic()
            at_kill = await platform_under_test.statuses(list(load.accepted.values()))
        finally:
            # started again whatever happens: the session's other modules need it
            if killed is not None:
                restart_component(platform, "inquiry-broker", killed.launch)
        await wait_ready(client, within=60)
        ready_after = time.monotonic() - killed_at
        per_citizen = await asyncio.gather(*tasks)
        codes = [code for codes in per_citizen for code in codes]
        statuses = await platform_under_test.wait_final(codes, within=60)
        facts = await platform_under_test.facts(codes)
        asked = await platform_under_test.inquiries(codes)
        not_final_at_kill = sum(1 for s in at_kill.values() if s not in FINAL)
        print(
            f"\n{len(at_kill)} accepted at the kill, {not_final_at_kill} not final; broker ready "
            f"again {ready_after:.1f} s later; {len(codes)} in all; statuses "
            f"{Counter(statuses.values())}; retried {dict(load.refused)}"
        )
        assert not_final_at_kill >= 3, at_kill
        assert len(codes) == 40
        assert len(statuses) == len(codes)
        # an answer the agency sent while no broker ran is consumed before anything times out
        assert set(statuses.values()) == {"approved"}, Counter(statuses.values())
        assert_decided_once(facts, codes)
        # decided (approve or reject) once, with its event; failed ones have neither
        decided = [row for row in facts if row["status"] == "approved"]
        assert {row["decided_events"] for row in decided} == {1}
        assert {row["documents"] for row in decided} == {1}
        # one inquiry per request and type, whatever was retried across the crash
        assert set(asked.values()) == {1}, [k for k, n in asked.items() if n > 1]
        assert {code for code, _ in asked} == set(codes)
