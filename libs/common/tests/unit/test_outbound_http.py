"""The outbound client's transport on a real loopback server: a request's head and body reach
the server together, every kind of body still arrives whole, a keep-alive connection the
server closed while it was idle is never used again, and the caller's trace goes with the
call."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

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
                reply = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
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
