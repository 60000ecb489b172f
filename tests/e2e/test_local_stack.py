"""The local stack as a new user runs it: ready through the gateway, and a clean stop."""

from __future__ import annotations

import http.client
import os
import signal
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from panjereh.devstack.testing import RunningStack, start_stack, stop_stack
from tests.e2e.platform_api import PLATFORM_ADMIN, People, login

pytestmark = pytest.mark.e2e

SERVICES = {"catalog", "identity", "requests", "inquiry-broker"}
#: The web portal: behind the gateway like the services, reported in its readiness too.
PORTAL = "portal"
#: Processes without a port of their own, started by the stack too.
EXTRAS = {"agency-simulators"}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it is gone for our purposes once reaped or defunct
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


def postmaster_pid(var_dir: Path) -> int | None:
    pid_file = var_dir / "postgres" / "postmaster.pid"
    if not pid_file.exists():
        return None
    return int(pid_file.read_text().splitlines()[0])


class TestReadiness:
    def test_gateway_reports_every_service_ready(self, gateway: httpx.Client) -> None:
        response = gateway.get("/readyz")
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "ready"
        assert set(body["components"]) == {*SERVICES, PORTAL}
        assert set(body["components"].values()) == {"ready"}

    def test_gateway_is_live(self, gateway: httpx.Client) -> None:
        assert gateway.get("/livez").json() == {"status": "live"}


class TestRouting:
    def test_a_contract_path_reaches_its_service(self, gateway: httpx.Client) -> None:
        # a public catalog path (no token needed at the edge) naming a card that does not exist
        response = gateway.get(
            "/api/v1/catalog/services/00000000000", headers={"X-Request-ID": "e2e-route-1"}
        )
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        # the catalog's own problem, not the gateway's route_not_found
        assert response.json()["code"] == "service_not_found"
        assert response.headers["x-request-id"] == "e2e-route-1"
        assert response.json()["request_id"] == "e2e-route-1"
        # one traceparent: the gateway's, continued from the client's trace
        assert len(response.headers.get_list("traceparent")) == 1

    def test_the_clients_trace_continues_through_the_gateway(self, platform: RunningStack) -> None:
        # the standard library's client on purpose: in a test process where a service app was
        # built, httpx is instrumented and would replace our traceparent with its own
        trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
        address = urlsplit(platform.gateway)
        connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=10)
        try:
            connection.request(
                "GET",
                "/api/v1/catalog/services/00000000000",
                headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
            )
            response = connection.getresponse()
            response.read()
            traceparents = response.headers.get_all("traceparent") or []
        finally:
            connection.close()
        assert len(traceparents) == 1
        assert traceparents[0].split("-")[1] == trace_id

    def test_every_other_path_is_the_portals(self, platform: RunningStack) -> None:
        home = httpx.get(platform.gateway + "/", timeout=10)
        assert home.status_code == 200
        assert home.headers["content-type"].startswith("text/html")
        assert '<html lang="fa" dir="rtl">' in home.text
        # make run says where the portal is
        assert f"portal       {platform.gateway}/" in platform.output.read_text()

    def test_a_path_outside_the_contract_is_the_gateways_404(self, gateway: httpx.Client) -> None:
        response = gateway.get("/api/v1/nowhere", headers={"Accept-Language": "en"})
        assert response.status_code == 404
        assert response.json()["code"] == "route_not_found"
        assert response.json()["title"] == "Not found"


class TestStop:
    def test_ctrl_c_leaves_no_process_behind_and_restart_is_ready(self, tmp_path: Path) -> None:
        var_dir = tmp_path / "var"
        people = People("2780", "093678")
        stack = start_stack(var_dir, tmp_path / "first.out")
        try:
            first = self._audit_after_a_login(stack, people)
        finally:
            pids = self._pids(stack)
            assert stop_stack(stack) == 0
        leftovers = [pid for pid in pids if alive(pid)]
        assert leftovers == [], f"still running after Ctrl-C: {leftovers}"

        # a second run reuses the data directory and comes up again
        again = start_stack(var_dir, tmp_path / "second.out")
        try:
            assert httpx.get(again.gateway + "/readyz", timeout=10).status_code == 200
            # with the keys that wrote the first run's audit log: the whole chain still checks
            second = self._audit_after_a_login(again, people)
        finally:
            stop_stack(again)
        assert "Panjereh is ready in" in (tmp_path / "second.out").read_text()
        assert second["checked"] > first["checked"] > 0

    @staticmethod
    def _audit_after_a_login(stack: RunningStack, people: People) -> dict[str, object]:
        """The platform admin logs in (the broker asks agencies, so the audit log grows),
        then walks the audit chain: it must be whole."""
        with httpx.Client(base_url=stack.gateway, timeout=10.0) as gateway:
            admin = login(gateway, PLATFORM_ADMIN, people.mobile())
            verified: dict[str, object] = gateway.get(
                "/api/v1/audit/verify", headers=admin.headers
            ).json()
        assert verified["valid"] is True, verified
        return verified

    def test_sigterm_stops_everything_too(self, tmp_path: Path) -> None:
        stack = start_stack(tmp_path / "var", tmp_path / "stack.out")
        pids = self._pids(stack)
        stack.process.send_signal(signal.SIGTERM)
        assert stack.process.wait(60) == 0
        assert [pid for pid in pids if alive(pid)] == []

    @staticmethod
    def _pids(stack: RunningStack) -> list[int]:
        state = stack.state()
        processes = state["processes"]
        assert isinstance(processes, dict)
        assert set(processes) == {*SERVICES, PORTAL, "gateway", *EXTRAS}
        pids = [int(pid) for pid in processes.values()]
        broker = state["broker"]
        assert isinstance(broker, int)
        pids.append(broker)
        postmaster = postmaster_pid(stack.var_dir)
        assert postmaster is not None
        pids.append(postmaster)
        return pids
