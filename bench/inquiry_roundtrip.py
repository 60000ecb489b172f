"""Inquiry round trip on loopback: caller → broker → Kafka → simulated agency → Kafka → broker
→ caller, through real processes (the broker under uvicorn, the simulators with zero latency,
embedded PostgreSQL and Tansu). Target: p99 ≤ 50 ms.

    .venv/bin/python bench/inquiry_roundtrip.py [--requests 300] [--clients 8] [--strict]

The machine's load matters: on a shared 2-core machine every process of the round trip (the
broker, the simulator, Tansu, PostgreSQL) competes for CPU; the report includes the load
average so that runs can be compared.

Every request asks a fresh subject (no cache hit) with ``?wait=5`` and is timed end to end.
The agencies' topics are created as the local stack creates them (one partition each): the
broker's replies consumer reads every agency's replies topic, and on Tansu each of its tight
fetches walks every partition it holds (auto-created topics would have four each).
The CPU seconds of each process (the broker, the simulators, Tansu, PostgreSQL's backends; from
``/proc/<pid>/stat``) are read around the inquiries and, separately, around the reference
reads: CPU per inquiry beside CPU per reference read (target: broker ≤ 5 ms per inquiry).
A second phase (``--clients``, default 8; 0 skips it) runs that many concurrent callers in closed
loops, then the reference read at the same concurrency: one caller leaves the broker mostly
waiting, so its fixed per-second costs (consumer fetches, timers) land on few inquiries; under
concurrent load they are spread over many, and CPU per inquiry is closer to what an inquiry
itself costs. Both figures are printed; the target is checked on the first.

Prints one JSON line; ``--strict`` exits 1 when p99 or the broker's CPU misses its target.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from benchkit import emit
from requests_e2e import CpuWindow, ProcessGroups

from panjereh.agency_sdk.national_code import complete
from panjereh.common.db import ensure_databases
from panjereh.common.messaging.kafka import create_topics
from panjereh.common.migrations import upgrade
from panjereh.common.testing.tokens import JwksServer, SigningKey, TokenFactory, bearer
from panjereh.contracts.access import INQUIRIES_SCOPE
from panjereh.contracts.topics import PLATFORM_TOPICS
from panjereh.devstack.embedded import EmbeddedKafka, EmbeddedPostgres, free_port
from panjereh.devstack.stack import simulated_agency_topics

TARGET_P99_MS = 50.0
#: the interpreter, by version and resolved path: its build moves every CPU figure (see
#: docs/profiling.md)
PYTHON = f"{sys.version.split()[0]} {os.path.realpath(sys.executable)}"
TARGET_BROKER_CPU_MS = 5.0


def concurrent_report(phases: tuple[Phase, Phase] | None, clients: int) -> dict[str, Any] | None:
    """The concurrent phase's figures, beside its reference read at the same concurrency."""
    if phases is None:
        return None
    inquiries, reference = phases
    return {
        "clients": clients,
        "inquiries": len(inquiries.timings),
        "inquiries_per_s": round(len(inquiries.timings) / inquiries.seconds, 1),
        "p50_ms": round(statistics.median(inquiries.timings), 2),
        "p99_ms": round(percentile(inquiries.timings, 0.99), 2),
        "reference_per_s": round(len(reference.timings) / reference.seconds, 1),
        "reference_p99_ms": round(percentile(reference.timings, 0.99), 2),
        "cpu_ms_per_inquiry": cpu_per(inquiries.cpu, len(inquiries.timings)),
        "cpu_ms_per_reference_read": cpu_per(reference.cpu, len(reference.timings)),
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def cpu_per(window: CpuWindow, operations: int) -> dict[str, float]:
    """Milliseconds of CPU per operation, per process, in ``window``."""
    return {
        name: round(1000 * used / max(operations, 1), 2)
        for name, used in sorted(window.used.items(), key=lambda item: -item[1])
    }


def spawn(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )


async def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient(timeout=2) as client:
        for _ in range(300):
            if process.poll() is not None:
                raise SystemExit("the broker exited while starting")
            try:
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit("the broker did not become ready")


def inquiry_body(n: int) -> dict[str, Any]:
    return {
        "type": "civil-registry.person",
        "subject": complete(f"21{n:06d}3"),
        # the platform purpose the broker grants identity this type for (a first login)
        "purpose": {"service_code": "identity.registration", "legal_basis": "bench"},
    }


class Transactions:
    """Transactions the broker's database committed or rolled back (``pg_stat_database``):
    a count that, unlike CPU time, does not move with the machine's load. PostgreSQL publishes
    a backend's counts when it goes idle, at most every second: read after a short pause."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.counted = 0

    async def _now(self) -> int:
        await asyncio.sleep(1.2)
        connection = await asyncpg.connect(self.admin_url)
        try:
            return int(
                await connection.fetchval(
                    "SELECT xact_commit + xact_rollback FROM pg_stat_database"
                    " WHERE datname = 'bench'"
                )
            )
        finally:
            await connection.close()

    async def start(self) -> None:
        self.counted = -await self._now()

    async def stop(self) -> None:
        self.counted += await self._now()


class Calls:
    """The two timed calls of both phases: an inquiry (fresh subject ``n``) and the reference
    read; each returns its milliseconds. With ``asked``, each inquiry's wall-clock start,
    milliseconds and id are appended to it (for :func:`slow_round_trips`)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        headers: dict[str, str],
        asked: list[tuple[float, float, str]] | None = None,
    ) -> None:
        self._client = client
        self._headers = headers
        self._asked = asked

    async def ask(self, n: int) -> float:
        wall = time.time()
        started = time.perf_counter()
        response = await self._client.post(
            "/api/v1/inquiries?wait=5", json=inquiry_body(n), headers=self._headers
        )
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200 or response.json()["status"] != "answered":
            raise SystemExit(f"unexpected answer: {response.status_code} {response.text}")
        if self._asked is not None:
            self._asked.append((wall, elapsed, response.json()["inquiry_id"]))
        return elapsed

    async def read(self, _: int = 0) -> float:
        started = time.perf_counter()
        (await self._client.get("/api/v1/inquiry-types", headers=self._headers)).raise_for_status()
        return (time.perf_counter() - started) * 1000


