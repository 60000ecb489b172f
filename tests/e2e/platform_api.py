"""What the platform-wide e2e modules do through the gateway, as a mobile app or agency would.

People log in by OTP read from the dev SMS outbox; staff are the seeded ones (``identity.seed``)
and log in the same way; agency systems take client-credentials tokens.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from panjereh.contracts.identifiers import complete_national_code

FINAL = frozenset({"approved", "rejected", "failed", "cancelled"})

COPY_OF_BIRTH_CERTIFICATE = "11010000001"  # smart, civil-registry: approves a living adult
BIRTH_REGISTRATION = "11010000002"  # agency mode, civil-registry: an officer decides
CRIMINAL_RECORD_CERTIFICATE = "11030000001"  # smart, police: rejects when a record is on file
TAX_CLEARANCE = "11050000001"  # smart, tax

#: seeded staff (identity's dev seed)
PLATFORM_ADMIN = "1001001001"
CATALOG_AUTHORITY = "1002002001"
CIVIL_REGISTRY_ADMIN = "2010010019"
CIVIL_REGISTRY_OFFICER = "3010010011"
TAX_OFFICER = "3030030032"
POLICE_OFFICER = "3040040049"

#: the simulators' special codes (agencies/simulators: special.py)
CRIMINAL_RECORD = "9900000031"


@dataclass(frozen=True)
class Person:
    national_code: str
    mobile: str
    headers: dict[str, str]

    def bearer(self) -> str:
        return self.headers["Authorization"].removeprefix("Bearer ")


class People:
    """Fresh national codes and mobiles for one module: no OTP limit of another module's
    people (per mobile, per national code) is ever shared."""

    def __init__(self, code_prefix: str, mobile_prefix: str) -> None:
        assert len(code_prefix) == 4
        assert len(mobile_prefix) == 6
        self._codes: Iterator[int] = itertools.count(1)
        self._mobiles: Iterator[int] = itertools.count(1)
        self.code_prefix = code_prefix
        self.mobile_prefix = mobile_prefix

    def national_code(self) -> str:
        return complete_national_code(f"{self.code_prefix}{next(self._codes):05d}")

    def mobile(self) -> str:
        return f"{self.mobile_prefix}{next(self._mobiles):05d}"


def read_sms(gateway: httpx.Client, mobile: str, *, count: int = 1) -> list[dict[str, Any]]:
    """The SMS messages sent to ``mobile``, newest first, once there are ``count``."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        items: list[dict[str, Any]] = gateway.get(
            "/api/v1/dev/sms-outbox", params={"mobile": mobile}
        ).json()["items"]
        if len(items) >= count:
            return items
        time.sleep(0.1)
    raise AssertionError(f"fewer than {count} SMS reached the dev outbox")


def ask_otp(gateway: httpx.Client, national_code: str, mobile: str) -> httpx.Response:
    response = gateway.post(
        "/api/v1/auth/otp", json={"national_code": national_code, "mobile": mobile}
    )
    # 503: the mobile registry's answer did not come in time (just after start-up, or a
    # fault); asked again a few times, slowly: each try counts against the mobile's hourly
    # limit (5), so four retries at most
    for _ in range(4):
        if response.status_code != 503:
            break
        time.sleep(3.0)
        response = gateway.post(
            "/api/v1/auth/otp", json={"national_code": national_code, "mobile": mobile}
        )
    return response


def until_logins_work(gateway: httpx.Client, people: People, *, within: float = 90.0) -> None:
    """Wait until an OTP can be asked: just after start-up the mobile registry's consumers are
    still joining their groups and identity answers 503. Each try names a mobile and a person
    of its own, so no one's OTP limits are spent on the wait."""
    deadline = time.monotonic() + within
    response = None
    while time.monotonic() < deadline:
        response = gateway.post(
            "/api/v1/auth/otp",
            json={"national_code": people.national_code(), "mobile": people.mobile()},
        )
        if response.status_code == 202:
            return
        assert response.status_code == 503, response.text
        time.sleep(1.0)
    raise AssertionError(f"no OTP could be asked within {within:.0f} s: {response}")


def polite(gateway: httpx.Client, method: str, url: str, **options: Any) -> httpx.Response:
    """One call, asked again after ``Retry-After`` while the gateway's per-caller limit
    answers 429 (writes: 2/s, a burst of 10), so that a test sees the service's own answer."""
    deadline = time.monotonic() + 30
    while True:
        response = gateway.request(method, url, **options)
        if response.status_code != 429 or time.monotonic() > deadline:
            return response
        time.sleep(min(float(response.headers.get("Retry-After") or 0.5), 5.0))


def login(gateway: httpx.Client, national_code: str, mobile: str) -> Person:
    challenge = ask_otp(gateway, national_code, mobile)
    assert challenge.status_code == 202, challenge.text
    code = str(read_sms(gateway, mobile)[0]["tokens"][0])
    body = {"challenge_id": challenge.json()["challenge_id"], "code": code}
    verified = gateway.post("/api/v1/auth/otp/verify", json=body)
    # 503 civil_registry_unavailable at a first login: the registration check did not come
    # back in time (a broker replica joining, say); the answer itself says the code stays
    # valid and to send it again shortly, as an app would
    for _ in range(3):
        if verified.status_code != 503:
            break
        assert verified.json()["code"] == "civil_registry_unavailable", verified.text
        time.sleep(2.0)
        verified = gateway.post("/api/v1/auth/otp/verify", json=body)
    assert verified.status_code == 200, verified.text
    token = verified.json()["access_token"]
    return Person(national_code, mobile, {"Authorization": f"Bearer {token}"})


def client_token(gateway: httpx.Client, client_id: str) -> dict[str, str]:
    """A seeded machine client's access token (dev-only secret ``dev-only-<client_id>``)."""
    response = gateway.post(
        "/api/v1/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": f"dev-only-{client_id}",
        },
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def submit(
    gateway: httpx.Client, person: Person, service_code: str, inputs: dict[str, Any] | None = None
) -> str:
    response = gateway.post(
        "/api/v1/requests",
        json={"service_code": service_code, "inputs": inputs or {}},
        headers={**person.headers, "Idempotency-Key": f"e2e-{time.monotonic_ns()}"},
    )
    assert response.status_code == 201, response.text
    tracking_code: str = response.json()["tracking_code"]
    return tracking_code


def wait_for(
    gateway: httpx.Client,
    person: Person,
    tracking_code: str,
    statuses: frozenset[str] | set[str] = FINAL,
    *,
    within: float = 30.0,
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = gateway.get(f"/api/v1/requests/{tracking_code}", headers=person.headers).json()
        if body.get("status") in statuses:
            return body
        time.sleep(0.1)
    raise AssertionError(f"request stayed {body.get('status')}: {body}")
