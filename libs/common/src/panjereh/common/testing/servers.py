"""Real HTTP servers on loopback for tests: another system, served for the length of a block.

An outside system a service calls (the inquiry broker for identity, identity and the broker for
the requests service, an SMS provider, an agency's HTTP connector) is stood up as a real ASGI
app on a free 127.0.0.1 port, so the service's own HTTP client, timeouts and the kernel's
no-network-in-a-transaction guard all run for real.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import uvicorn
from starlette.types import ASGIApp


@contextlib.asynccontextmanager
async def loopback_server(app: ASGIApp) -> AsyncIterator[str]:
    """Serve ``app`` on a free 127.0.0.1 port for the block; yields its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