#: The legs of one round trip, from the inquiry's own timestamps (one clock: one machine)
LEGS = ("asked → stored", "stored → published", "published → answered", "answered → returned")


async def slow_round_trips(
    admin_url: str, asked: list[tuple[float, float, str]], *, slower_than_ms: float
) -> dict[str, Any]:
    """The round trips slower than ``slower_than_ms``, counted by the leg that took longest:
    the inquiry stored (its ``created_at``), its outbox row published (``sent_at``), its answer
    recorded (``answered_at``), the answer returned. A leg that holds most slow round trips
    is where to look (docs/profiling.md, "Sixth round")."""
    connection = await asyncpg.connect(admin_url, database="bench")
    try:
        rows = await connection.fetch(
            # the outbox row of an inquiry's first attempt is keyed by the inquiry's id
            "SELECT i.id::text AS id, extract(epoch FROM i.created_at) AS stored,"
            " extract(epoch FROM min(o.sent_at)) AS published,"
            " extract(epoch FROM i.answered_at) AS answered"
            " FROM inquiry_broker.inquiry i"
            " JOIN inquiry_broker.outbox_message o ON o.key = i.id::text"
            " WHERE i.id = ANY($1::uuid[]) GROUP BY i.id",
            [inquiry_id for _, _, inquiry_id in asked],
        )
    finally:
        await connection.close()
    times = {row["id"]: row for row in rows}
    by_leg: dict[str, int] = dict.fromkeys(LEGS, 0)
    longest: dict[str, float] = dict.fromkeys(LEGS, 0.0)
    for wall, elapsed, inquiry_id in asked:
        row = times.get(inquiry_id)
        if elapsed <= slower_than_ms or row is None or None in row.values():
            continue
        marks = [wall, float(row["stored"]), float(row["published"]), float(row["answered"])]
        marks.append(wall + elapsed / 1000)
        legs = [1000 * (later - earlier) for earlier, later in itertools.pairwise(marks)]
        leg = LEGS[legs.index(max(legs))]
        by_leg[leg] += 1
        longest[leg] = max(longest[leg], round(max(legs), 1))
    return {
        "slower_than_ms": slower_than_ms,
        "count": sum(by_leg.values()),
        "by_longest_leg": by_leg,
        "longest_leg_ms": longest,
    }


class Phase:
    """One measured phase: latencies and the CPU of every process over it."""

    def __init__(self, groups: ProcessGroups) -> None:
        self.timings: list[float] = []
        self.cpu = CpuWindow(groups)
        self.seconds = 0.0


async def closed_loop(
    operation: Callable[[int], Awaitable[float]],
    *,
    clients: int,
    total: int,
    first: int,
    groups: ProcessGroups,
) -> Phase:
    """``clients`` callers each running ``operation`` back to back until ``total`` are done
    (operation numbers from ``first``, so each inquiry asks a fresh subject)."""
    phase = Phase(groups)
    numbers = iter(range(first, first + total))

    async def caller() -> None:
        for n in numbers:
            phase.timings.append(await operation(n))

    phase.cpu.start()
    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(clients)))
    phase.seconds = time.perf_counter() - started
    phase.cpu.stop()
    return phase


