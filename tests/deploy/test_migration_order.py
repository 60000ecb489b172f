"""Migrations complete before new pods serve: sync waves for Argo CD, and a schema gate in
every service pod that holds it until the schema is at its image's head."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from alembic.script import ScriptDirectory

from panjereh.common.db import ensure_databases
from panjereh.common.migrations import alembic_config, upgrade
from panjereh.devstack.stack import SERVICES
from tests.deploy.conftest import DEPLOY
from tests.deploy.test_manifests import env_of

GATE = DEPLOY / "k8s" / "base" / "platform" / "schema_gate.py"


def wave(doc) -> int:
    return int(doc["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", "0"))


def load_gate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("schema_gate", GATE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["schema_gate"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("component", SERVICES, ids=lambda component: component.name)
class TestOrdering:
    def test_database_then_migration_then_deployment(self, overlay, component):
        job = overlay.named("Job", f"{component.name}-migrate")
        deployment = overlay.named("Deployment", component.name)
        cluster = overlay.named("Cluster", f"{component.name}-db")
        pooler = overlay.named("Pooler", f"{component.name}-db-pooler")
        assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "Sync"
        assert wave(cluster) < wave(job) < wave(deployment)
        assert wave(pooler) < wave(job)

    def test_every_pod_waits_for_its_schema_first(self, overlay, component):
        spec = overlay.named("Deployment", component.name)["spec"]["template"]["spec"]
        (gate,) = spec["initContainers"]
        main = spec["containers"][0]
        assert gate["image"] == main["image"]
        python, script, package, variable = gate["command"]
        assert (python, Path(script).name, package) == ("python", GATE.name, component.package)
        # the same database, as the same login role, as the service itself
        assert env_of(gate)[variable] == env_of(main)[variable]
        mounted = {mount["mountPath"]: mount["name"] for mount in gate["volumeMounts"]}
        volume = next(v for v in spec["volumes"] if v["name"] == mounted[str(Path(script).parent)])
        config = overlay.named("ConfigMap", volume["configMap"]["name"])
        assert config["data"][GATE.name] == GATE.read_text()


class TestVerdict:
    def test_the_gate_opens_only_at_the_head_or_beyond(self):
        gate = load_gate()
        plan = gate.Plan(
            package="p",
            schema="s",
            database_url="u",
            heads=frozenset({"c"}),
            known=frozenset({"a", "b", "c"}),
        )
        assert gate.verdict(plan, frozenset()) is not None
        assert gate.verdict(plan, frozenset({"b"})) is not None
        assert gate.verdict(plan, frozenset({"c"})) is None
        # a newer release migrated it: this (older) image still works, additive first
        assert gate.verdict(plan, frozenset({"d"})) is None


@pytest.mark.integration
async def test_the_gate_waits_for_the_migration_on_a_real_database(postgres_server, tmp_path):
    gate = load_gate()
    package = "panjereh.catalog"
    name = f"gate_{tmp_path.name[-8:].replace('-', '_').lower()}"
    await ensure_databases(postgres_server.admin_url, [name])
    url = postgres_server.url(name)
    plan = gate.plan([package, "THE_URL"], {"THE_URL": url})
    assert plan.schema

    # nothing migrated yet: the gate holds, and gives up when its time is over
    assert await gate.current_revisions(plan) == frozenset()
    assert await gate.wait(plan, give_up_after=0.2, retry=0.05) is False

    # one revision short of the head: still holds
    script = ScriptDirectory.from_config(alembic_config(package, url))
    (head,) = script.get_heads()
    previous = script.get_revision(head).down_revision
    assert isinstance(previous, str)
    await asyncio.to_thread(upgrade, package, url, previous)
    assert gate.verdict(plan, await gate.current_revisions(plan)) is not None

    # the migration finishes while the gate waits: it opens
    waiting = asyncio.create_task(gate.wait(plan, give_up_after=30, retry=0.05))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await asyncio.to_thread(upgrade, package, url)
    assert await asyncio.wait_for(waiting, 30) is True

    assert await gate.current_revisions(plan) == frozenset({head})
