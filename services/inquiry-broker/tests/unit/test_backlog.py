"""Which partition an inquiry is on, and what a look at an agency's topics says about it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from aiokafka.partitioner import DefaultPartitioner

from panjereh.inquiry_broker.backlog import AgencyBacklog, partition_of


def test_an_inquiry_is_placed_where_the_brokers_producer_puts_it() -> None:
    producer_places = DefaultPartitioner()
    for partitions in (1, 3, 6, 12):
        every = list(range(partitions))
        for _ in range(200):
            key = str(uuid.uuid4())
            assert partition_of(key, partitions) == producer_places(key.encode(), every, every)


def test_an_inquiry_on_a_partition_the_agency_has_not_read_is_unread() -> None:
    inquiry = uuid.uuid4()
    on = partition_of(str(inquiry), 6)
    behind = AgencyBacklog(
        inquiry_partitions=6, unread_partitions=frozenset({on}), replies_pending_since=None
    )
    elsewhere = AgencyBacklog(
        inquiry_partitions=6,
        unread_partitions=frozenset(range(6)) - {on},
        replies_pending_since=None,
    )
    assert behind.unread(inquiry)
    assert not elsewhere.unread(inquiry)


def test_when_kafka_does_not_answer_nothing_counts_as_read() -> None:
    unknown = AgencyBacklog.unknown(datetime.now(UTC))
    assert unknown.unread(uuid.uuid4())
    assert unknown.replies_pending_since is not None
