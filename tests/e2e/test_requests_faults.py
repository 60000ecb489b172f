"""The requests service is killed (``kill -9``) in the middle of 200 smart requests.

Twenty citizens submit through the gateway, faster than two cores decide, so many requests are
mid-step when the service dies: claimed with a lease, an inquiry out at the broker, a decision
being recorded. The service is started again exactly as the stack started it (command line and
environment read from ``/proc`` before the kill). Submissions refused during the outage are
retried with the same ``Idempotency-Key``. Then every request must be decided (approved) by the
time the dead process's leases have run out, once: one move into a final status, one
``requests.request.decided`` event, one decision, one document, one inquiry at the broker.

The platform is the e2e session's: the restarted service keeps serving the modules after this
one, and ``stop_stack`` stops it (see ``panjereh.devstack.testing``).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest

from panjereh.contracts.identifiers import complete_national_code
from panjereh.devstack.testing import (
    Launch,
    RunningStack,
    kill_component,
    restart_component,
)

pytestmark = pytest.mark.e2e

COPY_OF_BIRTH_CERTIFICATE = "11010000001"  # smart: approves any living adult
CITIZENS = 20
REQUESTS_EACH = 10
TOTAL = CITIZENS * REQUESTS_EACH
#: each citizen's pace: together ~80 submissions/s offered, more than two cores decide, so
#: requests pile up in flight; within the gateway's per-caller write burst
SUBMIT_INTERVAL = 0.25
#: the kill lands once this many submissions were accepted: the rest come during the outage
#: (refused, retried) and after the restart
KILL_AFTER = 70
FINAL = ("approved", "rejected", "failed", "cancelled")
DECIDED_BY_RULES = ["submitted", "awaiting_inquiries", "deciding", "approved"]
#: beyond the dead process's leases: time to claim, ask and decide what they held
SETTLE_SECONDS = 20.0
DECIDED_EVENT = "requests.request.decided.v1"


@dataclass(frozen=True)
class Citizen:
    national_code: str
    mobile: str
    headers: dict[str, str]


@dataclass
class Submissions:
    """What the citizens saw while submitting, shared by their tasks."""

    #: Idempotency-Key → tracking code, once accepted
    accepted: dict[str, str] = field(default_factory=dict)
    #: 201s that replayed an earlier acceptance (its first answer was lost to the kill)
    replayed: int = 0
    #: answers (status or transport error) that were retried
    retried: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class AtKill:
    """The requests database right after the kill: nothing writes to it until the restart."""

    accepted: int
    by_status: dict[str, int]
    #: not final and leased to the dead process (claimed mid-step)
    leased: int

    @property
    def not_final(self) -> int:
        return sum(n for status, n in self.by_status.items() if status not in FINAL)


def database_url(launch: Launch, variable: str) -> str:
    """A component's SQLAlchemy URL as asyncpg takes it."""
    return launch.env[variable].replace("postgresql+asyncpg://", "postgresql://", 1)


async def otp_sent_to(client: httpx.AsyncClient, mobile: str) -> str:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        outbox = await client.get("/api/v1/dev/sms-outbox", params={"mobile": mobile})
        items = outbox.json()["items"]
        if items:
            return str(items[0]["tokens"][0])
        await asyncio.sleep(0.1)
    raise AssertionError(f"no OTP reached the dev outbox for {mobile}")


async def login(client: httpx.AsyncClient, national_code: str, mobile: str) -> Citizen:
    # 503: the mobile registry did not answer in time (its consumer may still be joining its
    # group just after start-up, or the machine is busy); asked again slowly, five tries in
    # all: each one counts against the mobile's hourly limit (5), and a sixth would be a 429
    for attempt in range(5):
        if attempt:
            await asyncio.sleep(3.0)
        challenge = await client.post(
            "/api/v1/auth/otp", json={"national_code": national_code, "mobile": mobile}
        )
        if challenge.status_code != 503:
            break
    assert challenge.status_code == 202, challenge.text
    verified = await client.post(
        "/api/v1/auth/otp/verify",
        json={
            "challenge_id": challenge.json()["challenge_id"],
            "code": await otp_sent_to(client, mobile),
        },
    )
    assert verified.status_code == 200, verified.text
    token = verified.json()["access_token"]
    return Citizen(national_code, mobile, {"Authorization": f"Bearer {token}"})


