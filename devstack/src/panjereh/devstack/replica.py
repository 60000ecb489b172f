"""``python -m panjereh.devstack.replica APP --port N``: one replica of a service on a shared port.

Several replicas of one service (``--replicas`` of ``python -m panjereh.devstack run``) listen
on the same address, each on its own socket with ``SO_REUSEPORT``: the kernel spreads new
connections over the replicas that are running, so callers (the gateway, the other services)
keep one URL per service, a replica that dies stops receiving connections, and one started
again joins by binding the port once more. Otherwise it runs uvicorn exactly as the stack
runs a single process (uvloop, httptools, no access log, no proxy headers).
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Sequence

import uvicorn


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` that other replicas may bind too."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def main(args: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m panjereh.devstack.replica")
    parser.add_argument("app", help="module:factory of the service's app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--timeout-graceful-shutdown", type=int, default=10)
    options = parser.parse_args(args)
    config = uvicorn.Config(
        options.app,
        factory=True,
        host=options.host,
        port=options.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        proxy_headers=False,
        timeout_graceful_shutdown=options.timeout_graceful_shutdown,
    )
    uvicorn.Server(config).run(sockets=[listening_socket(options.host, options.port)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
