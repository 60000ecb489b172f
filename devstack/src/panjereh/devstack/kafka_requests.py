"""Count the requests Kafka clients send: a TCP proxy in front of the embedded broker.

What an idle consumer costs the broker follows from how many fetches and heartbeats it sends,
a count that does not depend on how busy the machine is. Start the broker advertising the
proxy's port (``EmbeddedKafka(port, advertised_port=proxy_port)``), start a
:class:`KafkaRequestCounter` on that port, and point the clients at it: every request passes
through, and :attr:`KafkaRequestCounter.counts` holds how many of each API each client id
sent. Only the request header is read (API key and client id, Kafka's request header v1+).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

#: The Kafka API keys (the protocol's own numbering) this module names.
API_NAMES = {
    0: "produce",
    1: "fetch",
    2: "list_offsets",
    3: "metadata",
    8: "offset_commit",
    9: "offset_fetch",
    10: "find_coordinator",
    11: "join_group",
    12: "heartbeat",
    13: "leave_group",
    14: "sync_group",
    18: "api_versions",
    19: "create_topics",
}


class KafkaRequestCounter:
    """Forwards ``127.0.0.1:port`` to ``127.0.0.1:target_port``, counting requests."""

    def __init__(self, port: int, target_port: int) -> None:
        self.port = port
        self.target_port = target_port
        #: ``(api name, client id)`` → requests seen
        self.counts: Counter[tuple[str, str]] = Counter()
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()

    def total(self, api: str) -> int:
        """Requests of ``api`` (e.g. ``"fetch"``) from every client."""
        return sum(n for (name, _), n in self.counts.items() if name == api)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connect, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for pump in list(self._pumps):
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.target_port
            )
        except OSError:
            writer.close()
            return
        for pump in (
            self._pump(reader, upstream_writer, count=True),
            self._pump(upstream_reader, writer, count=False),
        ):
            task = asyncio.create_task(pump)
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, count: bool
    ) -> None:
        pending = b""
        try:
            while data := await reader.read(65536):
                writer.write(data)
                if count:
                    pending = self._count(pending + data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(ConnectionError, RuntimeError):
                writer.close()

    def _count(self, pending: bytes) -> bytes:
        """Count every whole request in ``pending``; return what is left of the next one."""
        while len(pending) >= 4:
            size = int.from_bytes(pending[:4], "big")
            if len(pending) < 4 + size:
                break
            # size, then api_key int16, api_version int16, correlation_id int32, client_id
            request, pending = pending[4 : 4 + size], pending[4 + size :]
            api = int.from_bytes(request[0:2], "big")
            length = int.from_bytes(request[8:10], "big", signed=True)
            client = request[10 : 10 + length].decode(errors="replace") if length > 0 else ""
            self.counts[API_NAMES.get(api, str(api)), client] += 1
        return pending
