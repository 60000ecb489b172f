"""The rendered overlays: valid Kubernetes, and the platform's own deployment rules."""

from __future__ import annotations

import importlib
import importlib.util
import ipaddress
import json
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from panjereh.devstack.stack import GATEWAY, PORTAL, SERVICES

SERVICE_NAMES = [component.name for component in SERVICES]
API_NAMES = [GATEWAY.name, *SERVICE_NAMES]
#: every process that serves HTTP behind a Service of its own: the APIs and the web portal
HTTP_NAMES = [*API_NAMES, PORTAL.name]
#: oldest Kubernetes the manifests support (the preStop sleep action) and the newest schema
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
MIN_UID = 10000
DOCKERFILES = Path(__file__).resolve().parents[2] / "deploy" / "docker"


def containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod_spec.get("initContainers", []), *pod_spec["containers"]]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def restricted_violations(workload: dict[str, Any]) -> list[str]:
    """What keeps ``workload`` from the Pod Security "restricted" profile (and our UID rule)."""
    problems = []
    spec = pod_spec(workload)
    pod_sc = spec.get("securityContext", {})
    if pod_sc.get("runAsNonRoot") is not True:
        problems.append("pod runAsNonRoot is not true")
    if pod_sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append("pod seccompProfile is not RuntimeDefault")
    if spec.get("automountServiceAccountToken") is not False:
        problems.append("service account token is mounted")
    if spec.get("serviceAccountName", "default") == "default":
        problems.append("runs as the default service account")
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            problems.append(f"{key} is set")
    for container in containers(spec):
        sc = container.get("securityContext", {})
        name = container["name"]
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: root filesystem is writable")
        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            problems.append(f"{name}: capabilities not all dropped")
        if sc.get("capabilities", {}).get("add"):
            problems.append(f"{name}: adds capabilities")
        uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
        if uid is None or uid < MIN_UID:
            problems.append(f"{name}: runAsUser {uid} is not a high non-root UID")
        if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
            problems.append(f"{name}: runAsNonRoot is not true")
    return problems


def has_requests_and_limits(container: dict[str, Any]) -> bool:
    resources = container.get("resources", {})
    return all(
        resource in resources.get(kind, {})
        for kind in ("requests", "limits")
        for resource in ("cpu", "memory")
    )


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    match = selector.get("matchLabels", {})
    expressions = selector.get("matchExpressions", [])
    if not match and not expressions:
        return True
    ok = all(labels.get(key) == value for key, value in match.items())
    for expression in expressions:
        value = labels.get(expression["key"])
        if expression["operator"] == "In":
            ok = ok and value in expression["values"]
        elif expression["operator"] == "Exists":
            ok = ok and value is not None
        else:
            pytest.fail(f"selector operator {expression['operator']} not understood by the test")
    return ok


def env_sources(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item.get("valueFrom", {}) for item in container.get("env", [])}


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item.get("value", "") for item in container.get("env", [])}


