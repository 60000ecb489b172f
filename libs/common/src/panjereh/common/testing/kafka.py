"""Kafka helpers for tests: create topics (the kernel's), read back everything a topic holds.

Reading uses a group-less consumer assigned to every partition from the beginning, so a
helper never joins (or disturbs) the group of the consumer under test.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from panjereh.common.messaging.kafka import create_topics


async def read_topic(
    bootstrap_servers: str, topic: str, *, count: int, within: float = 20.0, settle: float = 0.3
) -> list[ConsumerRecord[bytes, bytes]]:
    """All records of ``topic`` once at least ``count`` arrived (and ``settle`` s more passed).

    Waiting ``settle`` seconds after reaching ``count`` is what lets a test see duplicates
    that must *not* be there. Records are returned per partition in offset order.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        partitions: set[int] | None = None
        deadline = time.monotonic() + within
        while partitions is None:
            partitions = consumer.partitions_for_topic(topic)
            if partitions is None:
                await consumer.topics()  # refreshes the cluster metadata
                if time.monotonic() > deadline:
                    msg = f"topic {topic!r} does not exist"
                    raise TimeoutError(msg)
                await asyncio.sleep(0.1)
        assigned = [TopicPartition(topic, partition) for partition in sorted(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        settled_at: float | None = None
        while True:
            batches = await consumer.getmany(timeout_ms=100)
            for batch in batches.values():
                records.extend(batch)
            now = time.monotonic()
            if len(records) >= count:
                settled_at = settled_at or now
                if now - settled_at >= settle:
                    break
            elif now > deadline:
                msg = f"{topic!r}: {len(records)} records after {within} s, expected {count}"
                raise TimeoutError(msg)
    finally:
        await consumer.stop()
    records.sort(key=lambda record: (record.partition, record.offset))
    return records


async def produce(
    bootstrap_servers: str,
    topic: str,
    value: bytes,
    *,
    key: bytes | None = None,
    headers: Sequence[tuple[str, bytes]] = (),
    **options: Any,
) -> None:
    """Send one record and wait for the broker's ack (idempotence off: Tansu rejects it)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers, enable_idempotence=False, **options
    )
    await producer.start()
    try:
        await producer.send_and_wait(topic, value=value, key=key, headers=list(headers))
    finally:
        await producer.stop()


__all__ = ["create_topics", "produce", "read_topic"]
