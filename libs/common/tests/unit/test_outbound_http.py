"""The outbound client's transport on a real loopback server: a request's head and body reach
the server together, every kind of body still arrives whole, a keep-alive connection the
server closed while it was idle is never used again, the caller's trace goes with the call,
the pool's bookkeeping stays linear in its connections and keeps only as many idle ones as
allowed, and cookies a server sets are kept while answers without any skip the jar."""

from __future__ import annotations

import asyncio
import http.cookiejar
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpcore
import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import trace

from panjereh.common.http import outbound_client
from panjereh.common.telemetry import instrument_app


@dataclass
class Server:
    """A minimal HTTP/1.1 server in a thread of its own (blocking sockets, as another process
    would read them): echoes each request's body and records the pieces it received."""

    close_after_response: bool = False
    #: a ``Set-Cookie`` header for every response
    set_cookie: bytes = b""
    url: str = ""
    #: per connection, what each ``recv`` returned, in order
    received: list[list[bytes]] = field(default_factory=list)

    def serve(self, listening: socket.socket) -> None:
        while True:
            try:
                connection, _ = listening.accept()
            except OSError:
                return  # closed: the test is over
            threading.Thread(target=self.handle, args=(connection,), daemon=True).start()

    def handle(self, connection: socket.socket) -> None:
        chunks: list[bytes] = []
        self.received.append(chunks)
        buffer = b""

        def receive() -> bool:
            nonlocal buffer
            data = connection.recv(65536)
            chunks.append(data)
            buffer += data
            return bool(data)

        with connection:
            while True:
                while b"\r\n\r\n" not in buffer:
                    if not receive():
                        return
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buffer) < length:
                    if not receive():
                        return
                body, buffer = buffer[:length], buffer[length:]
                cookie = b"Set-Cookie: %s\r\n" % self.set_cookie if self.set_cookie else b""
                reply = b"HTTP/1.1 200 OK\r\n%sContent-Length: %d\r\n\r\n" % (cookie, len(body))
                connection.sendall(reply + body)
                if self.close_after_response:
                    return


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server()
    listening = socket.create_server(("127.0.0.1", 0))
    host, port = listening.getsockname()[:2]
    state.url = f"http://{host}:{port}/"
    thread = threading.Thread(target=state.serve, args=(listening,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        listening.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        listening.close()
        thread.join(timeout=5)


class TestOutboundTransport:
    async def test_a_small_request_reaches_the_server_in_one_piece(self, server: Server) -> None:
        body = b'{"type":"civil-registry.person","subject":"0012345679"}'
        async with outbound_client() as client:
            response = await client.post(server.url, content=body)
        assert response.content == body
        first = server.received[0][0]
        assert first.startswith(b"POST / HTTP/1.1\r\n")
        assert first.endswith(b"\r\n\r\n" + body)  # the head and the body in one send

    async def test_requests_without_a_body_and_with_large_or_streamed_bodies_arrive_whole(
        self, server: Server
    ) -> None:
        large = bytes(range(256)) * 400  # beyond what is held back

        async def streamed() -> AsyncIterator[bytes]:
            for part in (b"first,", b"second,", b"third"):
                yield part

        async with outbound_client() as client:
            assert (await client.get(server.url)).content == b""
            assert (await client.post(server.url, content=large)).content == large
            chunked = await client.post(
                server.url, content=streamed(), headers={"Content-Length": "18"}
            )
            assert chunked.content == b"first,second,third"
            assert len(server.received) == 1  # all on the one kept-alive connection

    async def test_a_connection_the_server_closed_while_idle_is_not_reused(
        self, server: Server
    ) -> None:
        server.close_after_response = True
        async with outbound_client() as client:
            assert (await client.post(server.url, content=b"one")).content == b"one"
            await asyncio.sleep(0.2)  # the server has closed it; the pool still holds it
            assert (await client.post(server.url, content=b"two")).content == b"two"
        assert len(server.received) == 2

    async def test_the_callers_trace_continues_in_the_call(self, server: Server) -> None:
        instrument_app(FastAPI(), "outbound-test")  # as every service's app does (once)
        tracer = trace.get_tracer("outbound-test")
        async with outbound_client() as client:
            with tracer.start_as_current_span("caller") as span:
                await client.post(server.url, content=b"traced")
        trace_id = format(span.get_span_context().trace_id, "032x")
        head = server.received[0][0].split(b"\r\n\r\n")[0].decode().lower()
        assert f"traceparent: 00-{trace_id}-" in head


class TestOutboundPool:
    async def test_a_call_looks_at_each_pooled_connection_a_bounded_number_of_times(
        self, server: Server, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The pool's bookkeeping before a call and when its response closes asks each pooled
        connection a few questions, not one per connection per connection (20 callers keep
        20 connections: 800 questions a call instead of about 40)."""
        asked = 0
        is_idle = httpcore.AsyncHTTPConnection.is_idle

        def counted(connection: httpcore.AsyncHTTPConnection) -> bool:
            nonlocal asked
            asked += 1
            return is_idle(connection)

        monkeypatch.setattr(httpcore.AsyncHTTPConnection, "is_idle", counted)
        async with outbound_client() as client:
            calls = [client.post(server.url, content=b"%d" % n) for n in range(20)]
            assert len(await asyncio.gather(*calls)) == 20
            assert len(server.received) == 20  # a connection per caller, all kept
            asked = 0
            assert (await client.post(server.url, content=b"one more")).content == b"one more"
        assert len(server.received) == 20  # reused one of them
        assert asked <= 4 * 20

    async def test_idle_connections_beyond_the_kept_alive_limit_are_closed(
        self, server: Server
    ) -> None:
        async with outbound_client(limits=httpx.Limits(max_keepalive_connections=3)) as client:
            calls = [client.post(server.url, content=b"%d" % n) for n in range(8)]
            assert len(await asyncio.gather(*calls)) == 8
            assert len(server.received) == 8
            pool = client._transport._pool  # type: ignore[attr-defined]
            assert len(pool.connections) == 3  # the other five were closed as they fell idle
            await client.post(server.url, content=b"again")
            await client.post(server.url, content=b"and again")
            assert len(pool.connections) == 3
        assert len(server.received) == 8  # the kept connections were reused


class TestOutboundCookies:
    async def test_a_cookie_the_server_sets_goes_with_the_next_call(self, server: Server) -> None:
        server.set_cookie = b"affinity=replica-2; Path=/"
        async with outbound_client() as client:
            await client.post(server.url, content=b"first")
            assert client.cookies.get("affinity") == "replica-2"
            server.set_cookie = b""
            await client.post(server.url, content=b"second")
        second = b"".join(server.received[0]).split(b"second")[0].rsplit(b"POST", 1)[1]
        assert b"cookie: affinity=replica-2" in second.lower()

    async def test_an_answer_without_cookies_is_not_handed_to_the_cookie_jar(
        self, server: Server, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Reading an answer that sets no cookie builds nothing for the jar (urllib stand-ins
        of the request and the response): a call to another service sets none."""
        handed: list[object] = []
        extract = http.cookiejar.CookieJar.extract_cookies

        def counted(jar: http.cookiejar.CookieJar, response: Any, request: Any) -> None:
            handed.append(response)
            extract(jar, response, request)

        monkeypatch.setattr(http.cookiejar.CookieJar, "extract_cookies", counted)
        async with outbound_client() as client:
            assert (await client.post(server.url, content=b"plain")).content == b"plain"
        assert handed == []
