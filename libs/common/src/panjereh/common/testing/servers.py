"""Real HTTP servers on loopback for tests: another system, served for the length of a block.

An outside system a service calls (the inquiry broker for identity, identity and the broker for
the requests service, an SMS provider, an agency's HTTP connector, the gateway's upstreams) is
stood up as a real ASGI app on a 127.0.0.1 port, so the caller's own HTTP client, timeouts and
the kernel's no-network-in-a-transaction guard all run for real.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Literal

import uvicorn
from starlette.types import ASGIApp


class _Server(uvicorn.Server):
    """uvicorn in the test's event loop; pytest keeps its own signal handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def loopback_server(
    app: ASGIApp,
    *,
    port: int = 0,
    lifespan: Literal["on", "off", "auto"] = "off",
    proxy_headers: bool = False,
) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 (a free port unless ``port``) for the block; yields its URL.

    ``proxy_headers`` stays off unless asked: with it uvicorn rewrites the peer address from a
    client's ``X-Forwarded-For`` before the app sees it, which is exactly what an app that
    decides whom to believe (the gateway, identity) must do itself. A fixed ``port`` lets a
    test bring a service up where one was down.
    """
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY on accepted connections only when the
    # listening socket says TCP; without it every kept-alive answer waits for a delayed ACK
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    bound = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        lifespan=lifespan,
        log_level="warning",
        access_log=False,
        proxy_headers=proxy_headers,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                msg = "the server stopped while starting"
                raise RuntimeError(msg)
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{bound}"
    finally:
        server.should_exit = True
        await task
        sock.close()
