"""Custom resources against the operators' pinned schemas, and the rules Strimzi, CloudNativePG
and the inquiry broker's LISTEN session need beyond what a schema can say."""

from __future__ import annotations

import copy
import importlib
import json
import re
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest

from tests.deploy.conftest import DEPLOY
from tests.deploy.test_manifests import env_of, env_sources, selects

SCHEMAS = DEPLOY / "schemas"
#: the operator versions deploy/README.md pins, and the API version each serves
STRIMZI_V1_SINCE = (0, 49)


def is_custom(doc: dict[str, Any]) -> bool:
    group = doc["apiVersion"].rpartition("/")[0]
    return "." in group and not group.endswith(".k8s.io")


def schema_path(doc: dict[str, Any]) -> Path:
    group, _, version = doc["apiVersion"].partition("/")
    return SCHEMAS / group / f"{doc['kind'].lower()}_{version}.json"


@cache
def validator(path: Path) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(path.read_text()))


def schema_errors(doc: dict[str, Any]) -> list[str]:
    path = schema_path(doc)
    name = f"{doc['kind']} {doc['metadata']['name']} ({doc['apiVersion']})"
    if not path.exists():
        return [f"{name}: no pinned schema ({path.relative_to(DEPLOY)})"]
    return [
        f"{name}: {'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator(path).iter_errors(doc)
    ]


class TestSchemas:
    def test_every_custom_resource_validates_against_its_pinned_schema(self, overlay):
        custom = [doc for doc in overlay.docs if is_custom(doc)]
        assert len(custom) > 50
        kinds = {doc["kind"] for doc in custom}
        assert {"Kafka", "KafkaTopic", "KafkaUser", "Cluster", "Pooler", "PodMonitor"} <= kinds
        assert "PrometheusRule" in kinds
        errors = [error for doc in custom for error in schema_errors(doc)]
        assert errors == []

    def test_the_schemas_refuse_mistakes(self, prod):
        # the check above must be able to fail: an unknown field, a wrong type, an old API
        kafka = copy.deepcopy(prod.named("Kafka", "panjereh"))
        kafka["spec"]["kafka"]["listeners"][0]["networkPolicyPeer"] = []
        kafka["spec"]["kafka"]["rack"] = {"topologykey": "zone"}
        errors = schema_errors(kafka)
        assert any("networkPolicyPeer" in error for error in errors)
        assert any("topologyKey" in error for error in errors)
        user = copy.deepcopy(prod.named("KafkaUser", "svc-catalog"))
        user["apiVersion"] = "kafka.strimzi.io/v1beta2"
        assert any("no pinned schema" in error for error in schema_errors(user))
        cluster = copy.deepcopy(prod.named("Cluster", "catalog-db"))
        cluster["spec"]["instances"] = "three"
        assert schema_errors(cluster) != []

    def test_the_schemas_carry_their_licences(self):
        assert "MIT License" in (SCHEMAS / "LICENSE").read_text()
        notice = (SCHEMAS / "NOTICE").read_text()
        for operator in ("Strimzi", "CloudNativePG", "Prometheus Operator"):
            assert operator in notice


class TestStrimzi:
    def test_every_strimzi_resource_uses_the_v1_api(self, overlay):
        strimzi = [doc for doc in overlay.docs if doc["apiVersion"].startswith("kafka.strimzi")]
        assert len(strimzi) > 40
        assert {doc["apiVersion"] for doc in strimzi} == {"kafka.strimzi.io/v1"}

    def test_the_readme_pins_a_strimzi_range_that_serves_v1(self):
        readme = (DEPLOY / "README.md").read_text()
        row = next(line for line in readme.splitlines() if line.startswith("| Strimzi |"))
        found = re.search(r"(\d+)\.(\d+) or newer, below (\d+)\.(\d+)", row)
        assert found, row
        low = (int(found.group(1)), int(found.group(2)))
        high = (int(found.group(3)), int(found.group(4)))
        assert STRIMZI_V1_SINCE <= low < high

    def test_internal_listeners_admit_only_the_kafka_clients(self, overlay):
        kafka = overlay.named("Kafka", "panjereh")["spec"]["kafka"]
        clients = {
            template["metadata"]["labels"]["app.kubernetes.io/name"]
            for template in (d["spec"]["template"] for d in overlay.of_kind("Deployment"))
            if "KAFKA_SASL_USERNAME" in env_of(template["spec"]["containers"][0])
        }
        assert {"catalog", "identity", "requests", "inquiry-broker"} <= clients
        for listener in kafka["listeners"]:
            if listener["type"] != "internal":
                continue
            peers = listener["networkPolicyPeers"]
            assert all(set(peer) == {"podSelector"} for peer in peers), peers
            admitted = {
                peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for peer in peers
            }
            # every client gets in; nothing else does (the simulators exist in dev only)
            assert clients <= admitted <= clients | {"agency-simulators"}

    def test_the_external_listener_admits_only_agency_networks(self, prod):
        kafka = prod.named("Kafka", "panjereh")["spec"]["kafka"]
        (external,) = [item for item in kafka["listeners"] if item["name"] == "external"]
        peers = external["networkPolicyPeers"]
        assert peers
        assert all(set(peer) == {"ipBlock"} for peer in peers)
        cidrs = [peer["ipBlock"]["cidr"] for peer in peers]
        for cidr in cidrs:
            assert not cidr.endswith("/0"), cidr
        assert external["configuration"]["loadBalancerSourceRanges"] == cidrs
        # our own policy on the Kafka pods names the same ranges for 9094, and nothing wider
        policy = prod.named("NetworkPolicy", "kafka")["spec"]
        rules = [
            rule
            for rule in policy["ingress"]
            if any(port["port"] == external["port"] for port in rule.get("ports", []))
        ]
        assert len(rules) == 1
        assert [peer["ipBlock"]["cidr"] for peer in rules[0]["from"]] == cidrs

    def test_brokers_are_rack_aware(self, overlay):
        kafka = overlay.named("Kafka", "panjereh")["spec"]["kafka"]
        assert kafka["rack"]["topologyKey"] == "topology.kubernetes.io/zone"