class TestRendering:
    def test_every_overlay_renders_into_one_namespace(self, overlay):
        assert len(overlay.docs) > 50
        for doc in overlay.docs:
            if doc["kind"] == "Namespace":
                assert doc["metadata"]["name"] == "panjereh"
            else:
                assert doc["metadata"].get("namespace") == "panjereh", doc["metadata"]["name"]

    @pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
    def test_core_kinds_validate_against_the_kubernetes_schema(
        self, rendered, deploy_tool, version
    ):
        validator = deploy_tool("kubernetes-validate")
        paths = [str(item.path) for item in rendered.values()]
        result = subprocess.run(
            [str(validator), "--strict", "--quiet", "--no-warn", "-k", version, *paths],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr

    def test_the_validator_rejects_an_unknown_field(self, deploy_tool, tmp_path):
        # guards the test above against a validator that silently accepts everything
        bad = tmp_path / "bad.yaml"
        bad.write_text(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n"
            "spec: {replicas: 1, replicaz: 2, selector: {}, template: {}}\n"
        )
        validator = deploy_tool("kubernetes-validate")
        result = subprocess.run(
            [str(validator), "--strict", "--quiet", "-k", KUBERNETES_VERSIONS[0], str(bad)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode != 0
        assert "replicaz" in result.stdout + result.stderr


class TestWorkloads:
    def test_every_api_has_a_deployment_service_hpa_and_pdb(self, overlay):
        for name in HTTP_NAMES:
            overlay.named("Deployment", name)
            service = overlay.named("Service", name)
            assert service["spec"]["type"] == "ClusterIP"
            hpa = overlay.named("HorizontalPodAutoscaler", name)
            assert hpa["spec"]["scaleTargetRef"] == {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": name,
            }

    def test_every_deployment_has_liveness_and_readiness_probes(self, overlay):
        for deployment in overlay.of_kind("Deployment"):
            for container in pod_spec(deployment)["containers"]:
                for probe in ("livenessProbe", "readinessProbe"):
                    assert probe in container, f"{deployment['metadata']['name']}: no {probe}"

    def test_platform_processes_probe_livez_and_readyz(self, overlay):
        for deployment in overlay.of_kind("Deployment"):
            name = deployment["metadata"]["name"]
            if name == "otel-collector":
                continue
            container = pod_spec(deployment)["containers"][0]
            assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
            # the gateway's /readyz fails while any upstream does: see its deployment.yaml
            expected = "/livez" if name == "gateway" else "/readyz"
            assert container["readinessProbe"]["httpGet"]["path"] == expected, name

    def test_every_container_has_resource_requests_and_limits(self, overlay):
        for workload in [*overlay.of_kind("Deployment"), *overlay.of_kind("Job")]:
            for container in containers(pod_spec(workload)):
                assert has_requests_and_limits(container), workload["metadata"]["name"]

    def test_every_workload_runs_restricted(self, overlay):
        for workload in [*overlay.of_kind("Deployment"), *overlay.of_kind("Job")]:
            assert restricted_violations(workload) == [], workload["metadata"]["name"]

    def test_the_restricted_check_catches_a_root_container(self, prod):
        # the rule above must be able to fail
        deployment = prod.named("Deployment", "catalog")
        container = pod_spec(deployment)["containers"][0]
        broken = {
            **deployment,
            "spec": {
                **deployment["spec"],
                "template": {
                    "spec": {
                        **pod_spec(deployment),
                        "containers": [{**container, "securityContext": {"runAsUser": 0}}],
                    }
                },
            },
        }
        problems = restricted_violations(broken)
        assert any("allowPrivilegeEscalation" in problem for problem in problems)
        assert any("runAsUser 0" in problem for problem in problems)

    def test_every_deployment_has_a_pod_disruption_budget(self, overlay):
        budgets = overlay.of_kind("PodDisruptionBudget")
        for deployment in overlay.of_kind("Deployment"):
            labels = deployment["spec"]["template"]["metadata"]["labels"]
            matching = [pdb for pdb in budgets if selects(pdb["spec"]["selector"], labels)]
            assert len(matching) == 1, deployment["metadata"]["name"]
            assert matching[0]["spec"].get("maxUnavailable") == 1

    def test_grace_period_outlasts_the_prestop_pause_and_the_drain(self, overlay):
        for deployment in overlay.of_kind("Deployment"):
            spec = pod_spec(deployment)
            container = spec["containers"][0]
            pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
            drain = uvicorn_drain_seconds(deployment["metadata"]["name"])
            assert spec["terminationGracePeriodSeconds"] > pause + drain, deployment["metadata"]

    def test_prod_runs_at_least_two_replicas_of_every_api(self, prod):
        for name in HTTP_NAMES:
            assert prod.named("HorizontalPodAutoscaler", name)["spec"]["minReplicas"] >= 2
        assert prod.named("Deployment", "otel-collector")["spec"]["replicas"] >= 2

    def test_the_autoscaler_alone_sets_the_replica_count(self, overlay):
        # a `replicas` in the manifest would scale a busy Deployment down on every apply
        for name in HTTP_NAMES:
            assert "replicas" not in overlay.named("Deployment", name)["spec"], name

    def test_prod_does_not_run_the_simulated_agencies(self, prod, dev):
        assert "agency-simulators" not in prod.names("Deployment")
        assert "agency-simulators" not in prod.names("KafkaUser")
        assert "agency-simulators" in dev.names("Deployment")

    def test_rollouts_never_remove_a_ready_pod_first(self, overlay):
        for name in HTTP_NAMES:
            strategy = overlay.named("Deployment", name)["spec"]["strategy"]
            assert strategy["rollingUpdate"]["maxUnavailable"] == 0


def uvicorn_drain_seconds(deployment: str) -> int:
    """The graceful-shutdown timeout the image's CMD gives uvicorn (0 for other programs)."""
    dockerfile = DOCKERFILES / f"{deployment}.Dockerfile"
    if not dockerfile.exists():
        return 0
    found = re.search(r'"--timeout-graceful-shutdown",\s*"(\d+)"', dockerfile.read_text())
    return int(found.group(1)) if found else 0


class TestMigrations:
    @pytest.mark.parametrize("component", SERVICES, ids=lambda component: component.name)
    def test_each_service_has_a_migration_job_running_its_migrate_module(self, overlay, component):
        job = overlay.named("Job", f"{component.name}-migrate")
        container = pod_spec(job)["containers"][0]
        module = f"{component.package}.migrate"
        assert container["command"] == ["python", "-m", module]
        assert importlib.util.find_spec(module) is not None
        deployment = overlay.named("Deployment", component.name)
        assert container["image"] == pod_spec(deployment)["containers"][0]["image"]
        assert pod_spec(job)["restartPolicy"] == "Never"


class TestConfiguration:
    def test_no_secret_values_are_committed(self, overlay):
        assert overlay.of_kind("Secret") == []
        for config_map in overlay.of_kind("ConfigMap"):
            for key in config_map.get("data", {}):
                assert not re.search(r"PASSWORD|SECRET|TOKEN$|PRIVATE", key), key

    def test_prod_runs_in_prod_mode(self, prod, dev):
        assert prod.named("ConfigMap", "panjereh-platform")["data"]["PANJEREH_ENV"] == "prod"
        assert dev.named("ConfigMap", "panjereh-platform")["data"]["PANJEREH_ENV"] == "dev"
        # the console SMS gateway is refused in prod; dev keeps messages in the dev outbox
        sms = "PANJEREH_IDENTITY_SMS_PROVIDER"
        assert prod.named("ConfigMap", "identity-config")["data"][sms] == "verify-lookup"
        assert dev.named("ConfigMap", "identity-config")["data"][sms] == "console"

    def test_kafka_producer_idempotence_is_on(self, overlay):
        data = overlay.named("ConfigMap", "panjereh-platform")["data"]
        assert data["PANJEREH_KAFKA_IDEMPOTENCE"] == "true"
        host, port = data["KAFKA_BOOTSTRAP_SERVERS"].split(":")
        assert host == "panjereh-kafka-bootstrap"
        assert port == "9093"

    def test_the_brokers_fetches_wait_long_on_the_clusters_kafka(self, overlay):
        # Apache Kafka answers a held fetch when a record lands: the short waits the embedded
        # broker needs would only be empty fetches here
        data = overlay.named("ConfigMap", "inquiry-broker-config")["data"]
        settings = importlib.import_module("panjereh.inquiry_broker.config").Settings
        prefix = settings.model_config["env_prefix"]
        for name in ("replies_fetch_max_wait_ms", "purposes_fetch_max_wait_ms"):
            assert int(data[f"{prefix}{name.upper()}"]) == 500
            assert settings.model_fields[name].default < 500  # the local stack's own

    @pytest.mark.parametrize("component", SERVICES, ids=lambda component: component.name)
    def test_each_service_gets_its_database_url_under_its_own_prefix(self, overlay, component):
        settings = importlib.import_module(f"{component.package}.config").Settings
        variable = f"{settings.model_config['env_prefix']}DATABASE_URL"
        deployment = overlay.named("Deployment", component.name)
        url = env_of(pod_spec(deployment)["containers"][0])[variable]
        parts = urlsplit(url)
        assert parts.scheme == "postgresql+asyncpg"
        assert parts.hostname == f"{component.name}-db-pooler"
        assert parts.path == f"/{component.database}"
        # the password is never in the URL (a rotated one may hold "@" or "/"): the driver
        # reads PGPASSWORD, which comes from the secret
        assert parts.password is None
        assert "secretKeyRef" in env_sources(pod_spec(deployment)["containers"][0])["PGPASSWORD"]
        job = overlay.named("Job", f"{component.name}-migrate")
        migration_url = urlsplit(env_of(pod_spec(job)["containers"][0])[variable])
        # migrations talk to the primary itself, not through PgBouncer
        assert migration_url.hostname == f"{component.name}-db-rw"
        assert migration_url.path == f"/{component.database}"

    def test_gateway_upstreams_name_the_services(self, overlay):
        settings = importlib.import_module(f"{GATEWAY.package}.config").Settings
        prefix = settings.model_config["env_prefix"]
        data = overlay.named("ConfigMap", "gateway-config")["data"]
        services = overlay.names("Service")
        for upstream in [*settings().upstreams(), PORTAL.name]:
            variable = f"{prefix}{upstream.upper().replace('-', '_')}_URL"
            assert urlsplit(data[variable]).hostname == upstream
            assert upstream in services

    def test_every_process_verifies_tokens_with_identity_jwks(self, overlay):
        data = overlay.named("ConfigMap", "panjereh-platform")["data"]
        url = urlsplit(data["PANJEREH_JWKS_URL"])
        assert (url.hostname, url.path) == ("identity", "/.well-known/jwks.json")
        assert "identity" in overlay.names("Service")

    def test_traces_go_to_the_collector(self, overlay):
        data = overlay.named("ConfigMap", "panjereh-platform")["data"]
        endpoint = urlsplit(data["OTEL_EXPORTER_OTLP_ENDPOINT"])
        assert endpoint.hostname == "otel-collector"
        service = overlay.named("Service", "otel-collector")
        assert endpoint.port in {port["port"] for port in service["spec"]["ports"]}

    @pytest.mark.parametrize("component", SERVICES, ids=lambda component: component.name)
    def test_migrations_see_the_settings_the_service_sees(self, overlay, component):
        # Settings() validates secrets in prod before migrating: same sources, same outcome
        def sources(workload):
            container = pod_spec(workload)["containers"][0]
            return [
                ref.get("configMapRef", ref.get("secretRef"))["name"]
                for ref in container["envFrom"]
            ]

        job = overlay.named("Job", f"{component.name}-migrate")
        assert sources(job) == sources(overlay.named("Deployment", component.name))


class TestClientAddresses:
    """Client addresses feed the rate limits: only the gateway reads X-Forwarded-For, and only
    from the ingress controller; identity believes only the gateway's."""

    def test_no_process_lets_uvicorn_believe_every_peer(self, overlay):
        for config_map in overlay.of_kind("ConfigMap"):
            value = config_map.get("data", {}).get("FORWARDED_ALLOW_IPS")
            assert value in (None, ""), config_map["metadata"]["name"]
        for workload in [*overlay.of_kind("Deployment"), *overlay.of_kind("Job")]:
            for container in containers(pod_spec(workload)):
                assert env_of(container).get("FORWARDED_ALLOW_IPS") in (None, "")

    def test_the_gateway_settings_load_from_its_config_maps(self, overlay, monkeypatch):
        settings_class = importlib.import_module(f"{GATEWAY.package}.config").Settings
        data = {
            **overlay.named("ConfigMap", "panjereh-platform")["data"],
            **overlay.named("ConfigMap", "gateway-config")["data"],
        }
        for name, value in data.items():
            monkeypatch.setenv(name, value)
        settings = settings_class()
        assert settings.trusted_proxies
        for network in map(ipaddress.ip_network, settings.trusted_proxies):
            assert network.is_private
            assert network.prefixlen >= 12, network  # a pod network, not everything

    def test_identity_believes_forwarded_for_only_from_where_the_gateway_runs(self, overlay):
        gateway = json.loads(
            overlay.named("ConfigMap", "gateway-config")["data"]["PANJEREH_GATEWAY_TRUSTED_PROXIES"]
        )
        identity = json.loads(
            overlay.named("ConfigMap", "identity-config")["data"][
                "PANJEREH_IDENTITY_TRUSTED_PROXIES"
            ]
        )
        assert identity == gateway
        for network in map(ipaddress.ip_network, identity):
            assert network.prefixlen >= 12, network


class TestNetwork:
    def test_everything_is_denied_by_default(self, overlay):
        deny = overlay.named("NetworkPolicy", "default-deny-all")["spec"]
        assert deny["podSelector"] == {}
        assert sorted(deny["policyTypes"]) == ["Egress", "Ingress"]
        assert "ingress" not in deny
        assert "egress" not in deny

    def test_every_workload_has_its_own_policy(self, overlay):
        policies = [
            policy for policy in overlay.of_kind("NetworkPolicy") if policy["spec"]["podSelector"]
        ]
        for workload in [*overlay.of_kind("Deployment"), *overlay.of_kind("Job")]:
            labels = workload["spec"]["template"]["metadata"]["labels"]
            matching = [p for p in policies if selects(p["spec"]["podSelector"], labels)]
            assert matching, workload["metadata"]["name"]

    def test_only_the_ingress_controller_and_the_portal_reach_the_gateway(self, overlay):
        rules = overlay.named("NetworkPolicy", "gateway")["spec"]["ingress"]
        sources = [peer for rule in rules for peer in rule["from"]]
        assert sources == [
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}
                }
            },
            {"podSelector": {"matchLabels": {"app.kubernetes.io/name": PORTAL.name}}},
        ]
        assert [port["port"] for rule in rules for port in rule["ports"]] == [8080]

    def test_services_are_reached_only_from_named_callers(self, overlay):
        for name in SERVICE_NAMES:
            rules = overlay.named("NetworkPolicy", name)["spec"]["ingress"]
            for rule in rules:
                for peer in rule["from"]:
                    assert set(peer) == {"podSelector"}, name
                    assert set(peer["podSelector"]["matchLabels"]) == {"app.kubernetes.io/name"}

    def test_the_ingress_exposes_only_the_gateway_over_tls(self, overlay):
        (ingress,) = overlay.of_kind("Ingress")
        backends = {
            path["backend"]["service"]["name"]
            for rule in ingress["spec"]["rules"]
            for path in rule["http"]["paths"]
        }
        assert backends == {"gateway"}
        hosts = {rule["host"] for rule in ingress["spec"]["rules"]}
        assert hosts <= {host for tls in ingress["spec"]["tls"] for host in tls["hosts"]}
        for service in overlay.of_kind("Service"):
            assert service["spec"].get("type", "ClusterIP") == "ClusterIP"


