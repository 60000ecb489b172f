"""``GET /api/v1/audit/verify`` names the first audit entry changed directly in SQL."""

from __future__ import annotations

import asyncpg
import pytest

from panjereh.common.messaging.kafka import create_topics
from panjereh.common.testing.plugin import MigratedDatabase, running_app
from panjereh.common.testing.tokens import TokenFactory, bearer
from panjereh.contracts.topics import PLATFORM_TOPICS
from panjereh.inquiry_broker.config import Settings
from panjereh.inquiry_broker.main import create_app

pytestmark = pytest.mark.integration


async def test_a_row_changed_in_sql_is_named_by_verify(
    migrated_database: MigratedDatabase,
    kafka_bootstrap_servers: str,
    token_factory: TokenFactory,
    jwks_url: str,
) -> None:
    url = await migrated_database("panjereh.inquiry_broker")
    await create_topics(kafka_bootstrap_servers, PLATFORM_TOPICS)
    settings = Settings(
        database_url=url,
        kafka_bootstrap_servers=kafka_bootstrap_servers,
        kafka_idempotence=False,
        jwks_url=jwks_url,
        environment="test",
        subject_hash_key="k7f3a9c1eB2d4F6h8J0kL3m5N7p9Q1r",
    )
    admin = bearer(token_factory(roles=["platform-admin"], national_code="0499370899"))
    caller = bearer(
        token_factory(
            roles=["client:police"], agency="police", national_code=None, scopes=["inquiries"]
        )
    )
    async with running_app(create_app(settings)) as client:
        for n in range(4):  # four refused attempts: four audit entries, no agency needed
            response = await client.post(
                "/api/v1/inquiries",
                headers=caller,
                json={
                    "type": "tax.clearance",
                    "subject": "0499370899",
                    "purpose": {"service_code": f"S-{n}", "tracking_code": "1"},
                },
            )
            assert response.status_code == 403
        intact = await client.get("/api/v1/audit/verify", headers=admin)
        assert intact.json() == {
            "valid": True,
            "checked": 4,
            "first_broken": None,
            "checkpoint": None,  # none issued yet (every minute by default)
        }

        connection = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql", 1))
        try:
            third = await connection.fetchrow(
                "SELECT seq, id FROM inquiry_broker.audit_entry ORDER BY seq OFFSET 2 LIMIT 1"
            )
            await connection.execute(
                "UPDATE inquiry_broker.audit_entry SET service_code = 'S-x' WHERE seq = $1",
                third["seq"],
            )
        finally:
            await connection.close()
        broken = await client.get("/api/v1/audit/verify", headers=admin)
        forbidden = await client.get("/api/v1/audit/verify", headers=caller)
    body = broken.json()
    assert body["valid"] is False
    assert body["first_broken"]["seq"] == third["seq"]
    assert body["first_broken"]["id"] == str(third["id"])
    assert body["first_broken"]["problem"] == "content_changed"
    assert forbidden.status_code == 403