class TestBrokerListen:
    def test_listen_goes_to_the_primary_not_the_pooler(self, overlay):
        container = overlay.named("Deployment", "inquiry-broker")["spec"]["template"]["spec"][
            "containers"
        ][0]
        env = env_of(container)
        listen = urlsplit(env["PANJEREH_INQUIRY_BROKER_LISTEN_DATABASE_URL"])
        pooled = urlsplit(env["PANJEREH_INQUIRY_BROKER_DATABASE_URL"])
        assert pooled.hostname == "inquiry-broker-db-pooler"
        # the CloudNativePG read-write service: a session on the primary, where NOTIFY arrives
        assert listen.hostname == "inquiry-broker-db-rw"
        assert (listen.scheme, listen.path, listen.username) == (
            pooled.scheme,
            pooled.path,
            pooled.username,
        )
        assert listen.password is None

    def test_the_network_policies_allow_the_listen_session(self, overlay):
        broker_labels = overlay.named("Deployment", "inquiry-broker")["spec"]["template"][
            "metadata"
        ]["labels"]
        primary_labels = {"cnpg.io/cluster": "inquiry-broker-db", "cnpg.io/instanceRole": "primary"}
        egress = overlay.named("NetworkPolicy", "inquiry-broker")["spec"]["egress"]
        assert any(
            any(selects(peer.get("podSelector", {"x": 1}), primary_labels) for peer in rule["to"])
            and any(port["port"] == 5432 for port in rule.get("ports", []))
            for rule in egress
            if "to" in rule
        )
        ingress = overlay.named("NetworkPolicy", "inquiry-broker-db")["spec"]["ingress"]
        assert any(
            any(selects(peer.get("podSelector", {"x": 1}), broker_labels) for peer in rule["from"])
            and any(port["port"] == 5432 for port in rule.get("ports", []))
            for rule in ingress
        )
        # ...while the other services still reach only their pooler
        catalog = overlay.named("NetworkPolicy", "catalog-db")["spec"]["ingress"]
        catalog_labels = {"app.kubernetes.io/name": "catalog"}
        assert not any(
            selects(peer["podSelector"], catalog_labels)
            for rule in catalog
            for peer in rule["from"]
            if "podSelector" in peer
        )


#: keys every replica must share (a process left alone generates its own when they are empty)
SHARED_KEYS = [
    ("inquiry-broker", "PANJEREH_INQUIRY_BROKER_SIGNING_PRIVATE_KEY"),
    ("inquiry-broker", "PANJEREH_INQUIRY_BROKER_AUDIT_CHAIN_KEY"),
    ("requests", "PANJEREH_REQUESTS_SIGNING_PRIVATE_KEY"),
]
SIGNERS = {service: variable for service, variable in SHARED_KEYS if "SIGNING" in variable}


@pytest.mark.parametrize(("service", "variable"), SHARED_KEYS)
def test_shared_keys_come_from_a_secret_wherever_replicas_may_differ(overlay, service, variable):
    """Every replica signs with one key, so the keys endpoint is the same on every pod (and
    the broker's replicas extend one audit chain)."""
    assert overlay.named("HorizontalPodAutoscaler", service)["spec"]["maxReplicas"] > 1
    container = overlay.named("Deployment", service)["spec"]["template"]["spec"]["containers"][0]
    source = env_sources(container)[variable]
    reference = source["secretKeyRef"]
    assert reference == {"name": f"{service}-secrets", "key": variable}
    assert reference.get("optional", False) is False  # missing: the pod is not created
    settings = importlib.import_module(f"panjereh.{service.replace('-', '_')}.config").Settings
    field = variable.removeprefix(settings.model_config["env_prefix"]).lower()
    # the settings would otherwise invent one per process
    assert field in settings.generated_when_empty


def test_a_signing_key_left_to_each_process_is_caught(prod):
    deployment = copy.deepcopy(prod.named("Deployment", "inquiry-broker"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [item for item in container["env"] if "SIGNING" not in item["name"]]
    assert SIGNERS["inquiry-broker"] not in env_sources(container)
