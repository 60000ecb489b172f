"""Two broker replicas (real uvicorn processes) on one database and one Kafka-protocol broker:
a reply consumed by replica B completes a caller waiting on replica A."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from panjereh.agency_sdk import KafkaSettings
from panjereh.agency_sdk.national_code import complete
from panjereh.agency_simulators.agencies import Faults, build
from panjereh.common.messaging.kafka import create_topics
from panjereh.common.testing.plugin import MigratedDatabase
from panjereh.common.testing.tokens import TokenFactory, bearer
from panjereh.contracts.topics import PLATFORM_TOPICS, agency_inquiries, agency_replies
from panjereh.devstack.embedded import free_port
from panjereh.inquiry_broker.signing import AnswerSigner

pytestmark = pytest.mark.integration

SUBJECTS = [
    "0499370899",
    "0790419904",
    "0084575948",
    "0963695398",
    "0684159414",
    "0067749828",
    "0650451252",
    "1583250689",
    "4032152314",
    "0076229645",
]


def start_replica(
    name: str, env: dict[str, str], log_dir: Path
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    log = (log_dir / f"{name}.log").open("wb")
    process = subprocess.Popen(
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
            "--no-access-log",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    log.close()
    return process, f"http://127.0.0.1:{port}"


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"replica not ready:\n{log.read_text()}")


@pytest.fixture(scope="module")
async def replicas(
    migrated_database: MigratedDatabase,
    kafka_bootstrap_servers: str,
    jwks_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[str, str]]:
    url = await migrated_database("panjereh.inquiry_broker")
    await create_topics(
        kafka_bootstrap_servers,
        [*PLATFORM_TOPICS, agency_inquiries("civil-registry"), agency_replies("civil-registry")],
    )
    log_dir = tmp_path_factory.mktemp("replicas")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PANJEREH_")}
    env.update(
        {
            "PANJEREH_ENV": "test",
            "PANJEREH_INQUIRY_BROKER_DATABASE_URL": url,
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap_servers,
            "PANJEREH_KAFKA_IDEMPOTENCE": "false",
            "PANJEREH_JWKS_URL": jwks_url,
            # one key for every replica: either may sign, both publish it
            "PANJEREH_INQUIRY_BROKER_SIGNING_PRIVATE_KEY": AnswerSigner.generate().private_pem(),
            # test mode takes no dev secrets; one audit chain key for both replicas' entries
            "PANJEREH_INQUIRY_BROKER_SUBJECT_HASH_KEY": "k7f3a9c1eB2d4F6h8J0kL3m5N7p9Q1r",
            "PANJEREH_INQUIRY_BROKER_AUDIT_CHAIN_KEY": "x9Kq2-rT7vB4nM8wZ1cL6pH3jF5dG0sY",
        }
    )
    # A serves the callers and consumes nothing; B consumes every reply. A's safety-net poll
    # is longer than the test's patience, so only B's NOTIFY can complete A's callers in time.
    env_a = {
        **env,
        "PANJEREH_INQUIRY_BROKER_RUN_CONSUMERS": "false",
        "PANJEREH_INQUIRY_BROKER_ANSWER_POLL_INTERVAL_SECONDS": "30",
    }
    a, url_a = start_replica("a", env_a, log_dir)
    b, url_b = start_replica("b", env, log_dir)
    try:
        await asyncio.to_thread(wait_ready, url_a, a, log_dir / "a.log")
        await asyncio.to_thread(wait_ready, url_b, b, log_dir / "b.log")
        yield url_a, url_b
    finally:
        for process in (a, b):
            process.terminate()
        for process in (a, b):
            try:
                await asyncio.to_thread(process.wait, 20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
async def civil_registry(kafka_bootstrap_servers: str) -> AsyncIterator[None]:
    """The simulated civil registry, once it owns its topic's partitions."""
    await create_topics(
        kafka_bootstrap_servers,
        [*PLATFORM_TOPICS, agency_inquiries("civil-registry"), agency_replies("civil-registry")],
    )
    agency = build(
        "civil-registry",
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap_servers, idempotence=False),
        faults=Faults(latency_ms=50),
    )
    task = asyncio.create_task(agency.run())
    async with asyncio.timeout(30):
        await agency.ready.wait()
    yield
    agency.stop()
    await task


async def test_a_reply_consumed_by_b_completes_a_caller_waiting_on_a(
    civil_registry: None, replicas: tuple[str, str], token_factory: TokenFactory
) -> None:
    url_a, url_b = replicas
    caller = bearer(
        token_factory(
            roles=["service:identity"], sub="identity", national_code=None, scopes=["inquiries"]
        )
    )

    async def ask(base: str, subject: str) -> tuple[httpx.Response, float]:
        async with httpx.AsyncClient(base_url=base, timeout=15) as client:
            started = time.monotonic()
            response = await client.post(
                "/api/v1/inquiries?wait=8",
                headers=caller,
                json={
                    "type": "civil-registry.person",
                    "subject": subject,
                    "purpose": {"service_code": "identity.registration"},
                },
            )
            return response, time.monotonic() - started

    # B has joined the replies group once it has answered one (Tansu delays a first join)
    async with asyncio.timeout(40):
        attempt = 0
        while True:
            attempt += 1
            warm, _ = await ask(url_b, complete(f"3{attempt:08d}"))
            if warm.json()["status"] == "answered":
                break

    results = await asyncio.gather(*(ask(url_a, s) for s in SUBJECTS))
    for response, elapsed in results:
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "answered"
        # woken by B's NOTIFY, not by A's 30 s poll nor the 8 s wait running out
        assert elapsed < 6.0

    # and with both replicas serving callers, each reply still completes its caller
    # (fresh subjects: the ones above would be answered from the cache)
    fresh = [complete(f"12345{i:04d}") for i in range(1, 11)]
    mixed = await asyncio.gather(*(ask(url_a if i % 2 else url_b, s) for i, s in enumerate(fresh)))
    assert all(r.json()["status"] == "answered" for r, _ in mixed)
    # the key both replicas publish verifies what either signed
    async with httpx.AsyncClient() as client:
        keys_a = (await client.get(f"{url_a}/api/v1/inquiry-types/keys")).json()
        keys_b = (await client.get(f"{url_b}/api/v1/inquiry-types/keys")).json()
    assert keys_a == keys_b
