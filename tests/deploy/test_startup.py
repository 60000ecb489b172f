"""Every workload of every overlay starts: its settings and entry point, from its real environment.

Rendering and schema validation prove the manifests are well formed, not that the processes
they describe start. Here each container's environment is assembled the way the kubelet does
(ConfigMaps and Secrets through ``envFrom``, then ``env`` with ``$(VAR)`` expansion; Secret
values are strong dummies, the database password full of URL-reserved characters), and the
component's real ``Settings`` and app, or Job entry point, are built from it in a separate
process (``tests/deploy/boot.py``) without serving or connecting.
"""

from __future__ import annotations

import copy
import importlib
import json
import re
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from panjereh.common.jwk import generate_private_key, private_pem
from tests.deploy.conftest import REPO_ROOT, Rendered

DOCKERFILES = REPO_ROOT / "deploy" / "docker"
#: a rotated password may hold any of these; the URL the process builds must survive them
DATABASE_PASSWORD = "Rot@ted/pa:ss#w%rd?" + secrets.token_urlsafe(12)
_VARIABLE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)|\$\$")


class Unstartable(Exception):
    """The kubelet itself would refuse to create the container (a missing ConfigMap key...)."""


@dataclass
class DummySecrets:
    """What the operators and the README's secrets table put in each Secret."""

    values: dict[tuple[str, str], str] = field(default_factory=dict)

    def value(self, secret: str, key: str) -> str:
        if (secret, key) not in self.values:
            self.values[secret, key] = self._invent(key)
        return self.values[secret, key]

    def for_settings(self, secret: str, settings: type[Any] | None) -> dict[str, str]:
        """A ``secretRef`` Secret: every secret field of the component's settings."""
        if settings is None:
            return {}
        prefix = settings.model_config.get("env_prefix", "")
        return {
            f"{prefix}{name.upper()}": self.value(secret, f"{prefix}{name.upper()}")
            for name, info in settings.model_fields.items()
            if info.validation_alias is None and _is_secret(info.annotation)
        }

    @staticmethod
    def _invent(key: str) -> str:
        lowered = key.lower()
        if "pem" in lowered or "private" in lowered:
            return private_pem(generate_private_key())
        if lowered == "username":
            return "app_owner"
        if lowered == "password":
            return DATABASE_PASSWORD
        return secrets.token_urlsafe(32)


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or SecretStr in getattr(annotation, "__args__", ())


def expand(value: str, env: dict[str, str]) -> str:
    """The kubelet's ``$(VAR)`` expansion: defined names only, ``$$`` is a literal ``$``."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VARIABLE.sub(replace, value)


def _config_map(overlay: Rendered, name: str, *, optional: bool) -> dict[str, str]:
    found = [doc for doc in overlay.of_kind("ConfigMap") if doc["metadata"]["name"] == name]
    if not found:
        if optional:
            return {}
        raise Unstartable(f"ConfigMap {name} does not exist in the overlay")
    data: dict[str, str] = found[0].get("data", {})
    return data


def container_env(
    overlay: Rendered, container: dict[str, Any], settings: type[Any] | None, dummy: DummySecrets
) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            ref = source["configMapRef"]
            data = _config_map(overlay, ref["name"], optional=ref.get("optional", False))
        else:
            data = dummy.for_settings(source["secretRef"]["name"], settings)
        env.update({prefix + key: value for key, value in data.items()})
    for item in container.get("env", []):
        name = item["name"]
        if "value" in item:
            env[name] = expand(item["value"], env)
            continue
        source = item.get("valueFrom", {})
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            env[name] = dummy.value(ref["name"], ref["key"])
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            data = _config_map(overlay, ref["name"], optional=ref.get("optional", False))
            if ref["key"] not in data:
                if ref.get("optional"):
                    continue
                raise Unstartable(f"ConfigMap {ref['name']} has no key {ref['key']}")
            env[name] = data[ref["key"]]
        elif "fieldRef" in source or "resourceFieldRef" in source:
            env[name] = "from-the-pod"
        else:
            env[name] = ""
    return env


def _image_command(image: str) -> list[str] | None:
    """The image's CMD from its Dockerfile; None for images the platform does not build."""
    found = re.search(r"(?:^|/)panjereh/([a-z-]+)(?:[:@]|$)", image)
    if found is None:
        return None
    dockerfile = DOCKERFILES / f"{found.group(1)}.Dockerfile"
    cmd = re.findall(r"^CMD (\[.*\])$", dockerfile.read_text(), flags=re.MULTILINE)
    command: list[str] = json.loads(cmd[-1])
    return command