def settings_from_config_maps(overlay, monkeypatch, package: str, config_map: str) -> Any:
    """``package``'s settings as its pods build them from the platform's and its ConfigMap."""
    data = {
        **overlay.named("ConfigMap", "panjereh-platform")["data"],
        **overlay.named("ConfigMap", config_map)["data"],
    }
    for name, value in data.items():
        monkeypatch.setenv(name, value)
    return importlib.import_module(f"{package}.config").Settings()


def peers_admitted(overlay, labels: dict[str, str], port: int) -> list[dict[str, Any]]:
    """Every ingress peer of every policy that lets traffic to ``port`` of pods with ``labels``."""
    return [
        peer
        for policy in overlay.of_kind("NetworkPolicy")
        if selects(policy["spec"]["podSelector"], labels) and policy["spec"].get("ingress")
        for rule in policy["spec"]["ingress"]
        if not rule.get("ports") or any(item["port"] == port for item in rule["ports"])
        for peer in rule.get("from", [{}])
    ]


class TestPortal:
    """The web portal: behind the gateway only, calling the gateway's public API only."""

    def test_the_gateway_sends_the_portal_paths_to_the_portal_service(self, overlay, monkeypatch):
        settings = settings_from_config_maps(
            overlay, monkeypatch, GATEWAY.package, "gateway-config"
        )
        assert settings.portal_url is not None
        url = urlsplit(settings.portal_url)
        service = overlay.named("Service", url.hostname)
        assert url.hostname == PORTAL.name
        assert (url.port or 80) in {port["port"] for port in service["spec"]["ports"]}
        assert service["spec"]["selector"] == {"app.kubernetes.io/name": PORTAL.name}

    def test_the_portal_calls_the_gateway_service(self, overlay, monkeypatch):
        settings = settings_from_config_maps(overlay, monkeypatch, PORTAL.package, "portal-config")
        url = urlsplit(settings.gateway_url)
        assert url.hostname == GATEWAY.name
        service = overlay.named("Service", GATEWAY.name)
        assert (url.port or 80) in {port["port"] for port in service["spec"]["ports"]}
        assert settings.cookie_secure is True  # every overlay is served over HTTPS only

    def test_only_the_gateway_and_prometheus_reach_the_portal(self, overlay):
        labels = overlay.named("Deployment", PORTAL.name)["spec"]["template"]["metadata"]["labels"]
        assert peers_admitted(overlay, labels, 8080) == [
            {"podSelector": {"matchLabels": {"app.kubernetes.io/name": GATEWAY.name}}},
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}},
        ]

    def test_the_portal_reaches_only_the_gateway_and_the_collector(self, overlay):
        policy = overlay.named("NetworkPolicy", PORTAL.name)["spec"]
        assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
        reached = {
            (peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"], port["port"])
            for rule in policy["egress"]
            for peer in rule["to"]
            for port in rule["ports"]
        }
        assert reached == {(GATEWAY.name, 8080), ("otel-collector", 4317), ("otel-collector", 4318)}
        # and the gateway may answer it: its egress names the portal's port
        gateway = overlay.named("NetworkPolicy", GATEWAY.name)["spec"]
        assert any(
            {"podSelector": {"matchLabels": {"app.kubernetes.io/name": PORTAL.name}}} in rule["to"]
            and {"port": 8080, "protocol": "TCP"} in rule["ports"]
            for rule in gateway["egress"]
        )

    def test_the_gateway_counts_the_citizen_the_portal_calls_for(self, overlay, monkeypatch):
        # the portal passes the citizen's address on in X-Forwarded-For; the gateway believes
        # it because the portal's pods are in its trusted_proxies (the pod network)
        from panjereh.gateway.forwarding import ClientAddress  # noqa: PLC0415

        settings = settings_from_config_maps(
            overlay, monkeypatch, GATEWAY.package, "gateway-config"
        )
        addresses = ClientAddress(settings.trusted_proxies)
        citizen = "203.0.113.7"
        for network in map(ipaddress.ip_network, settings.trusted_proxies):
            portal_pod = str(network[10])
            assert addresses.resolve(portal_pod, [citizen.encode()]) == citizen
        # a peer outside the pod network (the test must be able to fail) is its own client
        assert addresses.resolve("198.51.100.4", [citizen.encode()]) == "198.51.100.4"

    def test_a_signed_in_session_stays_on_one_portal_pod(self, overlay, monkeypatch):
        """Sessions live in one portal pod's memory: each browser keeps to one gateway pod
        (the ingress's affinity cookie) and each gateway pod to one portal pod (the Service's
        ClientIP affinity: the gateway is the portal's only caller), for a session's life."""
        settings = settings_from_config_maps(overlay, monkeypatch, PORTAL.package, "portal-config")
        service = overlay.named("Service", PORTAL.name)["spec"]
        assert service["sessionAffinity"] == "ClientIP"
        timeout = service["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"]
        assert timeout >= settings.session_max_seconds
        (ingress,) = overlay.of_kind("Ingress")
        annotations = ingress["metadata"]["annotations"]
        prefix = "nginx.ingress.kubernetes.io/"
        assert annotations[f"{prefix}affinity"] == "cookie"
        assert annotations[f"{prefix}affinity-mode"] == "persistent"
        assert annotations[f"{prefix}session-cookie-secure"] == "true"
        assert int(annotations[f"{prefix}session-cookie-max-age"]) >= settings.session_max_seconds
        # ClientIP pins gateway pods only if nothing else calls the portal's Service
        labels = overlay.named("Deployment", PORTAL.name)["spec"]["template"]["metadata"]["labels"]
        callers = [peer for peer in peers_admitted(overlay, labels, 8080) if "podSelector" in peer]
        assert callers == [
            {"podSelector": {"matchLabels": {"app.kubernetes.io/name": GATEWAY.name}}}
        ]