@pytest.fixture(scope="module")
async def citizens(platform: RunningStack) -> AsyncIterator[list[Citizen]]:
    # codes and mobiles of this module only: the session's platform remembers OTPs per mobile
    people = [
        (complete_national_code(f"2710{n:05d}"), f"0935710{n:04d}") for n in range(1, CITIZENS + 1)
    ]
    async with httpx.AsyncClient(base_url=platform.gateway, timeout=10.0) as client:
        yield list(await asyncio.gather(*(login(client, *person) for person in people)))


async def submit_once(
    client: httpx.AsyncClient, citizen: Citizen, key: str, seen: Submissions, *, within: float
) -> str:
    """Submit until accepted, with the same key each time: a retry never makes a second one."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            response = await client.post(
                "/api/v1/requests",
                json={"service_code": COPY_OF_BIRTH_CERTIFICATE, "inputs": {}},
                headers={**citizen.headers, "Idempotency-Key": key},
            )
        except httpx.TransportError as exc:
            seen.retried[type(exc).__name__] += 1
            await asyncio.sleep(0.2)
            continue
        if response.status_code == 201:
            seen.replayed += response.headers.get("Idempotent-Replayed") == "true"
            tracking_code: str = response.json()["tracking_code"]
            return tracking_code
        # the service is down or starting (502/503/504), or the gateway asks us to slow down
        assert response.status_code in {429, 502, 503, 504}, response.text
        seen.retried[str(response.status_code)] += 1
        wait = float(response.headers.get("Retry-After") or 0.2)
        await asyncio.sleep(min(max(wait, 0.1), 2.0))
    raise AssertionError(f"not accepted within {within:.0f} s; retried {dict(seen.retried)}")


async def submit_all(
    client: httpx.AsyncClient, citizen: Citizen, seen: Submissions, *, offset: float
) -> list[str]:
    await asyncio.sleep(offset)  # citizens start staggered, not in lockstep
    codes = []
    for _ in range(REQUESTS_EACH):
        key = f"fault-{uuid.uuid4()}"
        codes.append(await submit_once(client, citizen, key, seen, within=45.0))
        seen.accepted[key] = codes[-1]
        await asyncio.sleep(SUBMIT_INTERVAL)
    return codes


async def wait_until(condition: Callable[[], bool], *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within:.0f} s")
        await asyncio.sleep(0.01)


async def state_at_kill(database: asyncpg.Connection, national_codes: Sequence[str]) -> AtKill:
    rows = await database.fetch(
        "SELECT status, count(*) AS n, count(*) FILTER ("
        "  WHERE next_step_at > now() + interval '5 seconds') AS leased"
        " FROM requests.request WHERE national_code = ANY($1) GROUP BY status",
        list(national_codes),
    )
    by_status = {row["status"]: row["n"] for row in rows}
    leased = sum(row["leased"] for row in rows if row["status"] not in FINAL)
    return AtKill(sum(by_status.values()), by_status, leased)


async def wait_ready(client: httpx.AsyncClient, *, within: float) -> None:
    """Until the gateway reports every service ready (the restarted one included)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if (await client.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError(f"the platform was not ready again within {within:.0f} s")


async def count_final(database: asyncpg.Connection, tracking_codes: Sequence[str]) -> int:
    final: int = await database.fetchval(
        "SELECT count(*) FROM requests.request WHERE tracking_code = ANY($1) AND status = ANY($2)",
        list(tracking_codes),
        list(FINAL),
    )
    return final


async def read_as_owner(
    client: httpx.AsyncClient, citizen: Citizen, tracking_code: str, gate: asyncio.Semaphore
) -> tuple[dict[str, Any], int, dict[str, Any]]:
    async with gate:
        request = await client.get(f"/api/v1/requests/{tracking_code}", headers=citizen.headers)
        document = await client.get(
            f"/api/v1/requests/{tracking_code}/document", headers=citizen.headers
        )
    assert request.status_code == 200, request.text
    return request.json(), document.status_code, document.json()


@dataclass(frozen=True)
class Outage:
    killed_at: float
    ready_at: float
    at_kill: AtKill
    launch: Launch
    orphans: tuple[int, ...]
    restarted_pid: int


async def crash_and_restart(
    platform: RunningStack,
    client: httpx.AsyncClient,
    database: asyncpg.Connection,
    seen: Submissions,
    national_codes: Sequence[str],
) -> Outage:
    """``kill -9`` the requests service once enough requests are in, start it again."""
    await wait_until(lambda: len(seen.accepted) >= KILL_AFTER, within=30, what="submissions")
    killed = await asyncio.to_thread(kill_component, platform, "requests")
    killed_at = time.monotonic()
    try:
        at_kill = await state_at_kill(database, national_codes)
    finally:
        # started again whatever happens: the session's other modules need it
        restarted = restart_component(platform, "requests", killed.launch)
    await wait_ready(client, within=60)
    return Outage(
        killed_at, time.monotonic(), at_kill, killed.launch, killed.orphans, restarted.pid
    )


async def wait_final(
    database: asyncpg.Connection, tracking_codes: Sequence[str], *, until: float
) -> int:
    final = 0
    while time.monotonic() < until:
        final = await count_final(database, tracking_codes)
        if final == len(tracking_codes):
            break
        await asyncio.sleep(0.25)
    return final


async def facts_of(database: asyncpg.Connection, national_codes: Sequence[str]) -> list[Any]:
    """Per request of these citizens: its status and how many of each decision artefact."""
    return await database.fetch(
        """
        SELECT r.tracking_code, r.status,
          (SELECT count(*) FROM requests.request_transition t
            WHERE t.request_id = r.id AND t.to_status = ANY($2)) AS final_moves,
          (SELECT count(*) FROM requests.document d WHERE d.request_id = r.id) AS documents,
          (SELECT count(*) FROM requests.decision_receipt c
            WHERE c.request_id = r.id) AS receipts,
          (SELECT count(*) FROM requests.outbox_message o
            WHERE o.key = r.tracking_code AND o.event_type = $3) AS decided_events
        FROM requests.request r WHERE r.national_code = ANY($1)
        """,
        list(national_codes),
        list(FINAL),
        DECIDED_EVENT,
    )


async def inquiries_per_request(launch: Launch, tracking_codes: Sequence[str]) -> dict[str, int]:
    """How many inquiries the broker holds for each request."""
    broker = await asyncpg.connect(database_url(launch, "PANJEREH_INQUIRY_BROKER_DATABASE_URL"))
    try:
        rows = await broker.fetch(
            "SELECT tracking_code, count(*) AS n FROM inquiry_broker.inquiry"
            " WHERE tracking_code = ANY($1) GROUP BY tracking_code",
            list(tracking_codes),
        )
    finally:
        await broker.close()
    return {row["tracking_code"]: row["n"] for row in rows}


class TestRequestsServiceKilledMidFlight:
    async def test_every_request_is_decided_once_with_one_document(
        self, platform: RunningStack, citizens: list[Citizen]
    ) -> None:
        began = time.monotonic()
        national_codes = [citizen.national_code for citizen in citizens]
        launch = Launch.of(platform.pid("requests"))
        database = await asyncpg.connect(database_url(launch, "PANJEREH_REQUESTS_DATABASE_URL"))
        seen = Submissions()
        async with httpx.AsyncClient(
            base_url=platform.gateway,
            timeout=15.0,
            limits=httpx.Limits(max_connections=CITIZENS * 2),
        ) as client:
            submitting = [
                asyncio.create_task(
                    submit_all(client, citizen, seen, offset=n * SUBMIT_INTERVAL / CITIZENS)
                )
                for n, citizen in enumerate(citizens)
            ]
            try:
                outage = await crash_and_restart(platform, client, database, seen, national_codes)
                per_citizen = await asyncio.gather(*submitting)
                all_in_at = time.monotonic()
                tracking_codes = [code for codes in per_citizen for code in codes]
                # the dead process's steps are taken again when their leases run out
                lease = float(outage.launch.env.get("PANJEREH_REQUESTS_STEP_LEASE_SECONDS", "30"))
                final = await wait_final(
                    database, tracking_codes, until=outage.killed_at + lease + SETTLE_SECONDS
                )
                settled_at = time.monotonic()
                facts = await facts_of(database, national_codes)
            finally:
                for task in submitting:
                    task.cancel()
                await database.close()
            inquiries = await inquiries_per_request(outage.launch, tracking_codes)

            print(  # the run's story, shown with -s or -rP
                f"\n{outage.at_kill.accepted} accepted before the kill, "
                f"{outage.at_kill.not_final} not final ({outage.at_kill.leased} leased mid-step) "
                f"{outage.at_kill.by_status}; killed at {outage.killed_at - began:.1f} s, "
                f"ready again {outage.ready_at - outage.killed_at:.1f} s later; all {TOTAL} "
                f"accepted at {all_in_at - began:.1f} s ({seen.replayed} replayed, retried "
                f"{dict(seen.retried)}); {final} final at {settled_at - began:.1f} s, "
                f"{settled_at - outage.killed_at:.1f} s after the kill (lease {lease:.0f} s)"
            )
            # the kill really landed mid-flight, and was a crash: nothing left behind
            assert outage.at_kill.not_final >= 10, outage.at_kill
            assert outage.at_kill.leased >= 1, outage.at_kill
            assert outage.orphans == (), "the rule workers outlived their service"
            # started again exactly as the stack had started it
            assert Launch.of(outage.restarted_pid) == outage.launch

            assert final == TOTAL, f"{TOTAL - final} requests not final in time"
            # a retried submission is the request it was the first time: none twice
            assert len(set(tracking_codes)) == TOTAL
            assert sorted(row["tracking_code"] for row in facts) == sorted(tracking_codes)
            assert {row["status"] for row in facts} == {"approved"}
            assert {row["final_moves"] for row in facts} == {1}, "decided twice"
            assert {row["decided_events"] for row in facts} == {1}, "decided event twice"
            assert {row["receipts"] for row in facts} == {1}
            assert {row["documents"] for row in facts} == {1}, "two documents"
            # an inquiry asked again after the crash is a replay of the first
            assert inquiries == dict.fromkeys(tracking_codes, 1), "an inquiry asked twice"

            # what each owner sees through the gateway
            owner = {
                code: citizen
                for citizen, codes in zip(citizens, per_citizen, strict=True)
                for code in codes
            }
            gate = asyncio.Semaphore(10)
            seen_by_owners = await asyncio.gather(
                *(read_as_owner(client, owner[code], code, gate) for code in tracking_codes)
            )
            document_ids = set()
            for request, document_status, document in seen_by_owners:
                assert [move["to"] for move in request["history"]] == DECIDED_BY_RULES, request
                assert request["decision"]["decided_by"] == "rules"
                assert document_status == 200, document
                document_ids.add(document["document_id"])
            assert len(document_ids) == TOTAL

            # the platform is whole again for the modules after this one
            readiness = (await client.get("/readyz")).json()
            assert set(readiness["components"].values()) == {"ready"}, readiness
