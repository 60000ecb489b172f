"""Prometheus metrics every process exports at ``/metrics`` on its own port.

``prometheus-client`` rather than OpenTelemetry metrics: the cluster scrapes Prometheus text
(PodMonitors), the client is small and mature, and a histogram here is exactly what an alert
rule reads, with no exporter or reader in between. Traces stay with OpenTelemetry.

Labels are bounded by construction: HTTP routes are the route *templates*
(``/api/v1/requests/{tracking_code}``), never raw paths; no national code, tracking code or
client id ever becomes a label. Prometheus adds ``job`` and ``instance`` from the scrape, so
no ``service`` label is needed here.

Kernel parts record what they do (HTTP, outbox, consumers, workers, database pools); services
add their own domain metrics beside these, on the same registry.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncEngine

#: seconds: from a cache hit to a slow agency's timeout
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

HTTP_REQUESTS = Counter(
    "panjereh_http_requests_total",
    "HTTP requests answered, by method, route template and status code",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "panjereh_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route template",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
HTTP_IN_FLIGHT = Gauge("panjereh_http_requests_in_flight", "HTTP requests being answered now")

OUTBOX_PUBLISHED = Counter(
    "panjereh_outbox_published_total", "Outbox events published to Kafka, by topic", ["topic"]
)
OUTBOX_FAILURES = Counter(
    "panjereh_outbox_publish_failures_total", "Outbox publishing passes that failed"
)
OUTBOX_PENDING = Gauge(
    "panjereh_outbox_pending", "Outbox events not yet published (at the last measurement)"
)
OUTBOX_OLDEST_AGE = Gauge(
    "panjereh_outbox_oldest_pending_age_seconds",
    "Age of the oldest unpublished outbox event (0 when none)",
)

CONSUMER_RECORDS = Counter(
    "panjereh_consumer_records_total",
    "Kafka records a consumer finished, by consumer group, topic and outcome "
    "(handled, duplicate, skipped: a type it does not handle, dead_lettered)",
    ["consumer", "topic", "outcome"],
)
CONSUMER_LAG = Gauge(
    "panjereh_consumer_lag",
    "Records a consumer group has yet to read, by topic (summed over its partitions)",
    ["consumer", "topic"],
)

#: seconds: a pass over the young objects to a full pass over a large heap
GC_PAUSE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5)
GC_PAUSES = Histogram(
    "panjereh_gc_pause_seconds",
    "Time the process stood still for a pass of Python's cyclic garbage collector, by "
    "generation (2: a full pass), while it serves",
    ["generation"],
    buckets=GC_PAUSE_BUCKETS,
)

WORKER_RUNS = Counter(
    "panjereh_worker_runs_total", "Background steps completed, by worker", ["worker"]
)
WORKER_FAILURES = Counter(
    "panjereh_worker_failures_total", "Background steps that failed, by worker", ["worker"]
)


class _PoolCollector(Collector):
    """Connection-pool usage of every live engine, read at scrape time (no I/O)."""

    def __init__(self) -> None:
        self._engines: weakref.WeakSet[AsyncEngine] = weakref.WeakSet()

    def watch(self, engine: AsyncEngine) -> None:
        self._engines.add(engine)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "panjereh_db_pool_connections",
            "Database connections of this process, by state (in_use, idle)",
            labels=["state"],
        )
        in_use = idle = 0
        for engine in list(self._engines):
            pool = engine.sync_engine.pool
            checked_out = getattr(pool, "checkedout", None)
            checked_in = getattr(pool, "checkedin", None)
            if callable(checked_out) and callable(checked_in):
                in_use += int(checked_out())
                idle += int(checked_in())
        family.add_metric(["in_use"], in_use)
        family.add_metric(["idle"], idle)
        yield family


POOLS = _PoolCollector()
REGISTRY.register(POOLS)


def exposition() -> tuple[bytes, str]:
    """The registry in Prometheus text format, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


#: (method, route template, status) → its request counter; (method, template) → its latency
#: histogram. ``labels()`` validates and locks on every call; the children never change.
_http_counters: dict[tuple[str, str, int], Counter] = {}
_http_latencies: dict[tuple[str, str], Histogram] = {}


def record_http_request(method: str, template: str, status: int, seconds: float) -> None:
    """Count one answered HTTP request and time it, by route template (``unmatched``: none)."""
    counter = _http_counters.get((method, template, status))
    if counter is None:
        counter = _http_counters.setdefault(
            (method, template, status), HTTP_REQUESTS.labels(method, template, str(status))
        )
    latency = _http_latencies.get((method, template))
    if latency is None:
        latency = _http_latencies.setdefault(
            (method, template), HTTP_LATENCY.labels(method, template)
        )
    counter.inc()
    latency.observe(seconds)