async def measure_concurrent(
    url: str, token: str, *, clients: int, requests: int, first: int, groups: ProcessGroups
) -> tuple[Phase, Phase]:
    """``clients`` concurrent callers: inquiries, then the reference read at the same
    concurrency. At one caller the broker's fixed per-second costs (its consumers' fetches,
    its timers) are spread over the few inquiries one caller can make; here over many."""
    headers = bearer(token)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=10, limits=limits) as client:
        calls = Calls(client, headers)
        ask, read = calls.ask, calls.read

        await closed_loop(ask, clients=clients, total=4 * clients, first=first, groups=groups)
        inquiries = await closed_loop(
            ask, clients=clients, total=requests, first=first + 4 * clients, groups=groups
        )
        reference = await closed_loop(read, clients=clients, total=requests, first=0, groups=groups)
    return inquiries, reference


async def measure(
    url: str, token: str, requests: int, warmup: int, *, groups: ProcessGroups, admin_url: str
) -> tuple[
    list[float], list[float], CpuWindow, CpuWindow, Transactions, Transactions, dict[str, Any]
]:
    """Round trips, then side by side a reference: an authenticated registry read (HTTP, token
    verification and PostgreSQL, no Kafka), so the ratio isolates the broker-agency hops. Each
    phase in a CPU window of its own, with the database transactions it took (the pool's
    connection checks and the background loops included)."""
    headers = bearer(token)
    timings: list[float] = []
    reference: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        asked: list[tuple[float, float, str]] = []
        calls = Calls(client, headers, asked)
        ask, read = calls.ask, calls.read

        for n in range(warmup):
            await ask(n)
            await read()
        asked.clear()
        inquiries_cpu, inquiries_db = CpuWindow(groups), Transactions(admin_url)
        await inquiries_db.start()
        inquiries_cpu.start()
        timings = [await ask(n) for n in range(warmup, warmup + requests)]
        inquiries_cpu.stop()
        await inquiries_db.stop()
        reference_cpu, reference_db = CpuWindow(groups), Transactions(admin_url)
        await reference_db.start()
        reference_cpu.start()
        reference = [await read() for _ in range(requests)]
        reference_cpu.stop()
        await reference_db.stop()
    slow = await slow_round_trips(admin_url, asked, slower_than_ms=TARGET_P99_MS)
    return timings, reference, inquiries_cpu, reference_cpu, inquiries_db, reference_db, slow


def parse_options() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--fetch-max-wait-ms", type=int, default=5)
    parser.add_argument(
        "--clients", type=int, default=8, help="concurrent callers of a second phase (0: none)"
    )
    parser.add_argument("--strict", action="store_true")
    return parser.parse_args()