def entry_of(overlay: Rendered, container: dict[str, Any], workdir: Path) -> dict[str, Any] | None:
    command = container.get("command") or _image_command(container["image"])
    if command is None:
        return None
    argv = [*command, *container.get("args", [])]
    if argv[0] == "uvicorn" and "--factory" in argv:
        return {"kind": "factory", "target": argv[1]}
    if argv[:2] == ["python", "-m"] and argv[2].endswith(".migrate"):
        return {"kind": "migrate", "target": argv[2]}
    if argv[:3] == ["python", "-m", "panjereh.agency_simulators"]:
        return {"kind": "simulators", "target": argv[2], "args": argv[3:]}
    if argv[0] == "python" and argv[1].endswith("schema_gate.py"):
        return {
            "kind": "schema-gate",
            "target": str(_mounted_file(overlay, container, argv[1], workdir)),
            "args": argv[2:],
        }
    return {"kind": "unknown", "target": " ".join(argv)}


def _mounted_file(overlay: Rendered, container: dict[str, Any], path: str, workdir: Path) -> Path:
    """The file a container runs from a ConfigMap volume, written out as the kubelet would."""
    directory, _, name = path.rpartition("/")
    mounts = [m for m in container.get("volumeMounts", []) if m["mountPath"] == directory]
    assert mounts, f"{path} is not mounted in {container['name']}"
    for workload in [*overlay.of_kind("Deployment"), *overlay.of_kind("Job")]:
        for volume in workload["spec"]["template"]["spec"].get("volumes", []):
            if volume["name"] == mounts[0]["name"] and "configMap" in volume:
                data = _config_map(overlay, volume["configMap"]["name"], optional=False)
                target = workdir / overlay.overlay / volume["configMap"]["name"] / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(data[name])
                return target
    raise Unstartable(f"no ConfigMap volume holds {path}")


def settings_class(entry: dict[str, Any]) -> type[Any] | None:
    target: str = entry["target"]
    if entry["kind"] == "factory":
        package = target.partition(":")[0].rsplit(".", 1)[0]
    elif entry["kind"] == "migrate":
        package = target.removesuffix(".migrate")
    elif entry["kind"] == "schema-gate":
        package = entry["args"][0]
    else:
        return None
    settings: type[Any] = importlib.import_module(f"{package}.config").Settings
    return settings


WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job", "CronJob")


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    template: dict[str, Any] = spec["template"]["spec"]
    return template


def plan(overlay: Rendered, dummy: DummySecrets, workdir: Path, label: str) -> list[dict[str, Any]]:
    """One boot entry per platform container (init containers included) of ``overlay``."""
    entries = []
    for kind in WORKLOAD_KINDS:
        for workload in overlay.of_kind(kind):
            spec = pod_spec(workload)
            for container in [*spec.get("initContainers", []), *spec["containers"]]:
                name = f"{label}/{kind}/{workload['metadata']['name']}/{container['name']}"
                try:
                    entry = entry_of(overlay, container, workdir)
                    if entry is None:
                        continue  # not a platform image (the OpenTelemetry collector)
                    env = container_env(overlay, container, settings_class(entry), dummy)
                except Unstartable as exc:
                    entry, env = {"kind": "unstartable", "target": str(exc)}, {}
                entries.append({"name": name, "entry": entry, "env": env})
    return entries


