"""PostgreSQL on CloudNativePG: one cluster per service database, pooled, backed up."""

from __future__ import annotations

import importlib

import pytest

from panjereh.common.db import Database
from panjereh.devstack.stack import SERVICES

BARMAN_PLUGIN = "barman-cloud.cloudnative-pg.io"


@pytest.mark.parametrize("component", SERVICES, ids=lambda component: component.name)
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

    def test_migrations_run_as_the_owner_from_its_secret(self, overlay, component):
        job = overlay.named("Job", f"{component.name}-migrate")
        refs = secret_refs(job)
        assert refs["PGPASSWORD"] == {"name": f"{component.name}-db-app", "key": "password"}
        assert refs["DATABASE_USER"] == {"name": f"{component.name}-db-app", "key": "username"}

    def test_the_service_logs_in_with_a_secret_of_its_cluster(self, overlay, component):
        refs = secret_refs(overlay.named("Deployment", component.name))
        cluster = overlay.named("Cluster", f"{component.name}-db")["spec"]
        managed = {
            role["passwordSecret"]["name"]: role["name"]
            for role in cluster.get("managed", {}).get("roles", [])
        }
        secret = refs["PGPASSWORD"]["name"]
        assert refs["DATABASE_USER"]["name"] == secret
        assert secret == f"{component.name}-db-app" or secret in managed


def secret_refs(workload):
    env = workload["spec"]["template"]["spec"]["containers"][0]["env"]
    return {
        item["name"]: item["valueFrom"]["secretKeyRef"]
        for item in env
        if "secretKeyRef" in item.get("valueFrom", {})
    }


def test_the_inquiry_broker_runs_as_a_role_the_audit_log_is_append_only_for(prod):
    cluster = prod.named("Cluster", "inquiry-broker-db")["spec"]
    (role,) = cluster["managed"]["roles"]
    assert role["login"] is True
    assert role["name"] != cluster["bootstrap"]["initdb"]["owner"]
    sql = " ".join(cluster["bootstrap"]["initdb"]["postInitApplicationSQL"])
    assert f"CREATE ROLE {role['name']} LOGIN" in sql
    assert f"ON TABLES TO {role['name']}" in sql
    config = prod.named("ConfigMap", "inquiry-broker-config")["data"]
    assert config["PANJEREH_INQUIRY_BROKER_AUDIT_APPEND_ONLY_ROLE"] == role["name"]
    refs = secret_refs(prod.named("Deployment", "inquiry-broker"))
    assert refs["DATABASE_USER"]["name"] == role["passwordSecret"]["name"]


#: connections CloudNativePG, replication and a migration keep for themselves (est.)
RESERVED_CONNECTIONS = 10


@pytest.mark.parametrize("component", SERVICES, ids=lambda component: component.name)
def test_connections_fit_the_poolers_and_postgresql_at_full_scale(overlay, component):
    """At the HPA's maxReplicas every pod's pool fits the poolers, and the poolers' server
    connections (plus the broker's direct LISTEN sessions) fit max_connections: see
    docs/capacity.md, "Connection budgets"."""
    settings = importlib.import_module(f"{component.package}.config").Settings
    config = overlay.named("ConfigMap", f"{component.name}-config")["data"]
    pool_size = int(config[f"{settings.model_config['env_prefix']}DATABASE_POOL_SIZE"])
    database = Database("postgresql+asyncpg://budget@nowhere/none", pool_size=pool_size)
    pool = database.engine.sync_engine.pool
    per_pod = pool.size() + pool._max_overflow  # the pool and its overflow
    pods = overlay.named("HorizontalPodAutoscaler", component.name)["spec"]["maxReplicas"]
    pooler = overlay.named("Pooler", f"{component.name}-db-pooler")["spec"]
    parameters = pooler["pgbouncer"]["parameters"]
    assert pods * per_pod <= pooler["instances"] * int(parameters["max_client_conn"])
    cluster = overlay.named("Cluster", f"{component.name}-db")["spec"]
    server = pooler["instances"] * int(parameters["default_pool_size"])
    container = overlay.named("Deployment", component.name)["spec"]["template"]["spec"][
        "containers"
    ][0]
    # one direct session per pod for LISTEN (the broker), beside the pooled ones
    listens = any(item["name"].endswith("_LISTEN_DATABASE_URL") for item in container["env"])
    direct = pods if listens else 0
    limit = int(cluster["postgresql"]["parameters"]["max_connections"])
    assert server + direct + RESERVED_CONNECTIONS <= limit