async def main() -> int:
    options = parse_options()
    # the broker's migrations read its settings in this process too (dev, as make run)
    os.environ["PANJEREH_ENV"] = "dev"

    with tempfile.TemporaryDirectory(prefix="bench-inquiry-") as scratch:
        work = Path(scratch)
        postgres = EmbeddedPostgres(work / "pg")
        kafka = EmbeddedKafka(free_port(), log_path=work / "kafka.log")
        key = SigningKey(kid="bench")
        jwks = JwksServer([key.public_jwk])
        processes: list[subprocess.Popen[bytes]] = []
        try:
            await asyncio.to_thread(postgres.start)
            await asyncio.to_thread(kafka.start)
            jwks.start()
            await ensure_databases(postgres.url("postgres", driver="postgresql"), ["bench"])
            database_url = postgres.url("bench")
            await asyncio.to_thread(upgrade, "panjereh.inquiry_broker", database_url)
            await create_topics(kafka.bootstrap_servers, PLATFORM_TOPICS)
            # the agencies' topics as the local stack lays them out (one partition each):
            # the broker's replies consumer reads every agency's replies topic, and on Tansu
            # each of its tight fetches walks every partition
            await create_topics(kafka.bootstrap_servers, simulated_agency_topics(), partitions=1)
            port = free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith("PANJEREH_")}
            env.update(
                {
                    "PANJEREH_ENV": "dev",
                    "PANJEREH_LOG_LEVEL": "WARNING",
                    "PANJEREH_INQUIRY_BROKER_DATABASE_URL": database_url,
                    "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
                    "PANJEREH_KAFKA_IDEMPOTENCE": "false",
                    "PANJEREH_JWKS_URL": jwks.url,
                    # Tansu does not wake a held fetch: this bounds each Kafka hop's wait
                    "PANJEREH_SIMULATORS_FETCH_MAX_WAIT_MS": str(options.fetch_max_wait_ms),
                    "PANJEREH_INQUIRY_BROKER_REPLIES_FETCH_MAX_WAIT_MS": str(
                        options.fetch_max_wait_ms
                    ),
                }
            )
            broker = spawn(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "panjereh.inquiry_broker.main:create_app",
                    "--factory",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--loop",
                    "uvloop",
                    "--http",
                    "httptools",
                    "--no-access-log",
                ],
                env,
                work / "broker.log",
            )
            processes.append(broker)
            processes.append(
                spawn(
                    [sys.executable, "-m", "panjereh.agency_simulators", "civil-registry"],
                    env,
                    work / "simulators.log",
                )
            )
            url = f"http://127.0.0.1:{port}"
            await wait_ready(url, broker)
            token = TokenFactory(key)(
                roles=["service:identity"],
                sub="service-identity",
                national_code=None,
                scopes=[INQUIRIES_SCOPE],
            )
            groups = ProcessGroups(
                {
                    "inquiry-broker": broker.pid,
                    "agency-simulators": processes[1].pid,
                    "kafka (tansu)": kafka.process.pid if kafka.process else 0,
                    "postgresql": int(
                        (postgres.data_dir / "postmaster.pid").read_text().split()[0]
                    ),
                },
                alone=frozenset(),
            )
            measured = await measure(
                url,
                token,
                options.requests,
                options.warmup,
                groups=groups,
                admin_url=postgres.url("postgres", driver="postgresql"),
            )
            timings, reference, inquiries_cpu, reference_cpu, inquiries_db, reference_db, slow = (
                measured
            )
            concurrent = (
                await measure_concurrent(
                    url,
                    token,
                    clients=options.clients,
                    requests=options.requests,
                    first=options.warmup + options.requests,
                    groups=groups,
                )
                if options.clients > 0
                else None
            )
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
            jwks.stop()
            kafka.stop()
            postgres.stop()

    p99 = percentile(timings, 0.99)
    report = {
        "bench": "inquiry_roundtrip",
        "requests": len(timings),
        "p50_ms": round(statistics.median(timings), 2),
        "p95_ms": round(percentile(timings, 0.95), 2),
        "p99_ms": round(p99, 2),
        "max_ms": round(max(timings), 2),
        "reference": "GET /api/v1/inquiry-types (authenticated, no Kafka)",
        "reference_p50_ms": round(statistics.median(reference), 2),
        "reference_p99_ms": round(percentile(reference, 0.99), 2),
        "p99_over_reference_p99": round(p99 / percentile(reference, 0.99), 2),
        "target_p99_ms": TARGET_P99_MS,
        "cpu_ms_per_inquiry": cpu_per(inquiries_cpu, len(timings)),
        "cpu_ms_per_reference_read": cpu_per(reference_cpu, len(reference)),
        "db_transactions_per_inquiry": round(inquiries_db.counted / len(timings), 2),
        "db_transactions_per_reference_read": round(reference_db.counted / len(reference), 2),
        "broker_cpu_ms_per_inquiry_over_reference": round(
            cpu_per(inquiries_cpu, len(timings))["inquiry-broker"]
            / max(cpu_per(reference_cpu, len(reference))["inquiry-broker"], 0.01),
            2,
        ),
        "target_broker_cpu_ms_per_inquiry": TARGET_BROKER_CPU_MS,
        "met": p99 <= TARGET_P99_MS
        and cpu_per(inquiries_cpu, len(timings))["inquiry-broker"] <= TARGET_BROKER_CPU_MS,
        "slow_round_trips": slow,
        "fetch_max_wait_ms": options.fetch_max_wait_ms,
        "concurrent": concurrent_report(concurrent, options.clients),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "python": PYTHON,
    }
    print(json.dumps(report))
    emit(
        "broker CPU per inquiry",
        report["cpu_ms_per_inquiry"]["inquiry-broker"],
        "ms",
        reference="broker CPU per reference read",
        reference_value=report["cpu_ms_per_reference_read"]["inquiry-broker"],
        target=f"<= {TARGET_BROKER_CPU_MS:.0f} ms",
    )
    if concurrent is not None:
        inquiries, reference_phase = concurrent
        emit(
            f"broker CPU per inquiry, {options.clients} concurrent",
            cpu_per(inquiries.cpu, len(inquiries.timings))["inquiry-broker"],
            "ms",
            reference="broker CPU per reference read, same concurrency",
            reference_value=cpu_per(reference_phase.cpu, len(reference_phase.timings))[
                "inquiry-broker"
            ],
            target=f"<= {TARGET_BROKER_CPU_MS:.0f} ms",
        )
    return 1 if options.strict and not report["met"] else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
