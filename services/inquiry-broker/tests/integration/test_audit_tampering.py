"""An insider with the database owner's credentials cannot rewrite the audit log unnoticed.

The attacker knows the chain's rule and recomputes every hash it can; what it cannot compute
is the chain's keyed MAC (the key is the broker's, not the database's) nor a checkpoint signed
with the broker's key. ``/audit/verify`` catches a rewritten entry, a deleted one and a
truncated tail; a checkpoint verifies against the broker's published JWKS.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client import REGISTRY

from panjereh.common import jwk
from panjereh.common.messaging.kafka import create_topics
from panjereh.common.testing.plugin import MigratedDatabase, running_app
from panjereh.common.testing.tokens import TokenFactory, bearer
from panjereh.contracts.topics import PLATFORM_TOPICS
from panjereh.inquiry_broker.audit import GENESIS, HASHED_FIELDS, entry_hash
from panjereh.inquiry_broker.config import Settings
from panjereh.inquiry_broker.main import create_app

pytestmark = pytest.mark.integration

ENTRIES = 5
LATEST = "/api/v1/audit/checkpoints/latest"


def libpq(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def rechain(url: str, *, change: str | None = None) -> None:
    """What the insider does: edit a row, then recompute every hash by the (unkeyed) rule."""
    connection = await asyncpg.connect(libpq(url))
    try:
        async with connection.transaction():
            rows = await connection.fetch("SELECT seq FROM inquiry_broker.audit_entry ORDER BY seq")
            if change is not None:
                await connection.execute(
                    "UPDATE inquiry_broker.audit_entry SET service_code = $1 WHERE seq = $2",
                    change,
                    rows[1]["seq"],
                )
            prev = GENESIS
            for row in await connection.fetch(
                "SELECT * FROM inquiry_broker.audit_entry ORDER BY seq"
            ):
                fields: dict[str, Any] = {name: row[name] for name in HASHED_FIELDS}
                recomputed = entry_hash(prev, fields)
                await connection.execute(
                    "UPDATE inquiry_broker.audit_entry SET prev_hash = $1, entry_hash = $2 "
                    "WHERE seq = $3",
                    prev,
                    recomputed,
                    row["seq"],
                )
                prev = recomputed
    finally:
        await connection.close()


async def truncate(url: str, keep: int) -> None:
    connection = await asyncpg.connect(libpq(url))
    try:
        await connection.execute(
            "DELETE FROM inquiry_broker.audit_entry WHERE seq > "
            f"(SELECT seq FROM inquiry_broker.audit_entry ORDER BY seq OFFSET {keep - 1} LIMIT 1)"
        )
    finally:
        await connection.close()


async def refused_attempts(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    """Refused inquiries: one audit entry each, no agency needed."""
    for n in range(ENTRIES):
        response = await client.post(
            "/api/v1/inquiries",
            headers=headers,
            json={
                "type": "tax.clearance",
                "subject": "0499370899",
                "purpose": {"service_code": f"S-{n}", "tracking_code": "1"},
            },
        )
        assert response.status_code == 403, response.text


async def checkpoint_of(client: httpx.AsyncClient, count: int) -> dict[str, Any]:
    """The published checkpoint once it covers ``count`` entries (the worker runs often)."""
    async with asyncio.timeout(15):
        while True:
            response = await client.get(LATEST)
            if response.status_code == 200 and response.json()["count"] == count:
                body: dict[str, Any] = response.json()
                return body
            await asyncio.sleep(0.05)


@pytest.fixture
async def broker(
    migrated_database: MigratedDatabase,
    kafka_bootstrap_servers: str,
    token_factory: TokenFactory,
    jwks_url: str,
) -> Any:
    url = await migrated_database("panjereh.inquiry_broker")
    await create_topics(kafka_bootstrap_servers, PLATFORM_TOPICS)
    settings = Settings(
        database_url=url,
        kafka_bootstrap_servers=kafka_bootstrap_servers,
        kafka_idempotence=False,
        jwks_url=jwks_url,
        environment="test",
        subject_hash_key=secrets.token_urlsafe(32),
        audit_checkpoint_interval_seconds=0.05,
        run_consumers=False,  # the checkpoints are signed on every replica
    )
    admin = bearer(token_factory(roles=["platform-admin"], national_code="0499370899"))
    caller = bearer(
        token_factory(
            roles=["client:police"], agency="police", national_code=None, scopes=["inquiries"]
        )
    )
    async with running_app(create_app(settings)) as client:
        await refused_attempts(client, caller)
        yield url, client, admin


def audit_failures_counted() -> float:
    return REGISTRY.get_sample_value("panjereh_audit_verification_failures_total") or 0.0


class TestTampering:
    async def test_a_rewritten_entry_is_caught_though_every_hash_was_recomputed(
        self, broker: Any
    ) -> None:
        url, client, admin = broker
        await rechain(url, change="S-forged")
        failures_before = audit_failures_counted()
        body = (await client.get("/api/v1/audit/verify", headers=admin)).json()
        assert body["valid"] is False
        assert body["first_broken"]["problem"] == "content_changed"
        # and the operators' alert (panjereh_audit_verification_failures_total) sees it (the
        # checkpointer, refusing to sign the rewritten chain, may count it too)
        assert audit_failures_counted() >= failures_before + 1

    async def test_an_entry_deleted_in_the_middle_is_caught(self, broker: Any) -> None:
        url, client, admin = broker
        await checkpoint_of(client, ENTRIES)
        connection = await asyncpg.connect(libpq(url))
        try:
            third = await connection.fetchval(
                "SELECT seq FROM inquiry_broker.audit_entry ORDER BY seq OFFSET 2 LIMIT 1"
            )
            await connection.execute("DELETE FROM inquiry_broker.audit_entry WHERE seq = $1", third)
        finally:
            await connection.close()
        body = (await client.get("/api/v1/audit/verify", headers=admin)).json()
        assert body["valid"] is False
        assert body["first_broken"]["problem"] == "chain_broken"
        assert body["first_broken"]["seq"] > third
        assert body["checkpoint"]["problem"] == "count_changed"
        # the insider also recomputes every hash after the gap: still caught
        await rechain(url)
        rechained = (await client.get("/api/v1/audit/verify", headers=admin)).json()
        assert rechained["valid"] is False
        assert rechained["first_broken"]["problem"] == "content_changed"
        assert rechained["checkpoint"]["problem"] == "head_changed"

    async def test_a_truncated_tail_is_caught_against_the_last_checkpoint(
        self, broker: Any
    ) -> None:
        url, client, admin = broker
        published = await checkpoint_of(client, ENTRIES)
        await truncate(url, keep=3)
        await asyncio.sleep(0.3)  # several rounds of the checkpoint worker (every 0.05 s)
        # the broker does not sign the shorter chain: that would vouch for the cut
        latest = (await client.get(LATEST)).json()
        assert (latest["seq"], latest["count"]) == (published["seq"], ENTRIES)
        stored = (await client.get("/api/v1/audit/verify", headers=admin)).json()
        # the insider also removes the stored checkpoints: the auditor's own copy still tells
        connection = await asyncpg.connect(libpq(url))
        try:
            await connection.execute("DELETE FROM inquiry_broker.audit_checkpoint")
        finally:
            await connection.close()
        without = (await client.get("/api/v1/audit/verify", headers=admin)).json()
        supplied = (
            await client.post(
                "/api/v1/audit/verify", headers=admin, json={"checkpoint": published["jws"]}
            )
        ).json()
        assert stored["first_broken"] is None  # what is left is a valid, shorter chain
        assert stored["valid"] is False
        assert stored["checkpoint"]["problem"] == "truncated"
        assert stored["checkpoint"]["source"] == "stored"
        assert without["valid"] is True  # nothing in the database to compare with...
        assert supplied["valid"] is False  # ...but the auditor kept one
        assert supplied["checkpoint"]["problem"] == "truncated"
        assert supplied["checkpoint"]["source"] == "supplied"

    async def test_a_forged_checkpoint_is_refused(self, broker: Any) -> None:
        _url, client, admin = broker
        published = await checkpoint_of(client, ENTRIES)
        forged = jwk.sign_compact(
            jwk.generate_private_key(),
            {"typ": "audit-checkpoint+jws"},
            {**jwk.verify_compact(published["jws"], await self.keys(client))[1], "count": 3},
        )
        response = await client.post(
            "/api/v1/audit/verify", headers=admin, json={"checkpoint": forged}
        )
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "checkpoint_invalid"

    async def test_an_untouched_log_verifies_against_its_checkpoint(self, broker: Any) -> None:
        _url, client, admin = broker
        published = await checkpoint_of(client, ENTRIES)
        body = (await client.get("/api/v1/audit/verify", headers=admin)).json()
        assert body["valid"] is True, body
        assert body["checked"] == ENTRIES
        assert body["checkpoint"]["problem"] is None
        assert body["checkpoint"]["seq"] == published["seq"]

    async def test_the_checkpoint_verifies_against_the_published_keys(self, broker: Any) -> None:
        _url, client, _admin = broker
        published = await checkpoint_of(client, ENTRIES)
        header, payload = jwk.verify_compact(published["jws"], await self.keys(client))
        assert header["typ"] == "audit-checkpoint+jws"
        issued_at = datetime.fromisoformat(payload.pop("issued_at"))
        assert issued_at == datetime.fromisoformat(published["issued_at"])
        assert payload == {
            "log": "panjereh.inquiry-broker.audit",
            "seq": published["seq"],
            "head": published["head"],
            "count": ENTRIES,
        }
        assert len(payload["head"]) == 64

    @staticmethod
    async def keys(client: httpx.AsyncClient) -> dict[str, Any]:
        document: dict[str, Any] = (await client.get("/api/v1/inquiry-types/keys")).json()
        return document
