"""The stack reports ready only once the simulated agencies have joined their groups: a login
right after "ready" must find the mobile registry reading its inquiries."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from panjereh.agency_simulators.agencies import AGENCIES
from panjereh.common.messaging.kafka import create_topics
from panjereh.devstack.embedded import EmbeddedKafka, free_port
from panjereh.devstack.stack import (
    EXTRAS,
    SIMULATORS,
    Stack,
    StackConfig,
    StackError,
    simulated_agency_topics,
)

Probe = Callable[[int, dict[str, object]], Awaitable[int]]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[str]:
    """A broker of its own: no group here has a member left by another test."""
    kafka = EmbeddedKafka(free_port(), log_path=tmp_path / "kafka.log")
    kafka.start()
    try:
        yield kafka.bootstrap_servers
    finally:
        kafka.stop()


@pytest.fixture
async def probe() -> AsyncIterator[Probe]:
    """``await probe(status, body)``: the port of a ``/readyz`` that always answers so."""
    servers: list[asyncio.Server] = []

    async def serve(status: int, body: dict[str, object]) -> int:
        payload = json.dumps(body).encode()

        async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readline()
            writer.write(
                f"HTTP/1.1 {status} -\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(respond, "127.0.0.1", 0)
        servers.append(server)
        port: int = server.sockets[0].getsockname()[1]
        return port

    yield serve
    for server in servers:
        server.close()
        await server.wait_closed()


def stack_at(tmp_path: Path, gateway_port: int, **environment: str) -> Stack:
    """A stack whose gateway listens on ``gateway_port``, its directories made."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PANJEREH_")} | environment
    stack = Stack(StackConfig(var_dir=tmp_path / "var", port_base=gateway_port, environment=env))
    stack.log_dir.mkdir(parents=True)
    stack.state_file.parent.mkdir(parents=True)
    return stack


async def groups_joined(bootstrap: str) -> dict[str, str]:
    """Each simulated agency's group as the broker describes it: its state, or "no member"."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        # one group a request: the embedded broker does not describe several at once
        described = [await admin.describe_consumer_groups([f"agency-{code}"]) for code in AGENCIES]
    finally:
        await admin.close()
    return {
        group[1]: group[2] if group[5] else "no member"
        for responses in described
        for response in responses
        for group in response.groups
    }


@pytest.mark.integration
async def test_the_stack_is_ready_only_once_every_simulated_agency_has_joined_its_group(
    broker: str, probe: Probe, tmp_path: Path
) -> None:
    # every service ready from the start: the stack has only the simulated agencies to wait for
    gateway = await probe(200, {"status": "ready", "components": {}})
    await create_topics(broker, simulated_agency_topics(), partitions=1)
    stack = stack_at(
        tmp_path, gateway, KAFKA_BOOTSTRAP_SERVERS=broker, PANJEREH_KAFKA_IDEMPOTENCE="false"
    )
    stack._start_processes([], EXTRAS)
    try:
        await stack._wait_ready()
        joined = await groups_joined(broker)
        async with httpx.AsyncClient(timeout=5) as client:
            readyz = await client.get(stack.ready_urls[SIMULATORS.name])
    finally:
        await asyncio.to_thread(stack.stop)
    assert joined == {f"agency-{code}": "Stable" for code in AGENCIES}
    assert readyz.json() == {"status": "ready", "components": dict.fromkeys(AGENCIES, "ready")}
    # the probes listen where the stack asked: on 127.0.0.1, on the port it chose
    assert stack.ready_urls[SIMULATORS.name].startswith("http://127.0.0.1:")


async def test_the_stack_is_not_ready_while_the_simulators_report_joining(
    probe: Probe, tmp_path: Path
) -> None:
    gateway = await probe(200, {"status": "ready", "components": {}})
    simulators = await probe(503, {"status": "unavailable", "components": {"tax": "joining"}})
    stack = stack_at(tmp_path, gateway)
    stack.config.ready_timeout = 0.5
    stack.ready_urls[SIMULATORS.name] = f"http://127.0.0.1:{simulators}/readyz"
    with pytest.raises(StackError, match="not ready after") as refused:
        await stack._wait_ready()
    # the gateway was ready: only the simulators are named, with what they last reported
    assert str(refused.value).endswith("(last report: {'agency-simulators': {'tax': 'joining'}})")
