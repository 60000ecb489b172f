"""A citizen logs in through the gateway: OTP request → SMS (dev outbox) → verify → /me.

Everything is real: the gateway, identity, the inquiry broker and the simulated mobile and
civil registries answering over Kafka, as ``make run`` starts them.
"""

from __future__ import annotations

import time

import httpx
import pytest

pytestmark = pytest.mark.e2e

NATIONAL_CODE = "0499370899"
MOBILE = "09127654321"


def read_code(gateway: httpx.Client, mobile: str) -> str:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        items = gateway.get("/api/v1/dev/sms-outbox", params={"mobile": mobile}).json()["items"]
        if items:
            return str(items[0]["tokens"][0])
        time.sleep(0.1)
    raise AssertionError("no SMS reached the dev outbox")


def login(gateway: httpx.Client, national_code: str, mobile: str) -> dict[str, str]:
    challenge = gateway.post(
        "/api/v1/auth/otp", json={"national_code": national_code, "mobile": mobile}
    )
    assert challenge.status_code == 202, challenge.text
    code = read_code(gateway, mobile)
    verified = gateway.post(
        "/api/v1/auth/otp/verify",
        json={"challenge_id": challenge.json()["challenge_id"], "code": code},
    )
    assert verified.status_code == 200, verified.text
    tokens: dict[str, str] = verified.json()
    return tokens


class TestCitizenLogin:
    def test_otp_login_registers_the_citizen_and_me_shows_the_registry_profile(
        self, gateway: httpx.Client
    ) -> None:
        tokens = login(gateway, "۰۴۹۹۳۷۰۸۹۹", "+98 912 765 4321")  # as people type them
        me = gateway.get(
            "/api/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
        assert me.status_code == 200, me.text
        body = me.json()
        assert body["national_code"] == NATIONAL_CODE
        assert body["mobile"] == MOBILE
        assert body["first_name"]
        assert body["last_name"]
        assert body["birth_date"]
        assert body["registered_at"]

    def test_a_mobile_the_registry_gives_to_nobody_is_refused(self, gateway: httpx.Client) -> None:
        response = gateway.post(
            "/api/v1/auth/otp", json={"national_code": "0790419904", "mobile": "09121110000"}
        )
        assert response.status_code == 422
        assert response.json()["code"] == "mobile_not_owned"

    def test_refresh_then_logout_ends_the_session(self, gateway: httpx.Client) -> None:
        tokens = login(gateway, "0084575948", "09121239876")
        rotated = gateway.post(
            "/api/v1/auth/token",
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        )
        assert rotated.status_code == 200, rotated.text
        fresh = rotated.json()
        out = gateway.post(
            "/api/v1/auth/logout", headers={"Authorization": f"Bearer {fresh['access_token']}"}
        )
        assert out.status_code == 204, out.text
        again = gateway.post(
            "/api/v1/auth/token",
            data={"grant_type": "refresh_token", "refresh_token": fresh["refresh_token"]},
        )
        assert again.status_code == 400
        assert again.json()["error"] == "invalid_grant"


class TestMachineClients:
    def test_a_seeded_agency_client_gets_a_token(self, gateway: httpx.Client) -> None:
        response = gateway.post(
            "/api/v1/auth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "agency-tax",
                "client_secret": "dev-only-agency-tax",
            },
        )
        assert response.status_code == 200, response.text
        assert response.json()["token_type"] == "Bearer"
