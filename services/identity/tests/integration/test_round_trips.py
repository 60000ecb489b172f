"""What a login sends to PostgreSQL: which units of work are one statement without ``BEGIN``,
and which are sent by the driver itself.

Every statement each pooled connection runs is recorded in order, per connection, with
whether it runs inside a transaction (SQLAlchemy's asyncpg adapter sends ``BEGIN`` before the
first statement of a unit of work unless the connection is in autocommit), and each ``COMMIT``;
the units sent by the driver itself (``Database.statement``, ``Database.direct``) from the
driver's own log. Background loops use connections of their own meanwhile, so the order on one
connection is exact.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event

from panjereh.common.testing.queries import DriverLog, driver_queries
from panjereh.identity.testing import mobile_for, national_code_for

pytestmark = pytest.mark.integration


async def ask_code(
    client: httpx.AsyncClient, seed: int, *, mobile: str | None = None
) -> httpx.Response:
    return await client.post(
        "/api/v1/auth/otp",
        json={"national_code": national_code_for(seed), "mobile": mobile or mobile_for(seed)},
        headers={"X-Forwarded-For": f"198.51.{seed // 250}.{seed % 250 + 1}"},
    )


async def sms_delivered(client: httpx.AsyncClient, mobile: str) -> None:
    for _ in range(200):
        response = await client.get("/api/v1/dev/sms-outbox", params={"mobile": mobile})
        if response.json()["items"]:
            return
        await asyncio.sleep(0.025)
    raise AssertionError("no SMS for the mobile after waiting")


def not_in_transaction(verdicts: list[bool]) -> bool:
    """Such statements ran (earlier tests' SMS may still be on their way), none in a
    transaction."""
    return bool(verdicts) and not any(verdicts)


async def login(
    client: httpx.AsyncClient, seed: int, *, mobile: str | None = None
) -> dict[str, Any]:
    """A complete login (the first one of ``seed``'s person registers them); the token pair."""
    mobile = mobile or mobile_for(seed)
    challenge = (await ask_code(client, seed, mobile=mobile)).json()
    await sms_delivered(client, mobile)
    items = (await client.get("/api/v1/dev/sms-outbox", params={"mobile": mobile})).json()
    response = await client.post(
        "/api/v1/auth/otp/verify",
        json={"challenge_id": challenge["challenge_id"], "code": items["items"][0]["tokens"][0]},
    )
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


@dataclass
class Queries:
    """What each connection ran, in order: (statement or ``COMMIT``, inside a transaction);
    through SQLAlchemy (``sent``) and by the driver itself (``driver``: the units of
    ``Database.statement`` and ``Database.direct``)."""

    sent: dict[int, list[tuple[str, bool]]] = field(default_factory=dict)
    driver: DriverLog = field(default_factory=DriverLog)

    def record(self, connection: Any, statement: str, *, transactional: bool) -> None:
        self.sent.setdefault(id(connection), []).append(
            (" ".join(statement.split()), transactional)
        )

    async def settled(self) -> Queries:
        """These queries once the driver has reported what it sent so far."""
        await self.driver.settled()
        return self

    def through_sessions(self, fragment: str) -> list[str]:
        """The statements containing ``fragment`` that SQLAlchemy sent (an ORM session's)."""
        return [
            statement
            for queries in self.sent.values()
            for statement, _ in queries
            if fragment in statement
        ]

    def in_transaction(self, fragment: str) -> list[bool]:
        """For each statement containing ``fragment``: whether it ran in a transaction."""
        return [
            transactional
            for queries in self.sent.values()
            for statement, transactional in queries
            if fragment in statement
        ] + self.driver.in_transaction(fragment)

    def around(self, fragment: str) -> list[tuple[str | None, str, str | None]]:
        """Each statement containing ``fragment``, with what ran before and after it there."""
        found = []
        for queries in [*self.sent.values(), *self.driver.sent.values()]:
            statements = [statement for statement, _ in queries]
            for index, statement in enumerate(statements):
                if fragment in statement:
                    before = statements[index - 1] if index else None
                    after = statements[index + 1] if index + 1 < len(statements) else None
                    found.append((before, statement, after))
        return found


@pytest.fixture
def queries(app: FastAPI) -> Iterator[Queries]:
    recorded = Queries()
    engine = app.state.database.engine.sync_engine

    def before_execute(connection: Any, cursor: Any, statement: str, *_: Any) -> None:
        adapted = connection.connection.dbapi_connection
        recorded.record(adapted, statement, transactional=not adapted.autocommit)

    def on_commit(connection: Any) -> None:
        adapted = connection.connection.dbapi_connection
        if not adapted.autocommit:
            recorded.record(adapted, "COMMIT", transactional=True)

    event.listen(engine, "before_cursor_execute", before_execute)
    event.listen(engine, "commit", on_commit)
    try:
        with driver_queries(app.state.database, recorded.driver):
            yield recorded
    finally:
        event.remove(engine, "before_cursor_execute", before_execute)
        event.remove(engine, "commit", on_commit)


class TestOneStatementUnits:
    async def test_an_otp_requests_address_count_commits_by_itself(
        self, client: httpx.AsyncClient, queries: Queries, seed: int
    ) -> None:
        response = await ask_code(client, seed)
        assert response.status_code == 202, response.text
        # the per-address counter row is locked only while its statement runs, and its commit
        # does not wait for the WAL flush (the row is not held across an fsync)
        await queries.settled()
        assert not_in_transaction(queries.in_transaction("WITH by_address AS"))
        [(_, counted, _)] = queries.around("WITH by_address AS")
        assert "set_config('synchronous_commit', 'off', true)" in counted

    async def test_the_dev_outbox_is_read_without_a_transaction(
        self, client: httpx.AsyncClient, queries: Queries, seed: int
    ) -> None:
        response = await client.get("/api/v1/dev/sms-outbox", params={"mobile": mobile_for(seed)})
        assert response.status_code == 200, response.text
        await queries.settled()
        assert not_in_transaction(queries.in_transaction("FROM identity.dev_sms"))

    async def test_a_code_sent_is_stored_and_recorded_by_one_statement_each(
        self, client: httpx.AsyncClient, queries: Queries, seed: int
    ) -> None:
        mobile = mobile_for(seed)
        response = await ask_code(client, seed)
        assert response.status_code == 202, response.text
        await sms_delivered(client, mobile)
        for _ in range(100):  # the send is recorded just after the console stored it
            if queries.in_transaction("UPDATE identity.sms_message SET"):
                break
            await asyncio.sleep(0.01)
        await queries.settled()
        assert not_in_transaction(queries.in_transaction("INSERT INTO identity.dev_sms"))
        assert not_in_transaction(queries.in_transaction("UPDATE identity.sms_message SET"))
        # the mark's commit does not wait for the WAL flush (a lost mark sends again; the
        # setting's name is a bound value); the console's store, standing for the provider's
        # acceptance, does
        [(_, marked, _)] = queries.around("UPDATE identity.sms_message SET")
        assert "set_config(" in marked
        [(_, stored, _)] = queries.around("INSERT INTO identity.dev_sms")
        assert "set_config(" not in stored

    async def test_an_otp_request_stores_its_code_in_the_statement_that_counts_it(
        self, client: httpx.AsyncClient, queries: Queries, seed: int
    ) -> None:
        response = await ask_code(client, seed)
        assert response.status_code == 202, response.text
        await queries.settled()
        # the per-mobile lock, the checks under it, the counts, the challenge and its SMS: one
        # statement that commits by itself (no BEGIN, no COMMIT, no round trip under the lock)
        [(_, stored, _)] = queries.around("INSERT INTO identity.otp_challenge")
        assert "pg_advisory_xact_lock" in stored
        assert "otp_send_state" in stored
        assert not_in_transaction(queries.in_transaction("INSERT INTO identity.otp_challenge"))

    async def test_the_profile_and_the_ended_sessions_are_read_without_a_transaction(
        self, client: httpx.AsyncClient, queries: Queries, seed: int
    ) -> None:
        tokens = await login(client, seed)
        profile = await client.get(
            "/api/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
        assert profile.status_code == 200, profile.text
        ended = await client.get("/.well-known/revoked-sessions")
        assert ended.status_code == 200, ended.text
        await queries.settled()
        assert not_in_transaction(queries.in_transaction("FROM identity.citizen WHERE"))
        assert not_in_transaction(queries.in_transaction("SELECT identity.staff_role.role"))
        assert not_in_transaction(queries.in_transaction("FROM identity.refresh_token_family"))

    async def test_a_first_login_registers_with_its_event_and_session_in_one_statement(
        self, client: httpx.AsyncClient, queries: Queries, seed: int
    ) -> None:
        """The registration is the unit's only write: sent without a transaction, it
        commits by itself (no ``BEGIN``, no ``COMMIT``)."""
        mobile = mobile_for(seed)
        challenge = (await ask_code(client, seed)).json()
        await sms_delivered(client, mobile)
        items = (await client.get("/api/v1/dev/sms-outbox", params={"mobile": mobile})).json()
        response = await client.post(
            "/api/v1/auth/otp/verify",
            json={
                "challenge_id": challenge["challenge_id"],
                "code": items["items"][0]["tokens"][0],
            },
        )
        assert response.status_code == 200, response.text
        await queries.settled()
        [(_, registration, after)] = queries.around("INSERT INTO identity.citizen")
        assert "INSERT INTO identity.outbox_message" in registration
        assert "INSERT INTO identity.refresh_token_family" in registration
        assert not_in_transaction(queries.in_transaction("INSERT INTO identity.citizen"))
        assert after != "COMMIT"


#: what a login's units of work read, write and lock (the per-mobile lock)
LOGIN_STATEMENTS = (
    "identity.otp_challenge",
    "identity.rate_limit_counter",
    "identity.citizen",
    "identity.outbox_message",
    "identity.refresh_token",
    "pg_advisory_xact_lock(hashtextextended",
)


def is_backlog_gauge(statement: str) -> bool:
    """The outbox relay's count of unsent rows (``OutboxRelay.measure``), not a login's."""
    return statement.startswith("SELECT count(*)") and "outbox_message.sent_at IS NULL" in statement


class TestUnitsSentByTheDriver:
    async def test_a_first_and_a_returning_login_send_no_statement_through_a_session(
        self, client: httpx.AsyncClient, queries: Queries, seed: int
    ) -> None:
        await login(client, seed)
        # the same person again, from another mobile (the first one is in its cooldown)
        await login(client, seed, mobile=mobile_for(seed + 70_000))
        await queries.settled()
        # the housekeeping's deletes (a session's) and the outbox relay's backlog gauge (a
        # count of the unsent rows, on the relay's own timer) may run meanwhile
        sent = [
            statement
            for fragment in LOGIN_STATEMENTS
            for statement in queries.through_sessions(fragment)
            if not statement.startswith("DELETE") and not is_backlog_gauge(statement)
        ]
        assert sent == []
        # a right code to a live challenge: read without a lock, then spent by a statement
        # that takes the mobile's lock and commits by itself, at both logins
        assert queries.in_transaction("FOR UPDATE OF otp_challenge") == []
        assert queries.in_transaction("UPDATE identity.otp_challenge SET consumed_at") == [
            False,
            False,
        ]

    async def test_a_returning_login_records_itself_and_its_session_in_one_statement(
        self, client: httpx.AsyncClient, queries: Queries, seed: int
    ) -> None:
        await login(client, seed)
        await login(client, seed, mobile=mobile_for(seed + 70_000))
        await queries.settled()
        # the code spent by a statement that commits by itself, then the login and its
        # session by another (the code is given back if that one fails)
        [(before, signed_in, after)] = queries.around("UPDATE identity.citizen SET mobile")
        assert before is not None
        assert "UPDATE identity.otp_challenge SET consumed_at" in before
        assert "pg_advisory_xact_lock" in before
        assert "INSERT INTO identity.refresh_token_family" in signed_in
        assert after != "COMMIT"
        assert not_in_transaction(queries.in_transaction("UPDATE identity.citizen SET mobile"))
