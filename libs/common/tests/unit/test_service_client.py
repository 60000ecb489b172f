"""The client between the platform's services, on a real loopback server: a JSON call and its
whole answer, the caller's trace in the call, the no-network-in-a-transaction rule, and the
errors of a service that is down or does not answer in time."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI
from opentelemetry import trace
from starlette.types import Receive, Scope, Send

from panjereh.common.http import NetworkCallInTransaction, ServiceClient
from panjereh.common.telemetry import instrument_app
from panjereh.common.testing.servers import loopback_server
from panjereh.common.upstream import UpstreamTimedOut, UpstreamUnreachable


class Recorder:
    """An ASGI app that answers each POST with what it received, slowly when asked."""

    def __init__(self) -> None:
        self.heads: list[dict[str, str]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {name.decode(): value.decode() for name, value in scope["headers"]}
        self.heads.append(headers)
        if scope["query_string"] == b"slow=1":
            await asyncio.sleep(1.0)
        extra = [(b"retry-after", b"3")] if scope["method"] == "GET" else []
        answer = json.dumps(
            {
                "method": scope["method"],
                "path": scope["path"],
                "query": scope["query_string"].decode(),
                "body": body.decode(),
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 201,
                "headers": [(b"content-type", b"application/json"), *extra],
            }
        )
        await send({"type": "http.response.body", "body": answer})


@pytest.fixture
async def service() -> AsyncIterator[tuple[Recorder, str]]:
    recorder = Recorder()
    async with loopback_server(recorder) as url:
        yield recorder, url


async def test_a_call_sends_json_and_returns_the_whole_answer(
    service: tuple[Recorder, str],
) -> None:
    recorder, url = service
    client = ServiceClient("recorder", url, timeout=5)
    try:
        response = await client.post_json(
            "/api/v1/inquiries?wait=5",
            {"subject": "۰۴۹۹", "n": [1, 2]},
            headers={"Authorization": "Bearer t"},
        )
        again = await client.post_json("/again", {})
    finally:
        await client.aclose()
    assert response.status_code == 201
    answer: dict[str, Any] = json.loads(response.content)
    assert answer["path"] == "/api/v1/inquiries"
    assert answer["query"] == "wait=5"
    assert json.loads(answer["body"]) == {"subject": "۰۴۹۹", "n": [1, 2]}
    assert json.loads(again.content)["path"] == "/again"
    head = recorder.heads[0]
    assert head["authorization"] == "Bearer t"
    assert head["content-type"] == "application/json"
    assert (b"content-type", b"application/json") in response.headers


async def test_a_read_sends_no_body_and_its_headers_are_read_by_name(
    service: tuple[Recorder, str],
) -> None:
    recorder, url = service
    client = ServiceClient("recorder", url, timeout=5)
    try:
        response = await client.request("GET", "/api/v1/inquiries/1?wait=5")
    finally:
        await client.aclose()
    answer = response.json()
    assert (answer["method"], answer["path"], answer["body"]) == ("GET", "/api/v1/inquiries/1", "")
    assert "content-type" not in recorder.heads[0]
    assert response.header("Retry-After") == "3"
    assert response.header("x-absent") is None


async def test_the_callers_trace_continues_in_the_call(service: tuple[Recorder, str]) -> None:
    recorder, url = service
    instrument_app(FastAPI(), "service-client-test")  # as every service's app does (once)
    tracer = trace.get_tracer("service-client-test")
    client = ServiceClient("recorder", url, timeout=5)
    try:
        with tracer.start_as_current_span("caller") as span:
            await client.post_json("/", {})
    finally:
        await client.aclose()
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert recorder.heads[0]["traceparent"].startswith(f"00-{trace_id}-")


async def test_nothing_is_sent_while_a_transaction_is_open(
    service: tuple[Recorder, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder, url = service
    monkeypatch.setattr("panjereh.common.http.in_transaction", lambda: True)
    client = ServiceClient("recorder", url, timeout=5)
    try:
        with pytest.raises(NetworkCallInTransaction, match="no network call"):
            await client.post_json("/", {})
    finally:
        await client.aclose()
    assert recorder.heads == []


async def test_a_service_that_is_down_is_unreachable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = ServiceClient("nobody", f"http://127.0.0.1:{port}", timeout=5)
    try:
        with pytest.raises(UpstreamUnreachable):
            await client.post_json("/", {})
    finally:
        await client.aclose()


async def test_an_answer_later_than_the_timeout_times_out(service: tuple[Recorder, str]) -> None:
    _, url = service
    client = ServiceClient("recorder", url, timeout=0.2)
    try:
        with pytest.raises(UpstreamTimedOut):
            await client.post_json("/?slow=1", {})
    finally:
        await client.aclose()
