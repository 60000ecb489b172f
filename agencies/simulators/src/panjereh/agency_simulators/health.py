"""``/livez`` and ``/readyz`` for orchestrators, on a port of its own (off by default).

The simulators serve no API, so a few lines of asyncio answer the two probes instead of a
web framework: live while the event loop runs; ready while every agency is connected and a
member of its consumer group (the group has assigned its partitions: it reads its inquiries).
Each agency is reported ``ready``, ``joining`` (connected, its group not joined yet) or
``unavailable`` (not connected).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

from panjereh.agency_sdk import Agency

_REASONS = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}


def _state(agency: Agency) -> str:
    if agency.is_ready:
        return "ready"
    return "joining" if agency.connected.is_set() else "unavailable"


async def serve_health(
    agencies: Sequence[Agency],
    *,
    port: int,
    host: str = "0.0.0.0",  # noqa: S104 - the pod's network only
) -> asyncio.Server:
    """Start answering the probes on ``host:port`` (every interface of the pod by default;
    the local stack listens on 127.0.0.1)."""

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), timeout=5)
            parts = request_line.decode("latin-1").split()
            path = parts[1] if len(parts) > 1 else ""
            body: dict[str, object]
            if path == "/livez":
                status, body = 200, {"status": "live"}
            elif path == "/readyz":
                components = {agency.code: _state(agency) for agency in agencies}
                ready = all(state == "ready" for state in components.values())
                status = 200 if ready else 503
                body = {"status": "ready" if ready else "unavailable", "components": components}
            else:
                status, body = 404, {"status": "not found"}
            payload = json.dumps(body).encode()
            writer.write(
                f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(respond, host=host, port=port)
