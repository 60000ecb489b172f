"""OTP login and registration, against a real database and loopback HTTP peers."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from jose import jwt

from panjereh.common.db import in_transaction
from panjereh.common.messaging import outbox
from panjereh.common.testing.plugin import MigratedDatabase, running_app
from panjereh.identity.main import create_app
from panjereh.identity.models import messaging
from panjereh.identity.testing import (
    UNKNOWN_TO_REGISTRY,
    InquiryBrokerDouble,
    mobile_for,
    national_code_for,
    settings_for_tests,
)

pytestmark = pytest.mark.integration


def libpq(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def address(seed: int) -> dict[str, str]:
    """A client address of its own per test, so per-address counters do not interfere."""
    return {"X-Forwarded-For": f"198.51.{seed // 250}.{seed % 250 + 1}"}


async def ask_code(
    client: httpx.AsyncClient, national_code: str, mobile: str, seed: int
) -> httpx.Response:
    return await client.post(
        "/api/v1/auth/otp",
        json={"national_code": national_code, "mobile": mobile},
        headers=address(seed),
    )


async def sms_code(client: httpx.AsyncClient, mobile: str, count: int = 1) -> str:
    """The newest code the console gateway delivered to ``mobile`` (waits for the dispatcher)."""
    for _ in range(200):
        response = await client.get("/api/v1/dev/sms-outbox", params={"mobile": mobile})
        items = response.json()["items"]
        if len(items) >= count:
            return str(items[0]["tokens"][0])
        await asyncio.sleep(0.025)
    raise AssertionError(f"no SMS for the mobile after waiting ({count} expected)")


async def login(
    client: httpx.AsyncClient, seed: int, *, mobile: str | None = None
) -> dict[str, Any]:
    national_code, mobile = national_code_for(seed), mobile or mobile_for(seed)
    challenge = (await ask_code(client, national_code, mobile, seed)).json()
    code = await sms_code(client, mobile)
    response = await client.post(
        "/api/v1/auth/otp/verify", json={"challenge_id": challenge["challenge_id"], "code": code}
    )
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


async def fetch(database_url: str, query: str, *args: object) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(libpq(database_url))
    try:
        return list(await connection.fetch(query, *args))
    finally:
        await connection.close()


async def while_the_mobile_is_held(
    app: FastAPI,
    database_url: str,
    mobile: str,
    request: Coroutine[Any, Any, httpx.Response],
    write: str,
    *args: object,
) -> httpx.Response:
    """``request``'s answer when another holds the mobile's lock (as a racing request would)
    until the request's statement waits for it, then commits ``write`` and lets go."""
    holder = await asyncpg.connect(libpq(database_url))
    try:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            app.state.keys.lookup_key("otp-mobile", mobile),
        )
        asked = asyncio.create_task(request)
        async with asyncio.timeout(10):
            # seen from outside the holder's transaction: within one, pg_stat_activity is
            # read once
            while not await fetch(  # noqa: ASYNC110
                database_url,
                "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE '%otp_send_state%'",
            ):
                await asyncio.sleep(0.02)
        await holder.execute(write, *args)
        await transaction.commit()
        return await asked
    finally:
        await holder.close()


@contextlib.asynccontextmanager
async def inserts_refused(
    database_url: str, table: str, *, when: str, name: str
) -> AsyncIterator[None]:
    """PostgreSQL refuses (raises on) inserts into ``identity.<table>`` whose new row meets
    ``when``, for the block: a statement that fails half-way through a unit of work."""
    connection = await asyncpg.connect(libpq(database_url))
    try:
        await connection.execute(
            f"""
            CREATE FUNCTION identity.{name}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF {when} THEN
                    RAISE EXCEPTION 'refused by the test';
                END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER {name} BEFORE INSERT ON identity.{table}
                FOR EACH ROW EXECUTE FUNCTION identity.{name}();
            """
        )
        yield
    finally:
        await connection.execute(
            f"DROP TRIGGER IF EXISTS {name} ON identity.{table};"
            f" DROP FUNCTION IF EXISTS identity.{name}();"
        )
        await connection.close()


