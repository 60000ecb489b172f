"""Real HTTP on loopback for the gateway's tests: recording upstreams and the gateway itself,
each under uvicorn on a free port, in the test's event loop.

An upstream records every request that reaches it (method, path, raw path, headers, body), so a
test can prove what a service would have seen, and also serves what a real service process
does on its own port: ``/openapi.json``, ``/docs``, ``/livez``, ``/readyz``, ``/metrics``. Those
answer ``INTERNAL`` so a test can tell if one was ever reached through the gateway. A request
without ``X-Forwarded-For`` (which the proxy always sets) is the gateway's own call: readiness
or OpenAPI; those are kept apart in ``control``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from panjereh.common.testing.servers import loopback_server
from panjereh.gateway.config import Settings
from panjereh.gateway.main import create_app

INTERNAL = b"INTERNAL"
INTERNAL_PATHS = ("/openapi.json", "/docs", "/livez", "/readyz", "/metrics", "/redoc")


@dataclass
class Seen:
    method: str
    path: str
    raw_path: bytes
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers_named(name)
        return values[0] if values else None

    def headers_named(self, name: str) -> list[str]:
        wanted = name.lower().encode()
        return [value.decode("latin-1") for key, value in self.headers if key.lower() == wanted]


@dataclass
class RecordingUpstream:
    """A service stand-in: echoes what it got, records it, serves its own internal paths."""

    name: str
    openapi: dict[str, Any] = field(default_factory=dict)
    #: requests that came through the gateway's proxy
    seen: list[Seen] = field(default_factory=list)
    #: the gateway's own calls (readiness, OpenAPI)
    control: list[Seen] = field(default_factory=list)
    delay_seconds: float = 0.0

    def reached_internal(self) -> list[Seen]:
        return [entry for entry in self.seen if entry.path in INTERNAL_PATHS]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        entry = Seen(
            scope["method"],
            scope["path"],
            scope["raw_path"],
            scope["query_string"],
            list(scope["headers"]),
            body,
        )
        path = scope["path"]
        if entry.header("x-forwarded-for") is None:
            # the gateway's own calls (readiness, OpenAPI): the proxy always sets the header
            self.control.append(entry)
            document = self.openapi or {"openapi": "3.1.0", "info": {}, "paths": {}}
            body = json.dumps(document).encode() if path == "/openapi.json" else INTERNAL
            await _answer(send, 200, body)
            return
        self.seen.append(entry)
        if path in INTERNAL_PATHS:
            await _answer(send, 200, INTERNAL)
            return
        if path.endswith("/slow"):
            await asyncio.sleep(self.delay_seconds or 2.0)
        if path.endswith("/big"):
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")],
                }
            )
            for index in range(64):
                piece = bytes([index]) * 16384
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        echo = {
            "upstream": self.name,
            "method": scope["method"],
            "path": path,
            "raw_path": scope["raw_path"].decode("latin-1"),
            "query": scope["query_string"].decode("latin-1"),
            "body_length": len(body),
            "body_sha": hashlib.sha256(body).hexdigest(),
        }
        await _answer(send, 200, json.dumps(echo).encode())


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


@asynccontextmanager
async def serving(app: Any, *, port: int = 0, lifespan: str = "on") -> AsyncIterator[str]:
    """Serve ``app`` on a loopback port (a free one unless given); yields its base URL.

    The gateway runs with its lifespan and with uvicorn's proxy headers off (as deployed: else
    uvicorn would rewrite the peer from a client's X-Forwarded-For before the gateway sees it).
    """
    async with loopback_server(app, port=port, lifespan=lifespan) as url:  # type: ignore[arg-type]
        yield url


def unused_url() -> str:
    """A loopback URL nothing listens on (an upstream that is down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def serve() -> Callable[..., AbstractAsyncContextManager[str]]:
    """``async with serve(app, port=...) as url``: any ASGI app on loopback."""
    return serving


@pytest.fixture(scope="session")
def down_url() -> Callable[[], str]:
    """A loopback URL nothing listens on: an upstream that is down."""
    return unused_url


@pytest.fixture(scope="session")
def upstream_app() -> type[RecordingUpstream]:
    return RecordingUpstream


@dataclass
class Upstreams:
    catalog: RecordingUpstream
    identity: RecordingUpstream
    requests: RecordingUpstream
    broker: RecordingUpstream
    portal: RecordingUpstream
    urls: dict[str, str]

    def all(self) -> list[RecordingUpstream]:
        return [self.catalog, self.identity, self.requests, self.broker, self.portal]

    def reset(self) -> None:
        for upstream in self.all():
            upstream.seen.clear()
            upstream.control.clear()
            upstream.delay_seconds = 0.0


@pytest.fixture(scope="session")
async def upstreams() -> AsyncIterator[Upstreams]:
    apps = {
        "catalog": RecordingUpstream("catalog"),
        "identity": RecordingUpstream("identity"),
        "requests": RecordingUpstream("requests"),
        "inquiry-broker": RecordingUpstream("inquiry-broker"),
        "portal": RecordingUpstream("portal"),
    }
    async with contextlib.AsyncExitStack() as stack:
        urls = {
            name: await stack.enter_async_context(loopback_server(app))
            for name, app in apps.items()
        }
        yield Upstreams(
            apps["catalog"],
            apps["identity"],
            apps["requests"],
            apps["inquiry-broker"],
            apps["portal"],
            urls,
        )


@pytest.fixture
def recording(upstreams: Upstreams) -> Upstreams:
    """The shared upstreams, their records emptied for this test."""
    upstreams.reset()
    return upstreams


GatewayFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def start_gateway(recording: Upstreams, jwks_url: str) -> GatewayFactory:
    """``async with start_gateway(**settings) as client``: a gateway on loopback in front of
    the recording upstreams (settings override the defaults) and an HTTP client to it."""

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        urls = recording.urls
        values: dict[str, Any] = {
            "environment": "test",
            "catalog_url": urls["catalog"],
            "identity_url": urls["identity"],
            "requests_url": urls["requests"],
            "inquiry_broker_url": urls["inquiry-broker"],
            "jwks_url": jwks_url,
            "rate_limits_enabled": False,
            "upstream_timeout_seconds": 5.0,
            **overrides,
        }
        app = create_app(Settings(**values))
        async with (
            serving(app) as url,
            httpx.AsyncClient(base_url=url, timeout=10.0) as client,
        ):
            yield client

    return start
