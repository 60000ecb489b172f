"""OpenTelemetry tracing: one tracer provider per process, FastAPI, SQLAlchemy and httpx spans.

``create_service_app`` gives FastAPI :func:`server_telemetry` (FastAPI's own server spans,
named after the route the router chose, with no second pass over the routes per request as
the contrib instrumentation made) and calls :func:`instrument_app`;
:class:`~panjereh.common.db.Database` calls :func:`instrument_engine` when statement spans are
asked for (setting ``trace_statements``, ``PANJEREH_TRACE_STATEMENTS``; off by default). Spans
are exported over OTLP/HTTP only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (setting
``otlp_endpoint``) is set, and the exporter is started by the app's lifespan, not at import or
construction. Everything here is idempotent: a test process builds many apps and the tracer
provider, the httpx patch and the exporters are set up once.

The tracer provider is process-wide (OpenTelemetry allows one global provider), so its
``service.name`` is the first service configured in the process; in production every process
runs exactly one service.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from opentelemetry import metrics, trace
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.propagate import inject
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.ext.asyncio import AsyncEngine

TRACEPARENT_HEADER = "traceparent"
#: Health probes run every few seconds; tracing them only adds noise.
_EXCLUDED_PATHS = frozenset({"/livez", "/readyz"})

_lock = threading.Lock()
_provider: TracerProvider | None = None
_httpx_instrumented = False
_otlp_endpoints: set[str] = set()
_memory_exporter: InMemorySpanExporter | None = None


def tracer_provider(service_name: str = "panjereh") -> TracerProvider:
    """The process's SDK tracer provider, created (and made global) on first use."""
    global _provider  # noqa: PLW0603 - one provider per process is OpenTelemetry's model
    with _lock:
        if _provider is None:
            current = trace.get_tracer_provider()
            if isinstance(current, TracerProvider):
                _provider = current
            else:
                _provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
                trace.set_tracer_provider(_provider)
        return _provider


def _health_probe(scope: MutableMapping[str, Any]) -> bool:
    return scope.get("path") in _EXCLUDED_PATHS


def server_telemetry(service_name: str) -> TelemetryConfig:
    """FastAPI's own server spans (``FastAPI(telemetry=...)``), on this process's provider.

    One ``SERVER`` span per request, named ``METHOD /route/{template}`` once the router has
    chosen the route, with the request's ``traceparent`` as its parent; health probes are
    left out. FastAPI's finer spans (dependencies, endpoint, serialization), its metrics
    (Prometheus has them, see :mod:`.metrics`) and its logs are off.
    """
    return {
        "tracer_provider": tracer_provider(service_name),
        "tracing": True,
        "metrics": False,
        "logs": False,
        "operation_spans": False,
        "exclude": _health_probe,
    }


def instrument_app(app: FastAPI, service_name: str) -> None:
    """Client spans for every httpx call (the server spans are FastAPI's own:
    :func:`server_telemetry`)."""
    global _httpx_instrumented  # noqa: PLW0603
    provider = tracer_provider(service_name)
    with _lock:
        if not _httpx_instrumented:
            # patches httpx's transports once per process: outgoing calls carry traceparent
            HTTPXClientInstrumentor().instrument(tracer_provider=provider)
            _httpx_instrumented = True


def instrument_engine(engine: AsyncEngine) -> None:
    """Spans for every statement run on ``engine`` (through its sync core, as asyncpg runs)."""
    sync_engine = engine.sync_engine
    if getattr(sync_engine, "_panjereh_traced", False):
        return
    tracer = trace.get_tracer("opentelemetry.instrumentation.sqlalchemy")
    connections = metrics.get_meter(
        "opentelemetry.instrumentation.sqlalchemy"
    ).create_up_down_counter(name="db.client.connections.usage", unit="connections")
    EngineTracer(tracer, sync_engine, connections)  # type: ignore[no-untyped-call]
    sync_engine._panjereh_traced = True  # type: ignore[attr-defined]


def add_span_processor(processor: SpanProcessor) -> None:
    """Attach a span processor to the process's provider (exporters, tests)."""
    tracer_provider().add_span_processor(processor)


def enable_otlp_export(endpoint: str) -> None:
    """Batch-export spans to an OTLP/HTTP collector at ``endpoint`` (once per endpoint)."""
    # imported here: the exporter pulls in protobuf, needed only when export is on
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter,
    )

    with _lock:
        if endpoint in _otlp_endpoints:
            return
        _otlp_endpoints.add(endpoint)
    traces_url = endpoint.rstrip("/") + "/v1/traces"
    add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url)))


def in_memory_exporter() -> InMemorySpanExporter:
    """Test hook: an in-memory exporter receiving every span of this process (created once)."""
    global _memory_exporter  # noqa: PLW0603
    with _lock:
        exporter = _memory_exporter
    if exporter is None:
        exporter = InMemorySpanExporter()
        add_span_processor(SimpleSpanProcessor(exporter))
        with _lock:
            _memory_exporter = exporter
    return exporter


@asynccontextmanager
async def telemetry_lifespan(otlp_endpoint: str | None) -> AsyncIterator[None]:
    """Starts export when configured; flushes pending spans when the app stops."""
    if otlp_endpoint:
        enable_otlp_export(otlp_endpoint)
    try:
        yield
    finally:
        if _provider is not None and otlp_endpoint:
            _provider.force_flush(timeout_millis=5000)


def current_traceparent() -> str:
    """The W3C ``traceparent`` of the current span, or a fresh unsampled one when none."""
    carrier: dict[str, str] = {}
    inject(carrier)
    value = carrier.get(TRACEPARENT_HEADER)
    if value:
        return value
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-00"
