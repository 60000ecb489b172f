from __future__ import annotations

import httpx

from panjereh.agency_sdk import KafkaSettings
from panjereh.agency_simulators.agencies import build
from panjereh.agency_simulators.health import serve_health
from panjereh.devstack.embedded import free_port


async def test_probes_report_ready_only_when_every_agency_is_connected_and_has_joined() -> None:
    tax, police = agencies = [build(code, kafka=KafkaSettings()) for code in ("tax", "police")]
    port = free_port()
    server = await serve_health(agencies, port=port, host="127.0.0.1")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/livez")).json() == {"status": "live"}
            tax.connected.set()
            tax.ready.set()
            police.connected.set()  # connected, its group not joined yet
            not_ready = await client.get("/readyz")
            assert not_ready.status_code == 503
            assert not_ready.json() == {
                "status": "unavailable",
                "components": {"tax": "ready", "police": "joining"},
            }
            police.ready.set()
            assert (await client.get("/readyz")).json()["status"] == "ready"
            # disconnected (the host stopped): no longer ready, live as long as the loop runs
            police.connected.clear()
            gone = await client.get("/readyz")
            assert gone.status_code == 503
            assert gone.json()["components"]["police"] == "unavailable"
            assert (await client.get("/livez")).status_code == 200
            assert (await client.get("/other")).status_code == 404
    finally:
        server.close()
        await server.wait_closed()


def test_kafka_security_settings_become_client_options() -> None:
    options = KafkaSettings(
        bootstrap_servers="kafka:9093",
        security_protocol="SASL_PLAINTEXT",
        sasl_username="agency-tax",
        sasl_password="pw",
    ).client_options()
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("agency-tax", "pw")
    assert "ssl_context" not in options
    assert "pw" not in repr(KafkaSettings(sasl_password="pw"))
