"""The gateway's /metrics: on a port of its own, counting proxied requests by upstream."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from panjereh.gateway.config import Settings
from panjereh.gateway.main import create_app

pytestmark = pytest.mark.integration


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the exposition ``text`` (0 when it is not there yet)."""
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
        if all(found.get(key) == value for key, value in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_metrics_are_served_on_their_own_port_and_count_proxied_requests(
    recording: Any, jwks_url: str, serve: Any
) -> None:
    urls = recording.urls
    settings = Settings(
        environment="test",
        catalog_url=urls["catalog"],
        identity_url=urls["identity"],
        requests_url=urls["requests"],
        inquiry_broker_url=urls["inquiry-broker"],
        jwks_url=jwks_url,
        rate_limits_enabled=False,
        metrics_port=0,
        metrics_host="127.0.0.1",
        access_log=False,
    )
    gateway = create_app(settings)
    async with serve(gateway) as url, httpx.AsyncClient(base_url=url, timeout=10.0) as client:
        port = gateway.own.state.metrics_server.port
        metrics_url = f"http://127.0.0.1:{port}/metrics"
        labels = {"upstream": "catalog", "route_class": "search", "status": "200"}
        before = sample(
            (await client.get(metrics_url)).text, "panjereh_gateway_requests_total", **labels
        )

        for _ in range(3):
            assert (await client.get("/api/v1/catalog/services")).status_code == 200
        refused = await client.get("/api/v1/nowhere")
        assert refused.status_code == 404

        scraped = await client.get(metrics_url)
        assert scraped.status_code == 200
        assert scraped.headers["content-type"].startswith("text/plain")
        text = scraped.text
        after = sample(text, "panjereh_gateway_requests_total", **labels)
        assert after - before == 3
        assert (
            sample(text, "panjereh_gateway_request_duration_seconds_count", upstream="catalog") >= 3
        )
        assert sample(text, "panjereh_gateway_requests_total", upstream="none", status="404") >= 1
        # the kernel's metrics are on the same registry: the gateway's own paths
        assert "panjereh_http_requests_total" in text
        # no path, address or token ever becomes a label of the gateway's series (the kernel's
        # series share the process registry with any app a test run built, so only ours)
        gateway_lines = [line for line in text.splitlines() if line.startswith("panjereh_gateway")]
        assert gateway_lines
        assert not [line for line in gateway_lines if "/api/" in line or "127.0.0.1" in line]

        # the public port still refuses /metrics, and no upstream's was reached
        public = await client.get("/metrics")
        assert public.status_code == 404
        assert "panjereh_gateway_requests_total" not in public.text
        assert recording.catalog.reached_internal() == []
    # stopped with the app: the port no longer answers
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(timeout=2.0) as plain:
            await plain.get(metrics_url)


def test_no_metrics_port_unless_configured() -> None:
    assert Settings(environment="test").metrics_port is None
