"""Inquiry round trip on loopback: caller → broker → Kafka → simulated agency → Kafka → broker
→ caller, through real processes (the broker under uvicorn, the simulators with zero latency,
embedded PostgreSQL and Tansu). Target: p99 ≤ 50 ms.

    .venv/bin/python bench/inquiry_roundtrip.py [--requests 300] [--strict]

The machine's load matters: on a shared 2-core machine every process of the round trip (the
broker, the simulator, Tansu, PostgreSQL) competes for CPU; the report includes the load
average so that runs can be compared.

Every request asks a fresh subject (no cache hit) with ``?wait=5`` and is timed end to end.
Prints one JSON line; ``--strict`` exits 1 when p99 misses the target.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from panjereh.agency_sdk.national_code import complete
from panjereh.common.db import ensure_databases
from panjereh.common.messaging.kafka import create_topics
from panjereh.common.migrations import upgrade
from panjereh.common.testing.tokens import JwksServer, SigningKey, TokenFactory, bearer
from panjereh.contracts.topics import PLATFORM_TOPICS, agency_inquiries
from panjereh.devstack.embedded import EmbeddedKafka, EmbeddedPostgres, free_port

TARGET_P99_MS = 50.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


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


async def measure(
    url: str, token: str, requests: int, warmup: int
) -> tuple[list[float], list[float]]:
    """Round trips, and side by side a reference: an authenticated registry read (HTTP, token
    verification and PostgreSQL, no Kafka), so the ratio isolates the broker-agency hops."""
    headers = bearer(token)
    timings: list[float] = []
    reference: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        for n in range(warmup + requests):
            body = {
                "type": "civil-registry.person",
                "subject": complete(f"21{n:06d}3"),
                "purpose": {"service_code": "citizen-registration"},
            }
            started = time.perf_counter()
            response = await client.post("/api/v1/inquiries?wait=5", json=body, headers=headers)
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code != 200 or response.json()["status"] != "answered":
                raise SystemExit(f"unexpected answer: {response.status_code} {response.text}")
            started = time.perf_counter()
            (await client.get("/api/v1/inquiry-types", headers=headers)).raise_for_status()
            reference_elapsed = (time.perf_counter() - started) * 1000
            if n >= warmup:
                timings.append(elapsed)
                reference.append(reference_elapsed)
    return timings, reference


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--fetch-max-wait-ms", type=int, default=5)
    parser.add_argument("--strict", action="store_true")
    options = parser.parse_args()

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
            await create_topics(
                kafka.bootstrap_servers, [*PLATFORM_TOPICS, agency_inquiries("civil-registry")]
            )
            port = free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith("PANJEREH_")}
            env.update(
                {
                    "PANJEREH_ENV": "test",
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
            token = TokenFactory(key)(roles=["service:identity"], sub="bench", national_code=None)
            timings, reference = await measure(url, token, options.requests, options.warmup)
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
        "met": p99 <= TARGET_P99_MS,
        "fetch_max_wait_ms": options.fetch_max_wait_ms,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(report))
    return 1 if options.strict and not report["met"] else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