def boot(entries: list[dict[str, Any]], workdir: Path) -> dict[str, dict[str, Any]]:
    plan_file = workdir / "plan.json"
    plan_file.write_text(json.dumps(entries))
    result = subprocess.run(
        [sys.executable, "-m", "tests.deploy.boot", str(plan_file)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    outcomes = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(outcomes) == len(entries), result.stderr[-3000:]
    return {outcome["name"]: outcome for outcome in outcomes}


def planted(rendered: dict[str, Rendered]) -> Rendered:
    """prod with two mistakes the start-up check must catch (both crashed in production)."""
    docs = copy.deepcopy(rendered["prod"].docs)
    for doc in docs:
        name = doc["metadata"]["name"]
        if doc["kind"] == "Deployment" and name == "catalog":
            container = doc["spec"]["template"]["spec"]["containers"][0]
            container["env"] = [e for e in container["env"] if e["name"] != "KAFKA_SASL_USERNAME"]
        if doc["kind"] == "ConfigMap" and name == "gateway-config":
            doc["data"].pop("KAFKA_SECURITY_PROTOCOL", None)
    return Rendered("planted", rendered["prod"].path, docs)


@pytest.fixture(scope="module")
def booted(rendered, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("boot")
    dummy = DummySecrets()
    entries = [
        *(entry for name, item in rendered.items() for entry in plan(item, dummy, workdir, name)),
        *plan(planted(rendered), dummy, workdir, "planted"),
    ]
    return entries, boot(entries, workdir)


class TestStartup:
    def test_every_workload_of_every_overlay_starts(self, booted):
        entries, outcomes = booted
        failures = {
            name: outcome.get("error")
            for name, outcome in outcomes.items()
            if not name.startswith("planted/") and not outcome["ok"]
        }
        assert failures == {}
        real = [entry for entry in entries if not entry["name"].startswith("planted/")]
        kinds = {entry["entry"]["kind"] for entry in real}
        assert {"factory", "migrate", "simulators", "schema-gate"} <= kinds
        assert "unknown" not in kinds

    def test_every_platform_workload_is_booted(self, rendered, booted):
        # nothing is skipped silently: each Deployment and Job of ours has an entry
        entries, _ = booted
        names = {entry["name"].split("/")[2] for entry in entries}
        for overlay in rendered.values():
            for kind in WORKLOAD_KINDS:
                for workload in overlay.of_kind(kind):
                    if workload["metadata"]["name"] != "otel-collector":
                        assert workload["metadata"]["name"] in names

    def test_database_passwords_reach_the_driver_intact(self, booted):
        _, outcomes = booted
        databases = {
            name: outcome["database"]
            for name, outcome in outcomes.items()
            if outcome["ok"] and outcome.get("database") and not name.startswith("planted/")
        }
        assert len(databases) >= 16  # 4 services and 4 migrations in each overlay
        for name, database in databases.items():
            assert database["password"] == DATABASE_PASSWORD, name
            assert database["port"] == 5432, name
            assert database["host"].endswith(("-db-pooler", "-db-rw")), name

    def test_the_broker_listens_on_the_primary_with_the_same_login(self, booted):
        _, outcomes = booted
        for overlay in ("dev", "prod"):
            outcome = outcomes[f"{overlay}/Deployment/inquiry-broker/inquiry-broker"]
            listen = outcome["listen"]  # the broker's settings read the setting
            assert listen["host"] == "inquiry-broker-db-rw"
            assert listen["password"] == DATABASE_PASSWORD
            assert listen["user"] == outcome["database"]["user"]
            assert listen["database"] == outcome["database"]["database"]

    def test_a_planted_crash_is_caught(self, booted):
        _, outcomes = booted
        catalog = outcomes["planted/Deployment/catalog/catalog"]
        assert catalog["ok"] is False
        assert "KAFKA_SASL_USERNAME" in catalog["error"]
        gateway = outcomes["planted/Deployment/gateway/gateway"]
        assert gateway["ok"] is False
        assert "KAFKA_SECURITY_PROTOCOL=SASL_SSL" in gateway["error"]


def test_expansion_follows_the_kubelet():
    env = {"USER": "owner", "PASSWORD": "p"}
    assert expand("x://$(USER):$(PASSWORD)@h/$(MISSING)$$(USER)", env) == (
        "x://owner:p@h/$(MISSING)$(USER)"
    )


def test_the_readme_names_every_secret_the_dummies_stand_for():
    """The dummies fill every secret setting of a component: the operator must be told to."""
    readme = (REPO_ROOT / "deploy" / "README.md").read_text()
    secrets_table = readme.split("### 2. Secrets", 1)[1].split("\n### ", 1)[0]
    dummy = DummySecrets()
    for component in ("catalog", "identity", "requests", "inquiry_broker", "portal"):
        settings = importlib.import_module(f"panjereh.{component}.config").Settings
        for variable in dummy.for_settings("any", settings):
            assert f"`{variable}`" in secrets_table, variable