async def registration_refused(
    client: httpx.AsyncClient, seed: int, identity_database: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A first login of ``seed``'s person whose registration the database refuses on its last
    statement (500); the challenge and the verify body, for sending the code again."""
    national_code, mobile = national_code_for(seed), mobile_for(seed)
    challenge = (await ask_code(client, national_code, mobile, seed)).json()
    body = {"challenge_id": challenge["challenge_id"], "code": await sms_code(client, mobile)}
    async with inserts_refused(
        identity_database,
        "citizen",
        when=f"NEW.national_code = '{national_code}'",
        name=f"refuse_citizen_{seed}",
    ):
        refused = await client.post("/api/v1/auth/otp/verify", json=body)
    assert refused.status_code == 500
    return challenge, body


class TestRequestCode:
    async def test_answers_202_and_sends_a_six_digit_code_by_sms(
        self, client: httpx.AsyncClient, seed: int, identity_database: str
    ) -> None:
        mobile = mobile_for(seed)
        response = await ask_code(client, national_code_for(seed), mobile, seed)
        assert response.status_code == 202
        body = response.json()
        assert set(body) == {"challenge_id", "expires_in", "resend_after"}
        assert body["expires_in"] == 120
        assert body["resend_after"] == 60
        code = await sms_code(client, mobile)
        assert len(code) == 6
        assert code.isdigit()
        outbox = (await client.get("/api/v1/dev/sms-outbox", params={"mobile": mobile})).json()
        assert code in outbox["items"][0]["text"]

    async def test_stores_only_a_keyed_hash_of_the_code(
        self, client: httpx.AsyncClient, seed: int, identity_database: str
    ) -> None:
        mobile = mobile_for(seed)
        body = (await ask_code(client, national_code_for(seed), mobile, seed)).json()
        code = await sms_code(client, mobile)
        rows = await fetch(
            identity_database,
            "SELECT code_hash FROM identity.otp_challenge WHERE id = $1",
            uuid.UUID(body["challenge_id"]),
        )
        stored = rows[0]["code_hash"]
        assert code not in stored
        assert len(stored) == 64
        # the queued SMS lost its (encrypted) tokens once it was sent
        queued = await fetch(
            identity_database,
            "SELECT status, sealed_tokens FROM identity.sms_message WHERE mobile = $1",
            mobile,
        )
        assert [(row["status"], row["sealed_tokens"]) for row in queued] == [("sent", None)]

    async def test_same_answer_whether_or_not_the_national_code_is_registered(
        self, client: httpx.AsyncClient, seed: int
    ) -> None:
        await login(client, seed)  # registers national_code_for(seed)
        registered = await ask_code(
            client, national_code_for(seed), mobile_for(seed + 10_000), seed
        )
        unknown = await ask_code(
            client, national_code_for(seed + 20_000), mobile_for(seed + 20_000), seed
        )
        assert registered.status_code == unknown.status_code == 202
        first, second = registered.json(), unknown.json()
        assert set(first) == set(second)
        assert {k: v for k, v in first.items() if k != "challenge_id"} == {
            k: v for k, v in second.items() if k != "challenge_id"
        }

    async def test_reads_persian_digits_and_prefixed_mobiles(
        self, client: httpx.AsyncClient, seed: int
    ) -> None:
        national_code = national_code_for(seed)
        persian = national_code.translate(str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹"))
        mobile = mobile_for(seed)
        response = await ask_code(client, persian, "+98" + mobile[1:], seed)
        assert response.status_code == 202
        assert await sms_code(client, mobile)

    @pytest.mark.parametrize(
        ("national_code", "mobile", "field"),
        [
            ("0684159415", "09121234567", "national_code"),  # bad checksum
            ("1111111111", "09121234567", "national_code"),  # passes the bare checksum
            ("0499370899", "0812123456", "mobile"),
        ],
    )
    async def test_malformed_input_is_422_and_sends_nothing(
        self,
        client: httpx.AsyncClient,
        broker_double: InquiryBrokerDouble,
        seed: int,
        national_code: str,
        mobile: str,
        field: str,
    ) -> None:
        asked_before = len(broker_double.requests)
        response = await client.post(
            "/api/v1/auth/otp",
            json={"national_code": national_code, "mobile": mobile},
            headers={**address(seed), "Accept-Language": "en"},
        )
        assert response.status_code == 422
        body = response.json()
        assert body["code"] == "validation_failed"
        assert [error["field"] for error in body["errors"]] == [field], body
        assert len(broker_double.requests) == asked_before

    async def test_a_mobile_not_in_the_persons_name_is_refused_before_any_sms(
        self, client: httpx.AsyncClient, seed: int, identity_database: str
    ) -> None:
        mobile = "0912555" + "0000"
        response = await ask_code(client, national_code_for(seed), mobile, seed)
        assert response.status_code == 422
        assert response.json()["code"] == "mobile_not_owned"
        assert (
            await fetch(
                identity_database, "SELECT 1 FROM identity.sms_message WHERE mobile = $1", mobile
            )
            == []
        )

    async def test_fails_closed_with_503_when_the_broker_cannot_answer(
        self,
        client: httpx.AsyncClient,
        broker_double: InquiryBrokerDouble,
        seed: int,
        identity_database: str,
    ) -> None:
        broker_double.available = False
        mobile = mobile_for(seed)
        response = await ask_code(client, national_code_for(seed), mobile, seed)
        assert response.status_code == 503
        assert response.json()["code"] == "ownership_check_unavailable"
        assert (
            await fetch(
                identity_database, "SELECT 1 FROM identity.otp_challenge WHERE mobile = $1", mobile
            )
            == []
        )

    async def test_asks_the_broker_with_its_own_service_token_and_a_purpose(
        self, client: httpx.AsyncClient, broker_double: InquiryBrokerDouble, seed: int
    ) -> None:
        mobile = mobile_for(seed)
        await ask_code(client, national_code_for(seed), mobile, seed)
        asked = [
            body
            for body in broker_double.asked("mobile-registry.ownership")
            if body["params"]["mobile"] == mobile
        ]
        assert asked[0]["subject"] == national_code_for(seed)
        assert asked[0]["purpose"]["service_code"] == "identity.login"
        token = broker_double.authorizations[-1].removeprefix("Bearer ")
        claims = jwt.get_unverified_claims(token)
        assert claims["roles"] == ["service:identity"]
        assert claims["sub"] == "service-identity"

    async def test_a_second_request_inside_the_cooldown_is_429_with_retry_after(
        self, client: httpx.AsyncClient, seed: int
    ) -> None:
        national_code, mobile = national_code_for(seed), mobile_for(seed)
        assert (await ask_code(client, national_code, mobile, seed)).status_code == 202
        again = await ask_code(client, national_code, mobile, seed)
        assert again.status_code == 429
        assert again.json()["code"] == "otp_resend_too_soon"
        assert 55 <= int(again.headers["retry-after"]) <= 60

    async def test_two_racing_requests_for_one_mobile_send_one_code(
        self, client: httpx.AsyncClient, seed: int, identity_database: str
    ) -> None:
        national_code, mobile = national_code_for(seed), mobile_for(seed)
        responses = await asyncio.gather(
            ask_code(client, national_code, mobile, seed),
            ask_code(client, national_code, mobile, seed),
        )
        assert sorted(r.status_code for r in responses) == [202, 429]
        rows = await fetch(
            identity_database, "SELECT 1 FROM identity.otp_challenge WHERE mobile = $1", mobile
        )
        assert len(rows) == 1

    async def test_a_code_stored_while_a_request_waits_for_the_mobile_is_seen_by_it(
        self, app: FastAPI, client: httpx.AsyncClient, seed: int, identity_database: str
    ) -> None:
        """The request's statement takes the mobile's lock and only then reads the cooldown:
        a code another request stored while this one waited is seen (its snapshot is taken
        after the lock), so both cannot pass the cooldown however they interleave."""
        national_code, mobile = national_code_for(seed), mobile_for(seed)
        response = await while_the_mobile_is_held(
            app,
            identity_database,
            mobile,
            ask_code(client, national_code, mobile, seed),
            # the holder stores its code before letting go
            "INSERT INTO identity.otp_challenge (id, national_code, mobile, code_hash, "
            "failed_attempts, created_at, expires_at) "
            "VALUES ($1, $2, $3, 'elsewhere', 0, now(), now() + interval '2 minutes')",
            uuid.uuid4(),
            national_code,
            mobile,
        )
        assert response.status_code == 429, response.text
        assert response.json()["code"] == "otp_resend_too_soon"
        rows = await fetch(
            identity_database,
            "SELECT code_hash FROM identity.otp_challenge WHERE mobile = $1",
            mobile,
        )
        assert [row["code_hash"] for row in rows] == ["elsewhere"]

    async def test_per_mobile_limit(self, client: httpx.AsyncClient, seed: int) -> None:
        national_code, mobile = national_code_for(seed), mobile_for(seed)
        statuses = [
            (await ask_code(client, national_code, mobile, seed * 100 + i)).status_code
            for i in range(6)
        ]
        # the first is sent, the next four hit the cooldown, the sixth the per-mobile limit
        assert statuses == [202, 429, 429, 429, 429, 429]
        limited = await ask_code(client, national_code, mobile, seed * 100 + 7)
        assert limited.json()["code"] == "otp_rate_limited"
        assert int(limited.headers["retry-after"]) > 0

    async def test_per_address_limit(self, client: httpx.AsyncClient, seed: int) -> None:
        codes = []
        for i in range(13):
            response = await ask_code(
                client, national_code_for(seed * 1000 + i), mobile_for(seed * 1000 + i), seed
            )
            codes.append(response.status_code)
        assert codes[:12] == [202] * 12
        assert codes[12] == 429
        # another address is not affected
        other = await ask_code(
            client, national_code_for(seed * 1000 + 99), mobile_for(seed * 1000 + 99), seed + 7
        )
        assert other.status_code == 202


class TestVerifyCode:
    async def test_first_success_registers_the_citizen_with_the_registry_profile(
        self,
        client: httpx.AsyncClient,
        broker_double: InquiryBrokerDouble,
        seed: int,
        identity_database: str,
    ) -> None:
        tokens = await login(client, seed)
        assert tokens["token_type"] == "Bearer"
        assert tokens["expires_in"] == 600
        rows = await fetch(
            identity_database,
            "SELECT id, first_name, last_name, birth_date::text, mobile FROM identity.citizen"
            " WHERE national_code = $1",
            national_code_for(seed),
        )
        assert [(r["first_name"], r["last_name"], r["birth_date"], r["mobile"]) for r in rows] == [
            ("سارا", "محمدی", "1990-03-21", mobile_for(seed))
        ]
        claims = jwt.get_unverified_claims(tokens["access_token"])
        assert claims["sub"] == str(rows[0]["id"])
        assert claims["national_code"] == national_code_for(seed)
        assert claims["roles"] == ["citizen"]
        # the registry was read under registration's own platform purpose, not login's
        (registry,) = [
            body
            for body in broker_double.asked("civil-registry.person")
            if body["subject"] == national_code_for(seed)
        ]
        assert registry["purpose"]["service_code"] == "identity.registration"
        # the second login (from a new mobile) does not ask the registry again, keeps the
        # same citizen id and records the mobile just proven
        asked = len(broker_double.asked("civil-registry.person"))
        again = await login(client, seed, mobile=mobile_for(seed + 70_000))
        assert len(broker_double.asked("civil-registry.person")) == asked
        assert jwt.get_unverified_claims(again["access_token"])["sub"] == claims["sub"]
        rows = await fetch(
            identity_database,
            "SELECT mobile FROM identity.citizen WHERE national_code = $1",
            national_code_for(seed),
        )
        assert [r["mobile"] for r in rows] == [mobile_for(seed + 70_000)]

    async def test_access_token_verifies_with_the_published_jwks(
        self, client: httpx.AsyncClient, seed: int
    ) -> None:
        tokens = await login(client, seed)
        jwks = (await client.get("/.well-known/jwks.json")).json()
        kid = jwt.get_unverified_header(tokens["access_token"])["kid"]
        key = next(k for k in jwks["keys"] if k["kid"] == kid)
        claims = jwt.decode(
            tokens["access_token"],
            key,
            algorithms=["ES256"],
            audience="panjereh",
            issuer="panjereh-identity",
        )
        assert claims["exp"] - claims["iat"] == 600

    async def test_a_code_works_once(self, client: httpx.AsyncClient, seed: int) -> None:
        national_code, mobile = national_code_for(seed), mobile_for(seed)
        challenge = (await ask_code(client, national_code, mobile, seed)).json()["challenge_id"]
        code = await sms_code(client, mobile)
        body = {"challenge_id": challenge, "code": code}
        assert (await client.post("/api/v1/auth/otp/verify", json=body)).status_code == 200
        again = await client.post("/api/v1/auth/otp/verify", json=body)
        assert again.status_code == 410
        assert again.json()["code"] == "otp_already_used"

    async def test_the_login_shows_in_the_metrics(
        self, client: httpx.AsyncClient, seed: int
    ) -> None:
        def counter(text: str, name: str, label: str) -> float:
            prefix = f"{name}{{{label}}} "
            line = next((line for line in text.splitlines() if line.startswith(prefix)), None)
            return float(line.rsplit(" ", 1)[1]) if line else 0.0

        before = (await client.get("/metrics")).text
        national_code, mobile = national_code_for(seed), mobile_for(seed)
        challenge = (await ask_code(client, national_code, mobile, seed)).json()["challenge_id"]
        code = await sms_code(client, mobile)
        wrong = "000000" if code != "000000" else "111111"
        await client.post(
            "/api/v1/auth/otp/verify", json={"challenge_id": challenge, "code": wrong}
        )
        body = {"challenge_id": challenge, "code": code}
        assert (await client.post("/api/v1/auth/otp/verify", json=body)).status_code == 200
        after = (await client.get("/metrics")).text
        for event in ("requested", "failed", "verified"):
            label = f'event="{event}"'
            moved = counter(after, "panjereh_otp_events_total", label) - counter(
                before, "panjereh_otp_events_total", label
            )
            assert moved >= 1, event
        sent = 'outcome="sent"'
        assert counter(after, "panjereh_sms_messages_total", sent) > counter(
            before, "panjereh_sms_messages_total", sent
        )
        assert mobile not in after
        assert national_code not in after

    async def test_an_expired_code_is_refused(
        self, client: httpx.AsyncClient, seed: int, identity_database: str
    ) -> None:
        mobile = mobile_for(seed)
        challenge = (await ask_code(client, national_code_for(seed), mobile, seed)).json()
        code = await sms_code(client, mobile)
        await fetch(
            identity_database,
            "UPDATE identity.otp_challenge SET expires_at = now() - interval '1 second'"
            " WHERE id = $1",
            uuid.UUID(challenge["challenge_id"]),
        )
        response = await client.post(
            "/api/v1/auth/otp/verify",
            json={"challenge_id": challenge["challenge_id"], "code": code},
        )
        assert response.status_code == 410
        assert response.json()["code"] == "otp_expired"

    async def test_five_wrong_codes_kill_the_challenge(
        self, client: httpx.AsyncClient, seed: int
    ) -> None:
        mobile = mobile_for(seed)
        challenge = (await ask_code(client, national_code_for(seed), mobile, seed)).json()
        code = await sms_code(client, mobile)
        wrong = f"{(int(code) + 1) % 1_000_000:06d}"
        left = []
        for _ in range(5):
            response = await client.post(
                "/api/v1/auth/otp/verify",
                json={"challenge_id": challenge["challenge_id"], "code": wrong},
            )
            assert response.status_code == 400
            assert response.json()["code"] == "otp_invalid"
            left.append(response.json()["attempts_left"])
        assert left == [4, 3, 2, 1, 0]
        dead = await client.post(
            "/api/v1/auth/otp/verify",
            json={"challenge_id": challenge["challenge_id"], "code": code},
        )
        assert dead.status_code == 410
        assert dead.json()["code"] == "otp_attempts_exhausted"

    async def test_a_wrong_code_is_counted_once_against_the_challenge_and_the_days_caps(
        self, client: httpx.AsyncClient, app: FastAPI, seed: int, identity_database: str
    ) -> None:
        national_code, mobile = national_code_for(seed), mobile_for(seed)
        challenge = (await ask_code(client, national_code, mobile, seed)).json()
        code = await sms_code(client, mobile)
        buckets = [
            app.state.keys.lookup_key("otp-failed-mobile", mobile),
            app.state.keys.lookup_key("otp-failed-national-code", national_code),
        ]
        seen = []
        for _ in range(2):
            response = await client.post(
                "/api/v1/auth/otp/verify",
                json={"challenge_id": challenge["challenge_id"], "code": wrong(code)},
            )
            assert response.status_code == 400
            [row] = await fetch(
                identity_database,
                "SELECT failed_attempts, consumed_at FROM identity.otp_challenge WHERE id = $1",
                uuid.UUID(challenge["challenge_id"]),
            )
            hits = await fetch(
                identity_database,
                "SELECT hits FROM identity.rate_limit_counter WHERE bucket = ANY($1::text[])",
                buckets,
            )
            seen.append(
                (
                    response.json()["attempts_left"],
                    row["failed_attempts"],
                    row["consumed_at"],
                    [counter["hits"] for counter in hits],
                )
            )
        # the refusal kept its counts (committed), one per wrong code on each of them
        assert seen == [(4, 1, None, [1, 1]), (3, 2, None, [2, 2])]

    async def test_a_code_is_bound_to_its_challenge(
        self, client: httpx.AsyncClient, seed: int
    ) -> None:
        first_mobile, second_mobile = mobile_for(seed), mobile_for(seed + 50_000)
        first = (await ask_code(client, national_code_for(seed), first_mobile, seed)).json()
        second = (
            await ask_code(client, national_code_for(seed + 50_000), second_mobile, seed)
        ).json()
        first_code = await sms_code(client, first_mobile)
        second_code = await sms_code(client, second_mobile)
        if first_code == second_code:
            pytest.skip("the two random codes happen to be equal (1 in a million)")
        crossed = await client.post(
            "/api/v1/auth/otp/verify",
            json={"challenge_id": second["challenge_id"], "code": first_code},
        )
        assert crossed.status_code == 400
        assert first["challenge_id"] != second["challenge_id"]

    async def test_persian_digits_in_the_code_are_read(
        self, client: httpx.AsyncClient, seed: int
    ) -> None:
        mobile = mobile_for(seed)
        challenge = (await ask_code(client, national_code_for(seed), mobile, seed)).json()
        code = await sms_code(client, mobile)
        persian = code.translate(str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹"))
        response = await client.post(
            "/api/v1/auth/otp/verify",
            json={"challenge_id": challenge["challenge_id"], "code": persian},
        )
        assert response.status_code == 200

    async def test_unknown_challenge_is_404(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/api/v1/auth/otp/verify", json={"challenge_id": str(uuid.uuid4()), "code": "123456"}
        )
        assert response.status_code == 404
        assert response.json()["code"] == "otp_challenge_not_found"

    async def test_no_registry_record_refuses_registration_and_keeps_the_code(
        self, client: httpx.AsyncClient, seed: int, identity_database: str
    ) -> None:
        mobile = mobile_for(seed)
        challenge = (await ask_code(client, UNKNOWN_TO_REGISTRY, mobile, seed)).json()
        code = await sms_code(client, mobile)
        response = await client.post(
            "/api/v1/auth/otp/verify",
            json={"challenge_id": challenge["challenge_id"], "code": code},
        )
        assert response.status_code == 422
        assert response.json()["code"] == "civil_registry_no_record"
        assert (
            await fetch(
                identity_database,
                "SELECT 1 FROM identity.citizen WHERE national_code = $1",
                UNKNOWN_TO_REGISTRY,
            )
            == []
        )

    async def test_registry_outage_is_503_and_the_code_can_be_tried_again(
        self,
        client: httpx.AsyncClient,
        broker_double: InquiryBrokerDouble,
        seed: int,
    ) -> None:
        mobile = mobile_for(seed)
        challenge = (await ask_code(client, national_code_for(seed), mobile, seed)).json()
        code = await sms_code(client, mobile)
        body = {"challenge_id": challenge["challenge_id"], "code": code}
        broker_double.available = False
        outage = await client.post("/api/v1/auth/otp/verify", json=body)
        assert outage.status_code == 503
        assert outage.json()["code"] == "civil_registry_unavailable"
        broker_double.available = True
        assert (await client.post("/api/v1/auth/otp/verify", json=body)).status_code == 200


class TestVerifyClaimsTheChallenge:
    """Claim (tx1) → civil registry with no transaction open → record (tx2)."""

    async def test_a_registry_outage_gives_the_code_back_with_a_retryable_answer(
        self,
        client: httpx.AsyncClient,
        broker_double: InquiryBrokerDouble,
        seed: int,
        identity_database: str,
    ) -> None:
        mobile = mobile_for(seed)
        challenge = (await ask_code(client, national_code_for(seed), mobile, seed)).json()
        body = {"challenge_id": challenge["challenge_id"], "code": await sms_code(client, mobile)}
        broker_double.available = False
        outage = await client.post(
            "/api/v1/auth/otp/verify", json=body, headers={"Accept-Language": "en"}
        )
        assert outage.status_code == 503
        assert outage.json()["code"] == "civil_registry_unavailable"
        assert outage.headers["retry-after"] == "5"
        assert "still valid" in outage.json()["detail"]
        rows = await fetch(
            identity_database,
            "SELECT consumed_at, failed_attempts FROM identity.otp_challenge WHERE id = $1",
            uuid.UUID(challenge["challenge_id"]),
        )
        assert [(r["consumed_at"], r["failed_attempts"]) for r in rows] == [(None, 0)]
        broker_double.available = True
        assert (await client.post("/api/v1/auth/otp/verify", json=body)).status_code == 200
        again = await client.post("/api/v1/auth/otp/verify", json=body)
        assert again.json()["code"] == "otp_already_used"

    async def test_a_code_being_checked_with_the_registry_cannot_be_used_by_another_request(
        self,
        client: httpx.AsyncClient,
        broker_double: InquiryBrokerDouble,
        seed: int,
        identity_database: str,
    ) -> None:
        national_code, mobile = national_code_for(seed), mobile_for(seed)
        challenge = (await ask_code(client, national_code, mobile, seed)).json()
        body = {"challenge_id": challenge["challenge_id"], "code": await sms_code(client, mobile)}
        asked = len(broker_double.asked("civil-registry.person"))
        broker_double.delay = 0.4  # the second request arrives while the first is at the registry

        async def verify(after: float) -> httpx.Response:
            await asyncio.sleep(after)
            return await client.post("/api/v1/auth/otp/verify", json=body)

        first, second = await asyncio.gather(verify(0), verify(0.1))
        assert (first.status_code, second.status_code) == (200, 410)
        assert second.json()["code"] == "otp_already_used"
        assert len(broker_double.asked("civil-registry.person")) == asked + 1
        citizens = await fetch(
            identity_database,
            "SELECT 1 FROM identity.citizen WHERE national_code = $1",
            national_code,
        )
        assert len(citizens) == 1

    async def test_two_first_logins_of_one_person_register_them_once(
        self,
        client: httpx.AsyncClient,
        broker_double: InquiryBrokerDouble,
        seed: int,
        identity_database: str,
    ) -> None:
        national_code = national_code_for(seed)
        mobiles = [mobile_for(seed), mobile_for(seed + 30_000)]
        challenges = [
            (await ask_code(client, national_code, mobile, seed)).json()["challenge_id"]
            for mobile in mobiles
        ]
        codes = [await sms_code(client, mobile) for mobile in mobiles]
        broker_double.delay = 0.3  # both are at the registry at once
        responses = await asyncio.gather(
            *(
                client.post(
                    "/api/v1/auth/otp/verify", json={"challenge_id": challenge, "code": code}
                )
                for challenge, code in zip(challenges, codes, strict=True)
            )
        )
        assert [r.status_code for r in responses] == [200, 200]
        subjects = {jwt.get_unverified_claims(r.json()["access_token"])["sub"] for r in responses}
        assert len(subjects) == 1
        registered = await fetch(
            identity_database,
            "SELECT 1 FROM identity.outbox_message"
            " WHERE event_type = 'identity.citizen.registered.v1' AND key = $1",
            subjects.pop(),
        )
        assert len(registered) == 1

    async def test_a_sign_in_refused_half_way_spends_no_code_and_records_no_login(
        self, client: httpx.AsyncClient, seed: int, identity_database: str
    ) -> None:
        national_code = national_code_for(seed)
        subject = jwt.get_unverified_claims((await login(client, seed))["access_token"])["sub"]
        citizen = "SELECT mobile, last_login_at FROM identity.citizen WHERE id = $1"
        registered = await fetch(identity_database, citizen, uuid.UUID(subject))
        mobile = mobile_for(seed + 60_000)  # the first mobile is in its resend cooldown
        challenge = (await ask_code(client, national_code, mobile, seed)).json()
        body = {"challenge_id": challenge["challenge_id"], "code": await sms_code(client, mobile)}
        # the unit's last statement (the login and its session) fails after the code was spent
        async with inserts_refused(
            identity_database,
            "refresh_token_family",
            when=f"NEW.citizen_id = '{subject}'",
            name=f"refuse_session_{seed}",
        ):
            refused = await client.post("/api/v1/auth/otp/verify", json=body)
        assert refused.status_code == 500
        rows = await fetch(
            identity_database,
            "SELECT consumed_at, failed_attempts FROM identity.otp_challenge WHERE id = $1",
            uuid.UUID(challenge["challenge_id"]),
        )
        assert [(r["consumed_at"], r["failed_attempts"]) for r in rows] == [(None, 0)]
        assert await fetch(identity_database, citizen, uuid.UUID(subject)) == registered
        sessions = await fetch(
            identity_database,
            "SELECT 1 FROM identity.refresh_token_family WHERE citizen_id = $1",
            uuid.UUID(subject),
        )
        assert len(sessions) == 1
        # the same code then signs the person in, from the mobile it went to
        assert (await client.post("/api/v1/auth/otp/verify", json=body)).status_code == 200
        [signed_in] = await fetch(identity_database, citizen, uuid.UUID(subject))
        assert signed_in["mobile"] == mobile

    async def test_a_registration_refused_half_way_writes_nothing_and_gives_the_code_back(
        self, client: httpx.AsyncClient, seed: int, identity_database: str
    ) -> None:
        national_code = national_code_for(seed)
        challenge, body = await registration_refused(client, seed, identity_database)
        registered = "SELECT id FROM identity.citizen WHERE national_code = $1"
        assert await fetch(identity_database, registered, national_code) == []
        rows = await fetch(
            identity_database,
            "SELECT consumed_at FROM identity.otp_challenge WHERE id = $1",
            uuid.UUID(challenge["challenge_id"]),
        )
        assert [r["consumed_at"] for r in rows] == [None]
        assert (await client.post("/api/v1/auth/otp/verify", json=body)).status_code == 200
        [citizen] = await fetch(identity_database, registered, national_code)
        events = await fetch(
            identity_database,
            "SELECT 1 FROM identity.outbox_message"
            " WHERE event_type = 'identity.citizen.registered.v1' AND key = $1",
            str(citizen["id"]),
        )
        assert len(events) == 1

    async def test_no_registry_record_gives_the_code_back(
        self, client: httpx.AsyncClient, seed: int, identity_database: str
    ) -> None:
        mobile = mobile_for(seed)
        challenge = (await ask_code(client, UNKNOWN_TO_REGISTRY, mobile, seed)).json()
        body = {"challenge_id": challenge["challenge_id"], "code": await sms_code(client, mobile)}
        for _ in range(2):  # the same answer again: the code was not spent by the refusal
            response = await client.post("/api/v1/auth/otp/verify", json=body)
            assert response.json()["code"] == "civil_registry_no_record"
        rows = await fetch(
            identity_database,
            "SELECT consumed_at FROM identity.otp_challenge WHERE id = $1",
            uuid.UUID(challenge["challenge_id"]),
        )
        assert [r["consumed_at"] for r in rows] == [None]


@pytest.fixture
def relay_wakes(app: FastAPI) -> Iterator[list[bool]]:
    """Each time the outbox relay is woken meanwhile: whether a unit of work was open then."""
    database = app.state.database
    wake = database.sessions.kw["info"][outbox.SESSION_WAKE_KEY]
    woken: list[bool] = []

    def recorded() -> None:
        woken.append(in_transaction())
        wake()

    outbox.bind(database, messaging.outbox, wake=recorded)
    try:
        yield woken
    finally:
        outbox.bind(database, messaging.outbox, wake=wake)


class TestRightCodeSpentOnce:
    """A right code is spent by one statement that takes the mobile's lock and checks the
    challenge and the day's wrong codes as they are once it holds it, whatever another
    request did while it waited."""

    async def test_a_code_spent_while_a_right_one_waits_is_already_used(
        self, app: FastAPI, client: httpx.AsyncClient, seed: int, identity_database: str
    ) -> None:
        national_code, mobile = national_code_for(seed), mobile_for(seed)
        challenge = (await ask_code(client, national_code, mobile, seed)).json()
        body = {"challenge_id": challenge["challenge_id"], "code": await sms_code(client, mobile)}
        response = await while_the_mobile_is_held(
            app,
            identity_database,
            mobile,
            client.post("/api/v1/auth/otp/verify", json=body),
            "UPDATE identity.otp_challenge SET consumed_at = now() WHERE id = $1",
            uuid.UUID(challenge["challenge_id"]),
        )
        assert response.status_code == 410, response.text
        assert response.json()["code"] == "otp_already_used"

    async def test_a_failure_cap_reached_while_a_right_code_waits_refuses_it(
        self, app: FastAPI, client: httpx.AsyncClient, seed: int, identity_database: str
    ) -> None:
        national_code, mobile = national_code_for(seed), mobile_for(seed)
        challenge = (await ask_code(client, national_code, mobile, seed)).json()
        code = await sms_code(client, mobile)
        guessed = await client.post(
            "/api/v1/auth/otp/verify",
            json={"challenge_id": challenge["challenge_id"], "code": wrong(code)},
        )
        assert guessed.status_code == 400  # the day's counters of wrong codes now exist
        buckets = [
            app.state.keys.lookup_key("otp-failed-mobile", mobile),
            app.state.keys.lookup_key("otp-failed-national-code", national_code),
        ]
        response = await while_the_mobile_is_held(
            app,
            identity_database,
            mobile,
            client.post(
                "/api/v1/auth/otp/verify",
                json={"challenge_id": challenge["challenge_id"], "code": code},
            ),
            # racing wrong guesses, counted up to the day's cap meanwhile
            "UPDATE identity.rate_limit_counter SET hits = 50 WHERE bucket = ANY($1::text[])",
            buckets,
        )
        assert response.status_code == 429, response.text
        assert response.json()["code"] == "otp_rate_limited"
        [row] = await fetch(
            identity_database,
            "SELECT consumed_at FROM identity.otp_challenge WHERE id = $1",
            uuid.UUID(challenge["challenge_id"]),
        )
        assert row["consumed_at"] is None

    async def test_a_challenge_whose_tries_ran_out_in_between_is_exhausted(
        self, app: FastAPI, client: httpx.AsyncClient, seed: int, identity_database: str
    ) -> None:
        national_code, mobile = national_code_for(seed), mobile_for(seed)
        challenge = (await ask_code(client, national_code, mobile, seed)).json()
        body = {"challenge_id": challenge["challenge_id"], "code": await sms_code(client, mobile)}
        response = await while_the_mobile_is_held(
            app,
            identity_database,
            mobile,
            client.post("/api/v1/auth/otp/verify", json=body),
            # racing wrong guesses used up the challenge's tries meanwhile
            "UPDATE identity.otp_challenge SET failed_attempts = 99 WHERE id = $1",
            uuid.UUID(challenge["challenge_id"]),
        )
        # the statement found another count and wrote nothing; the locked way refused it
        assert response.status_code == 410, response.text
        assert response.json()["code"] == "otp_attempts_exhausted"
        [row] = await fetch(
            identity_database,
            "SELECT consumed_at FROM identity.otp_challenge WHERE id = $1",
            uuid.UUID(challenge["challenge_id"]),
        )
        assert row["consumed_at"] is None


class TestRegistrationEvent:
    async def test_a_registration_wakes_the_relay_once_it_is_committed(
        self, client: httpx.AsyncClient, relay_wakes: list[bool], seed: int
    ) -> None:
        await login(client, seed)
        # woken after the commit (no unit of work open), so it publishes the event at once
        assert relay_wakes == [False]

    async def test_a_registration_refused_half_way_does_not_wake_the_relay(
        self,
        client: httpx.AsyncClient,
        relay_wakes: list[bool],
        seed: int,
        identity_database: str,
    ) -> None:
        await registration_refused(client, seed, identity_database)
        assert relay_wakes == []


class TestLocalisedFieldErrors:
    @pytest.mark.parametrize(
        ("language", "title", "message"),
        [
            ("fa", "اطلاعات ارسالی معتبر نیست", "رقم کنترل کد ملی درست نیست"),
            ("en", "Validation failed", "the national code's check digit does not match"),
        ],
    )
    async def test_a_bad_national_code_is_explained_in_the_callers_language(
        self, client: httpx.AsyncClient, seed: int, language: str, title: str, message: str
    ) -> None:
        response = await client.post(
            "/api/v1/auth/otp",
            json={"national_code": "0684159415", "mobile": mobile_for(seed)},
            headers={**address(seed), "Accept-Language": language},
        )
        assert response.status_code == 422
        body = response.json()
        assert body["title"] == title
        assert body["errors"] == [
            {"field": "national_code", "code": "national_code_checksum", "message": message}
        ]
        assert "Value error" not in response.text
        assert response.headers["content-language"] == language

    @pytest.mark.parametrize(
        ("path", "payload", "field", "code"),
        [
            (
                "/api/v1/auth/otp",
                {"national_code": "0499370899", "mobile": "0812123456"},
                "mobile",
                "mobile_format",
            ),
            (
                "/api/v1/auth/otp",
                {"national_code": "12", "mobile": "09121234567"},
                "national_code",
                "national_code_length",
            ),
            (
                "/api/v1/auth/otp/verify",
                {"challenge_id": "6d1f3b4e-8a2c-4f7e-9b1d-2c3e4f5a6b7c", "code": "12ab56"},
                "code",
                "otp_code_format",
            ),
        ],
    )
    async def test_other_field_problems_have_stable_codes_and_persian_messages(
        self,
        client: httpx.AsyncClient,
        seed: int,
        path: str,
        payload: dict[str, str],
        field: str,
        code: str,
    ) -> None:
        response = await client.post(
            path, json=payload, headers={**address(seed), "Accept-Language": "fa"}
        )
        assert response.status_code == 422
        [error] = response.json()["errors"]
        assert (error["field"], error["code"]) == (field, code)
        assert any("\u0600" <= character <= "\u06ff" for character in error["message"])
        assert "Value error" not in error["message"]


class TestDevOutboxOnlyInDev:
    async def test_is_404_outside_dev_mode(
        self, migrated_database: MigratedDatabase, broker_double: InquiryBrokerDouble
    ) -> None:
        # a database of its own: test mode takes no dev master secret, and the shared one's
        # signing keys are sealed with it
        app: FastAPI = create_app(
            settings_for_tests(
                await migrated_database("panjereh.identity"),
                broker_double.url,
                environment="test",
                secret_key="k7f3a9c1eB2d4F6h8J0kL3m5N7p9Q1r",
            )
        )
        async with running_app(app) as client:
            response = await client.get("/api/v1/dev/sms-outbox", params={"mobile": "09121234567"})
            jwks = await client.get("/.well-known/jwks.json")
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
        assert jwks.status_code == 200  # the app itself is up; only the dev route is absent


class TestNoPersonalDataInLogs:
    async def test_a_login_logs_neither_the_national_code_nor_the_mobile(
        self, client: httpx.AsyncClient, seed: int, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level("DEBUG")
        national_code, mobile = national_code_for(seed), mobile_for(seed)
        wrong = await ask_code(client, national_code, mobile, seed)
        code = await sms_code(client, mobile)
        await client.post(
            "/api/v1/auth/otp/verify",
            json={"challenge_id": wrong.json()["challenge_id"], "code": "000000"},
        )
        await client.post(
            "/api/v1/auth/otp/verify",
            json={"challenge_id": wrong.json()["challenge_id"], "code": code},
        )
        identity_records = [r for r in caplog.records if r.name.startswith("panjereh")]
        assert identity_records  # the flow does log (challenge ids, citizen ids)
        for record in identity_records:
            # string attributes only: timestamps and thread ids could hold any 6 digits
            strings = [v for v in record.__dict__.values() if isinstance(v, str)]
            text = record.getMessage() + " " + " ".join(strings)
            assert national_code not in text
            assert mobile not in text
            assert code not in text


#: small daily caps, no cooldown: the caps themselves are what these tests reach
DAILY_CAPS = {
    "otp_daily_requests_per_mobile": 3,
    "otp_daily_requests_per_national_code": 3,
    "otp_daily_failures_per_mobile": 4,
    "otp_daily_failures_per_national_code": 4,
    "otp_resend_cooldown_seconds": 0,
    "otp_per_mobile_limit": 100,
    "otp_per_ip_limit": 1000,
}


@pytest.fixture(scope="module")
async def capped_client(
    identity_database: str, broker_double: InquiryBrokerDouble
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings_for_tests(identity_database, broker_double.url, **DAILY_CAPS))
    async with running_app(app) as client:
        yield client


async def challenge_and_code(
    client: httpx.AsyncClient, national_code: str, mobile: str, seed: int, count: int
) -> tuple[str, str]:
    response = await ask_code(client, national_code, mobile, seed)
    assert response.status_code == 202, response.text
    return response.json()["challenge_id"], await sms_code(client, mobile, count)


async def verify(client: httpx.AsyncClient, challenge_id: str, code: str) -> httpx.Response:
    return await client.post(
        "/api/v1/auth/otp/verify", json={"challenge_id": challenge_id, "code": code}
    )


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


class TestDailyCaps:
    """L2: at most a few codes and a few wrong guesses a day per mobile and per national code."""

    async def test_a_mobile_gets_at_most_the_daily_number_of_codes(
        self, capped_client: httpx.AsyncClient, seed: int, identity_database: str
    ) -> None:
        national_code, mobile = national_code_for(seed), mobile_for(seed)
        statuses = [
            (await ask_code(capped_client, national_code, mobile, seed)).status_code
            for _ in range(3)
        ]
        assert statuses == [202, 202, 202]
        refused = await ask_code(capped_client, national_code, mobile, seed)
        assert refused.status_code == 429
        assert refused.json()["code"] == "otp_rate_limited"
        assert 0 < int(refused.headers["retry-after"]) <= 24 * 3600
        # the counters are keyed hashes: no plain mobile or national code is stored in them
        buckets = await fetch(identity_database, "SELECT bucket FROM identity.rate_limit_counter")
        assert all(
            mobile not in row["bucket"] and national_code not in row["bucket"] for row in buckets
        )

    async def test_a_national_code_gets_at_most_the_daily_number_of_codes_on_any_mobile(
        self, capped_client: httpx.AsyncClient, seed: int
    ) -> None:
        national_code = national_code_for(seed)
        mobiles = [mobile_for(seed * 1000 + i) for i in range(4)]
        statuses = [
            (await ask_code(capped_client, national_code, mobile, seed)).status_code
            for mobile in mobiles
        ]
        assert statuses == [202, 202, 202, 429]

    async def test_wrong_codes_are_capped_per_mobile_even_for_the_right_code(
        self, capped_client: httpx.AsyncClient, seed: int
    ) -> None:
        national_code, mobile = national_code_for(seed), mobile_for(seed)
        challenge_id, code = await challenge_and_code(capped_client, national_code, mobile, seed, 1)
        for _ in range(4):
            assert (await verify(capped_client, challenge_id, wrong(code))).status_code == 400
        # the challenge allows five tries, but the day's four are spent: no more guessing
        capped = await verify(capped_client, challenge_id, code)
        assert capped.status_code == 429
        assert capped.json()["code"] == "otp_rate_limited"
        assert int(capped.headers["retry-after"]) > 0
        # and no new code is sent to be guessed at
        again = await ask_code(capped_client, national_code, mobile, seed)
        assert again.status_code == 429
        assert again.json()["code"] == "otp_rate_limited"

    async def test_wrong_codes_are_capped_per_national_code_across_mobiles(
        self, capped_client: httpx.AsyncClient, seed: int
    ) -> None:
        national_code = national_code_for(seed)
        first, second = mobile_for(seed * 1000 + 1), mobile_for(seed * 1000 + 2)
        challenge_id, code = await challenge_and_code(capped_client, national_code, first, seed, 1)
        for _ in range(4):
            assert (await verify(capped_client, challenge_id, wrong(code))).status_code == 400
        refused = await ask_code(capped_client, national_code, second, seed)
        assert refused.status_code == 429
        assert refused.json()["code"] == "otp_rate_limited"

    async def test_strangers_naming_the_national_code_with_other_mobiles_do_not_lock_out_the_owner(
        self, capped_client: httpx.AsyncClient, seed: int
    ) -> None:
        national_code, mobile = national_code_for(seed), mobile_for(seed)
        for i in range(10):
            # mobiles the registry does not tie to the person: refused, and nothing counted
            stranger = f"0935{seed % 100:02d}{i}0000"
            refused = await ask_code(capped_client, national_code, stranger, seed * 100 + i)
            assert refused.json()["code"] == "mobile_not_owned"
        challenge_id, code = await challenge_and_code(capped_client, national_code, mobile, seed, 1)
        assert (await verify(capped_client, challenge_id, code)).status_code == 200

    async def test_a_successful_login_resets_the_failure_count(
        self, capped_client: httpx.AsyncClient, seed: int
    ) -> None:
        national_code, mobile = national_code_for(seed), mobile_for(seed)
        challenge_id, code = await challenge_and_code(capped_client, national_code, mobile, seed, 1)
        for _ in range(3):  # someone guesses wrong three times of the day's four...
            assert (await verify(capped_client, challenge_id, wrong(code))).status_code == 400
        # ...and the owner still signs in with the code that reached their phone
        assert (await verify(capped_client, challenge_id, code)).status_code == 200
        challenge_id, code = await challenge_and_code(capped_client, national_code, mobile, seed, 2)
        statuses = [
            (await verify(capped_client, challenge_id, wrong(code))).status_code for _ in range(4)
        ]
        assert statuses == [400, 400, 400, 400]  # four fresh tries: the count started again
