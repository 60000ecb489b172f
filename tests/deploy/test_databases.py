"""PostgreSQL on CloudNativePG: one cluster per service database, pooled, backed up."""

from __future__ import annotations

import pytest
from panjereh.devstack.stack import SERVICES

BARMAN_PLUGIN = "barman-cloud.cloudnative-pg.io"

pytestmark = pytest.mark.parametrize("component", SERVICES, ids=lambda component: component.name)


class TestDatabases:
    def test_prod_runs_three_instances_with_a_synchronous_standby(self, prod, component):
        cluster = prod.named("Cluster", f"{component.name}-db")["spec"]
        assert cluster["instances"] == 3
        assert cluster["postgresql"]["synchronous"]["number"] >= 1
        assert cluster["bootstrap"]["initdb"]["database"] == component.database
        assert cluster["enableSuperuserAccess"] is False
        assert cluster["affinity"]["enablePodAntiAffinity"] is True

    def test_prod_archives_wal_and_takes_scheduled_backups(self, prod, component):
        cluster = prod.named("Cluster", f"{component.name}-db")["spec"]
        (plugin,) = cluster["plugins"]
        assert plugin["name"] == BARMAN_PLUGIN
        assert plugin["isWALArchiver"] is True
        store = prod.named("ObjectStore", plugin["parameters"]["barmanObjectName"])["spec"]
        credentials = store["configuration"]["s3Credentials"]
        for reference in credentials.values():
            assert set(reference) == {"name", "key"}  # a secret reference, never a value
        assert store["retentionPolicy"]
        schedules = [
            backup
            for backup in prod.of_kind("ScheduledBackup")
            if backup["spec"]["cluster"]["name"] == f"{component.name}-db"
        ]
        assert len(schedules) == 1
        assert schedules[0]["spec"]["method"] == "plugin"
        assert schedules[0]["spec"]["pluginConfiguration"]["name"] == BARMAN_PLUGIN

    def test_a_pgbouncer_pooler_fronts_the_primary(self, overlay, component):
        pooler = overlay.named("Pooler", f"{component.name}-db-pooler")["spec"]
        assert pooler["cluster"]["name"] == f"{component.name}-db"
        assert pooler["type"] == "rw"
        assert pooler["pgbouncer"]["poolMode"] == "transaction"
        # asyncpg prepares statements: PgBouncer must track them in transaction mode
        assert int(pooler["pgbouncer"]["parameters"]["max_prepared_statements"]) > 0

    def test_the_service_uses_the_application_secret_of_its_cluster(self, overlay, component):
        deployment = overlay.named("Deployment", component.name)
        env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        refs = {
            item["name"]: item["valueFrom"]["secretKeyRef"]
            for item in env
            if "secretKeyRef" in item.get("valueFrom", {})
        }
        assert refs["DATABASE_PASSWORD"] == {"name": f"{component.name}-db-app", "key": "password"}
        assert refs["DATABASE_USER"] == {"name": f"{component.name}-db-app", "key": "username"}
