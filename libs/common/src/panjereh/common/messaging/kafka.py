"""Kafka clients built from settings, and the broker readiness check.

Every producer uses ``acks="all"`` (a record is acknowledged only once every in-sync replica
has it) and idempotence from ``ServiceSettings.kafka_idempotence``. aiokafka keeps at most
one batch in flight per partition, so retries never reorder records of one key. Consumers
never auto-commit: the idempotent consumer commits offset + 1 after its DB transaction.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.helpers import create_ssl_context

from panjereh.common.health import ReadinessCheck
from panjereh.common.settings import ServiceSettings


def connection_options(settings: ServiceSettings) -> dict[str, Any]:
    """Where the cluster is and how to authenticate: shared by producers, consumers, checks."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in {"SSL", "SASL_SSL"}:
        options["ssl_context"] = create_ssl_context(cafile=settings.kafka_ssl_cafile)
    if settings.kafka_security_protocol.startswith("SASL_"):
        password = settings.kafka_sasl_password
        options.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=password.get_secret_value() if password else None,
        )
    return options


def producer_options(settings: ServiceSettings, **overrides: Any) -> dict[str, Any]:
    """``AIOKafkaProducer`` keyword arguments for ``settings``."""
    options: dict[str, Any] = {
        **connection_options(settings),
        "client_id": settings.service_name,
        "acks": "all",
        "enable_idempotence": settings.kafka_idempotence,
        "linger_ms": 5,
        "request_timeout_ms": 15_000,
    }
    options.update(overrides)
    return options


def create_producer(settings: ServiceSettings, **overrides: Any) -> AIOKafkaProducer:
    """A producer (not started) for ``settings``; ``overrides`` go to ``AIOKafkaProducer``."""
    return AIOKafkaProducer(**producer_options(settings, **overrides))


#: How often aiokafka's background fetch routine wakes when nothing woke it (aiokafka's own
#: default is 200 ms). Whatever needs it sooner wakes it at once: a fetch answered, records
#: handed over, a rebalance, a resumed partition, a metadata refresh; the tick is only a safety
#: net. At idle it was most of a consumer's own CPU (five wake-ups a second per consumer, each
#: walking every assigned partition); at one a second an idle consumer costs its process about
#: 40 % less.
FETCHER_TICK_MS = 1000


def consumer_options(
    settings: ServiceSettings, *, group_id: str, **overrides: Any
) -> dict[str, Any]:
    """``AIOKafkaConsumer`` keyword arguments: group ``group_id``, manual commits, from the start.

    ``auto_offset_reset="earliest"``: a new group must see events published before it first
    joined, or facts would be silently skipped.
    """
    options: dict[str, Any] = {
        **connection_options(settings),
        "client_id": f"{settings.service_name}-{group_id}",
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "consumer_timeout_ms": FETCHER_TICK_MS,
    }
    options.update(overrides)
    return options


#: Longest fetch wait of an idle consumer (Apache Kafka's own default).
IDLE_FETCH_MAX_WAIT_MS = 500
#: How long without records before a consumer counts as idle and starts waiting longer.
QUIET_AFTER_SECONDS = 2.0
#: Bounds of how long one ``getmany`` waits for fetched records. Records that arrive end it at
#: once, so a longer one costs no latency; it only spaces the loop's own turns (and a stop).
POLL_TIMEOUT_MS = 200
IDLE_POLL_TIMEOUT_MS = 1000


def poll_timeout_ms(fetch_wait_ms: int) -> int:
    """How long a consumer's ``getmany`` may wait while its fetches wait ``fetch_wait_ms``:
    two fetch waits, within ``POLL_TIMEOUT_MS`` and ``IDLE_POLL_TIMEOUT_MS``."""
    return max(POLL_TIMEOUT_MS, min(2 * fetch_wait_ms, IDLE_POLL_TIMEOUT_MS))


