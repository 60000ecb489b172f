"""HTTP/1.1 to the platform's own services: a keep-alive connection pool on asyncio + httptools.

Why not httpx or aiohttp: on the gateway's hot path every microsecond is paid twice per call
(once per hop) and this pool does only what a reverse proxy needs — write a request head and a
body, parse a response with the same C parser uvicorn uses (httptools, already a dependency
through ``uvicorn[standard]``) and hand the body on as it arrives. ``docs/gateway.md`` has the
measurements that chose it over both clients. Services calling another service of the platform
use it through :class:`panjereh.common.http.ServiceClient` (a call's client CPU: about 0.04 ms
here against 0.9–1.1 ms through httpx, ``docs/profiling.md``).

The upstreams are our own services on the cluster network: plain HTTP/1.1, no proxies, no
redirects, no cookies, no TLS (the mesh or the network policy protects the hop).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import cast
from urllib.parse import urlsplit

import httptools

#: Methods whose request may be sent again when a reused connection turns out to be closed
#: before any answer arrived (RFC 9110 §9.2.2), as nginx does by default.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
#: Stop reading from an upstream whose body the client is not taking fast enough.
_HIGH_WATER = 256 * 1024


class UpstreamError(Exception):
    """The upstream gave no usable answer."""


class UpstreamUnreachable(UpstreamError):
    """No connection could be made, or it was closed before any answer (503)."""


class UpstreamTimedOut(UpstreamError):
    """The upstream did not answer (or stopped sending) within the read timeout (504)."""


class UpstreamBroken(UpstreamError):
    """The answer was malformed or cut off (502, or a cut response once streaming)."""


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection; one request at a time, reused while both sides keep it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._reset(head_request=False)

    def _reset(self, *, head_request: bool) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_ready = False
        self.complete = False
        self.keep_alive = False
        self.received_any = False
        self.error: UpstreamError | None = None
        self.chunks: deque[bytes] = deque()
        self._buffered = 0
        self._reading_paused = False
        self._head_request = head_request
        self._informational = False

    # ------------------------------------------------------------------ asyncio protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without deriving from it
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail(UpstreamBroken("malformed response"))
            self.close()

    def eof_received(self) -> bool | None:
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete and self.error is None:
            # nothing at all: the peer closed a kept-alive connection or refused the request;
            # part of an answer: the answer is cut off
            error_type = UpstreamBroken if self.received_any else UpstreamUnreachable
            self._fail(error_type("connection closed"))
        self._wake()
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def pause_writing(self) -> None:
        if self._drain is None or self._drain.done():
            self._drain = self.loop.create_future()

    def resume_writing(self) -> None:
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # ------------------------------------------------------------------ httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            # an interim answer (we never send Expect, but an upstream may still send one)
            self._informational = True
            self.headers = []
            return
        self.status = status
        self.head_ready = True
        if self._head_request:
            # a HEAD answer has no body whatever Content-Length says; the parser cannot be told,
            # so the message ends here and a fresh parser reads the next answer
            self.keep_alive = self._parser.should_keep_alive()
            self.complete = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self._head_request:
            return
        self.chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not self._reading_paused and self.transport:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        if self._head_request:
            return
        self.keep_alive = self._parser.should_keep_alive()
        self.complete = True
        self._wake()

    # ------------------------------------------------------------------ used by the pool
    def begin(self, *, head_request: bool) -> None:
        if head_request or self._head_request:
            # around a HEAD answer the parser's idea of the body is wrong: start afresh
            self._parser = httptools.HttpResponseParser(self)
        self._reset(head_request=head_request)

    def _fail(self, error: UpstreamError) -> None:
        if self.error is None:
            self.error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _on_timeout(self) -> None:
        self._fail(UpstreamTimedOut("no answer in time"))
        self.close()

    async def wait(self, seconds: float) -> None:
        """Until something happens on the connection (bytes, end, error) or ``seconds``."""
        waiter = self.loop.create_future()
        self._waiter = waiter
        # a timer rather than asyncio.wait_for: no task per wait on the hot path
        timer = self.loop.call_later(seconds, self._on_timeout)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    async def write(self, data: bytes) -> None:
        if self.transport is None or self.closed:
            raise self.error or UpstreamUnreachable("connection closed")
        self.transport.write(data)
        if self._drain is not None and not self._drain.done():
            await self._drain

    def take_chunk(self) -> bytes:
        chunk = self.chunks.popleft()
        self._buffered -= len(chunk)
        if self._reading_paused and self._buffered < _HIGH_WATER // 2 and self.transport:
            self._reading_paused = False
            self.transport.resume_reading()
        return chunk

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


RequestBody = bytes | AsyncIterator[bytes]


class UpstreamResponse:
    """An answer whose head has arrived; its body is read with :meth:`chunks`.

    Exactly one of :meth:`release` (after the body was read) or :meth:`abort` must follow;
    :meth:`chunks` releases by itself when it reaches the end.
    """

    __slots__ = ("_connection", "_done", "_pool", "headers", "status")

    def __init__(self, pool: UpstreamPool, connection: _Connection) -> None:
        self._pool = pool
        self._connection = connection
        self._done = False
        self.status = connection.status
        self.headers = connection.headers

    @property
    def complete(self) -> bool:
        """True when the whole body has already arrived (small answers usually have)."""
        return self._connection.complete

    def body_now(self) -> bytes:
        """The whole body of a :attr:`complete` answer, releasing the connection."""
        connection = self._connection
        body = b"".join(connection.chunks) if len(connection.chunks) != 1 else connection.chunks[0]
        connection.chunks.clear()
        self.release()
        return body

    async def chunks(self) -> AsyncIterator[bytes]:
        connection = self._connection
        try:
            while True:
                while connection.chunks:
                    yield connection.take_chunk()
                if connection.complete:
                    break
                if connection.error is not None:
                    raise connection.error
                await connection.wait(self._pool.read_timeout)
                if connection.error is not None and not connection.chunks:
                    raise connection.error
        except BaseException:
            self.abort()
            raise
        self.release()

    def release(self) -> None:
        if not self._done:
            self._done = True
            self._pool.release(self._connection)

    def abort(self) -> None:
        if not self._done:
            self._done = True
            self._connection.close()
            self._pool.release(self._connection)


class UpstreamPool:
    """Keep-alive connections to one upstream (``http://host:port``)."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        max_connections: int = 256,
        keepalive_seconds: float = 4.0,
        connect_timeout: float = 2.0,
        read_timeout: float = 30.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            msg = f"upstream {name}: only http://host[:port] URLs are supported, not {url!r}"
            raise ValueError(msg)
        if parts.path not in ("", "/") or parts.query:
            msg = f"upstream {name}: a base URL has no path or query ({url!r})"
            raise ValueError(msg)
        self.name = name
        self.url = url.rstrip("/")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.host_header = parts.netloc.encode("ascii")
        self.keepalive_seconds = keepalive_seconds
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[_Connection] = []
        self._max_idle = max_connections
        self._closing = False

    async def request(
        self,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: RequestBody = b"",
        *,
        framed: bool = False,
    ) -> UpstreamResponse:
        """Send a request; return once the answer's head has arrived.

        ``body`` is bytes (sent with ``Content-Length``; ``framed`` sends ``Content-Length: 0``
        even for an empty one) or an async iterator of chunks (sent chunked, never retried).
        ``headers`` must not hold ``Host``, ``Content-Length`` or ``Transfer-Encoding``.
        """
        if self._slots.locked():
            # every connection busy: wait for one, but no longer than a connect may take
            try:
                async with asyncio.timeout(self.connect_timeout):
                    await self._slots.acquire()
            except TimeoutError:
                raise UpstreamUnreachable("every connection is busy") from None
        else:
            await self._slots.acquire()
        try:
            return await self._exchange(method, target, headers, body, framed=framed)
        except BaseException:
            self._slots.release()
            raise

    async def _exchange(
        self,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: RequestBody,
        *,
        framed: bool,
    ) -> UpstreamResponse:
        replayable = isinstance(body, bytes) and method in IDEMPOTENT
        if isinstance(body, bytes):
            framing: bytes = b"content-length: %d\r\n" % len(body) if body or framed else b""
        else:
            framing = b"transfer-encoding: chunked\r\n"
        head = b"".join(
            [
                method.encode("ascii"),
                b" ",
                target,
                b" HTTP/1.1\r\nhost: ",
                self.host_header,
                b"\r\n",
                *[name + b": " + value + b"\r\n" for name, value in headers],
                framing,
                b"\r\n",
            ]
        )
        while True:
            connection, reused = await self._connection()
            connection.begin(head_request=method == "HEAD")
            try:
                if isinstance(body, bytes):
                    await connection.write(head + body if body else head)
                else:
                    await connection.write(head)
                    async for chunk in body:
                        if chunk:
                            await connection.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                    await connection.write(b"0\r\n\r\n")
                while not connection.head_ready:
                    if connection.error is not None:
                        raise connection.error
                    await connection.wait(self.read_timeout)
            except UpstreamUnreachable:
                connection.close()
                if reused and replayable and not connection.received_any:
                    continue  # the upstream had closed this kept-alive connection: a fresh one
                raise
            except BaseException:
                connection.close()
                raise
            return UpstreamResponse(self, connection)

    async def _connection(self) -> tuple[_Connection, bool]:
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._idle:
            connection = self._idle.pop()
            if connection.closed or now - connection.idle_since > self.keepalive_seconds:
                connection.close()
                continue
            return connection, True
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await loop.create_connection(_factory(loop), self.host, self.port)
        except (OSError, TimeoutError) as exc:
            raise UpstreamUnreachable(f"cannot connect: {type(exc).__name__}") from exc
        return connection, False

    def release(self, connection: _Connection) -> None:
        """Give a connection back after its answer was read (or abandoned)."""
        self._slots.release()
        if (
            connection.closed
            or not connection.complete
            or not connection.keep_alive
            or self._closing
            or len(self._idle) >= self._max_idle
        ):
            connection.close()
            return
        connection.idle_since = connection.loop.time()
        self._idle.append(connection)

    async def close(self) -> None:
        self._closing = True
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


def _factory(loop: asyncio.AbstractEventLoop) -> Callable[[], _Connection]:
    return lambda: _Connection(loop)
