"""The gateway's metrics, and the port of its own they are served on.

Every proxied request is counted by upstream, route class and status, and timed by upstream
and route class: bounded labels only (never a path, an address or a caller). The gateway's
own paths (``/livez``, ``/readyz``, ``/openapi.json``, ``/docs``) are counted by the kernel's
HTTP metrics like every process's.

``/metrics`` is refused on the public port (``routing.INTERNAL_PATHS``): it is served on
``metrics_port`` instead, which the ingress never reaches, by a small threaded HTTP server
(``prometheus_client``'s): a scrape costs the event loop nothing and still answers while the
proxy is saturated.
"""

from __future__ import annotations

import asyncio
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server

from panjereh.common.metrics import LATENCY_BUCKETS

#: requests refused before a route was chosen (bad path, no route)
UNROUTED = "none"

GATEWAY_REQUESTS = Counter(
    "panjereh_gateway_requests_total",
    "Requests the gateway answered or forwarded, by upstream, route class and status code "
    '("none" before a route was chosen)',
    ["upstream", "route_class", "status"],
)
GATEWAY_LATENCY = Histogram(
    "panjereh_gateway_request_duration_seconds",
    "From the request's arrival at the gateway to the end of its answer, by upstream and "
    "route class",
    ["upstream", "route_class"],
    buckets=LATENCY_BUCKETS,
)


def observe(upstream: str | None, route_class: str | None, status: int, seconds: float) -> None:
    upstream_label = upstream or UNROUTED
    class_label = route_class or UNROUTED
    GATEWAY_REQUESTS.labels(upstream_label, class_label, str(status)).inc()
    GATEWAY_LATENCY.labels(upstream_label, class_label).observe(seconds)


class MetricsServer:
    """Prometheus text at ``/metrics`` on ``host:port`` (port 0: any free port)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.requested_port = port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            msg = "the metrics server is not running"
            raise RuntimeError(msg)
        return int(self._server.server_address[1])

    async def start(self) -> None:
        self._server, self._thread = start_http_server(
            self.requested_port, addr=self.host, registry=REGISTRY
        )

    async def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            await asyncio.to_thread(server.shutdown)
            server.server_close()
        if thread is not None:
            await asyncio.to_thread(thread.join, 5.0)
