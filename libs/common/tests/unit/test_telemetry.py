"""Tracing and log correlation: traceparent on every response, spans exported, ids in logs."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from panjereh.common.app import create_service_app
from panjereh.common.logging import JsonFormatter
from panjereh.common.settings import ServiceSettings
from panjereh.common.telemetry import in_memory_exporter
from panjereh.common.testing.plugin import running_app

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
logger = logging.getLogger("panjereh.tests.telemetry")


def build_app() -> FastAPI:
    router = APIRouter()

    @router.get("/hello")
    async def hello() -> dict[str, str]:
        logger.info("saying hello")
        return {"hello": "world"}

    return create_service_app(title="telemetry test", settings=ServiceSettings(), routers=[router])


@pytest.fixture
def spans() -> InMemorySpanExporter:
    exporter = in_memory_exporter()
    exporter.clear()
    return exporter


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("telemetry-test"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)


class TestTraceparent:
    @pytest.mark.parametrize("path", ["/hello", "/livez", "/no-such-route"])
    async def test_every_response_carries_a_traceparent(self, path: str) -> None:
        async with running_app(build_app()) as client:
            response = await client.get(path)
        assert TRACEPARENT.match(response.headers["traceparent"]), response.headers
        assert response.headers["x-request-id"]

    async def test_the_traceparent_names_the_exported_server_span(
        self, spans: InMemorySpanExporter
    ) -> None:
        async with running_app(build_app()) as client:
            response = await client.get("/hello")
        match = TRACEPARENT.match(response.headers["traceparent"])
        assert match
        server = [span for span in spans.get_finished_spans() if span.kind is SpanKind.SERVER]
        assert len(server) == 1
        context = server[0].context
        assert context is not None
        assert (format(context.trace_id, "032x"), format(context.span_id, "016x")) == (
            match.group(1),
            match.group(2),
        )
        assert server[0].name == "GET /hello"

    async def test_an_incoming_traceparent_continues_its_trace(self) -> None:
        incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        async with running_app(build_app()) as client:
            response = await client.get("/hello", headers={"traceparent": incoming})
        match = TRACEPARENT.match(response.headers["traceparent"])
        assert match
        assert match.group(1) == "0af7651916cd43dd8448eb211c80319c"
        assert match.group(2) != "b7ad6b7169203331"

    async def test_building_many_apps_in_one_process_traces_each_request_once(
        self, spans: InMemorySpanExporter
    ) -> None:
        apps = [build_app() for _ in range(3)]
        for app in apps:
            async with running_app(app) as client:
                await client.get("/hello")
        server = [span for span in spans.get_finished_spans() if span.kind is SpanKind.SERVER]
        assert len(server) == 3
        assert len({span.context.trace_id for span in server if span.context}) == 3


class TestJsonLogs:
    async def test_a_log_line_carries_the_request_id_and_trace_id(
        self, log_stream: io.StringIO
    ) -> None:
        async with running_app(build_app()) as client:
            response = await client.get("/hello", headers={"X-Request-ID": "req-123"})
        match = TRACEPARENT.match(response.headers["traceparent"])
        assert match
        entry = json.loads(log_stream.getvalue().strip().splitlines()[-1])
        assert entry["message"] == "saying hello"
        assert entry["request_id"] == "req-123"
        assert entry["trace_id"] == match.group(1)
        assert entry["span_id"] == match.group(2)

    def test_outside_a_request_a_log_line_has_no_request_or_trace_id(
        self, log_stream: io.StringIO
    ) -> None:
        logger.info("idle")
        entry = json.loads(log_stream.getvalue().strip())
        assert entry["message"] == "idle"
        assert "request_id" not in entry
        assert "trace_id" not in entry


EXPORTING_PROCESS = textwrap.dedent(
    """
    import asyncio, sys
    from contextlib import asynccontextmanager
    from panjereh.common.app import create_service_app
    from panjereh.common.settings import ServiceSettings
    from panjereh.common.testing.plugin import running_app

    async def main():
        settings = ServiceSettings(otlp_endpoint=sys.argv[1])
        app = create_service_app(title="otlp", settings=settings)
        async with running_app(app) as client:
            await client.get("/traced-path")

    asyncio.run(main())
    """
)


class Collector:
    """A loopback stand-in for an OTLP/HTTP collector: records what is POSTed to it."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, bytes]] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                collector.received.append((self.path, self.headers["Content-Type"], body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def collector() -> Iterator[Collector]:
    collector = Collector()
    collector.thread.start()
    try:
        yield collector
    finally:
        collector.httpd.shutdown()
        collector.httpd.server_close()


class TestOtlpExport:
    def test_spans_reach_the_configured_collector_by_shutdown(self, collector: Collector) -> None:
        # its own process: an exporter, once added, stays for the life of the process
        subprocess.run(
            [sys.executable, "-c", EXPORTING_PROCESS, collector.url], check=True, timeout=60
        )
        assert collector.received, "nothing was exported"
        path, content_type, body = collector.received[0]
        assert path == "/v1/traces"
        assert content_type == "application/x-protobuf"
        assert b"/traced-path" in body

    def test_export_is_off_by_default(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
        assert ServiceSettings().otlp_endpoint is None