class FetchPacer:
    """Adapts a consumer's fetch wait to its traffic: tight while records flow, long when idle.

    A broker that does not answer a held fetch as soon as a record lands (the embedded Tansu)
    makes the fetch wait the latency floor of every hop, so consumers there ask for short
    waits; at idle those become hundreds of empty fetches a second, each costing the broker
    and the client CPU. The pacer keeps the configured (short) wait while records arrive, and
    once none came for ``quiet_after`` seconds doubles it at every empty poll up to
    ``idle_ms``. The first record after a quiet spell waits at most ``idle_ms``; from then on
    fetches are tight again. Against Apache Kafka, which answers a held fetch at once, the
    long idle wait costs no latency at all.

    aiokafka reads the wait from its fetcher for every fetch request it builds; the pacer sets
    it there, and does nothing if a future aiokafka keeps it elsewhere.
    """

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        *,
        idle_ms: int = IDLE_FETCH_MAX_WAIT_MS,
        quiet_after: float = QUIET_AFTER_SECONDS,
    ) -> None:
        self._consumer = consumer
        self.tight_ms = int(getattr(self._fetcher(), "_fetch_max_wait_ms", idle_ms) or 0)
        self.idle_ms = max(idle_ms, self.tight_ms)
        self.current_ms = self.tight_ms
        self._quiet_after = quiet_after
        self._last_records = time.monotonic()

    def _fetcher(self) -> Any:
        return getattr(self._consumer, "_fetcher", None)

    def observe(self, *, got_records: bool) -> None:
        """After each poll: tight when records came lately, backing off once quiet."""
        now = time.monotonic()
        if got_records:
            self._last_records = now
        if now - self._last_records < self._quiet_after:
            wait = self.tight_ms
        else:
            wait = min(self.idle_ms, max(self.current_ms * 2, 1))
        if wait != self.current_ms:
            self.current_ms = wait
            fetcher = self._fetcher()
            if fetcher is not None and hasattr(fetcher, "_fetch_max_wait_ms"):
                fetcher._fetch_max_wait_ms = wait  # see the class docstring

    def tighten(self) -> None:
        """Records are expected soon (this process just asked for them): poll tight again."""
        self.observe(got_records=True)

    @property
    def poll_timeout_ms(self) -> int:
        """The ``getmany`` timeout that goes with the current fetch wait."""
        return poll_timeout_ms(self.current_ms)


def create_consumer(
    settings: ServiceSettings, *topics: str, group_id: str, **overrides: Any
) -> AIOKafkaConsumer:
    """A consumer (not started) of ``topics``; see :func:`consumer_options`."""
    return AIOKafkaConsumer(*topics, **consumer_options(settings, group_id=group_id, **overrides))


async def check_broker(bootstrap_servers: str, *, within: float = 1.5, **connection: Any) -> None:
    """Raise unless a broker answers a metadata request within ``within`` seconds."""
    connection["bootstrap_servers"] = bootstrap_servers
    client = AIOKafkaClient(**connection, request_timeout_ms=1000)
    try:
        await asyncio.wait_for(client.bootstrap(), timeout=within)
    finally:
        await client.close()


def broker_readiness_check(settings: ServiceSettings, *, timeout: float = 1.5) -> ReadinessCheck:
    """A check for ``app.state.readiness.add("broker", ...)``: a cheap metadata round trip.

    A fresh connection per check on purpose: readiness must say whether the broker answers
    now, not whether some long-lived client still believes it does.
    """

    async def check() -> None:
        options = connection_options(settings)
        await check_broker(options.pop("bootstrap_servers"), within=timeout, **options)

    return check


async def create_topics(
    bootstrap_servers: str,
    topics: Sequence[str],
    *,
    partitions: int = 3,
    replication_factor: int = 1,
    within: float = 20.0,
    **connection: Any,
) -> list[str]:
    """Create the ``topics`` that do not exist yet, retrying while the broker comes up.

    For the local stack and tests (one broker: replication factor 1); in production topics are
    declared resources of the cluster operator, never created by services. Returns the names
    it created.
    """
    deadline = time.monotonic() + within
    while True:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap_servers, request_timeout_ms=2000, **connection
        )
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [name for name in dict.fromkeys(topics) if name not in existing]
            if missing:
                await admin.create_topics(
                    [
                        NewTopic(
                            name,
                            num_partitions=partitions,
                            replication_factor=replication_factor,
                        )
                        for name in missing
                    ]
                )
            return missing
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
        finally:
            await admin.close()
