"""Kafka on Strimzi: the cluster, a KafkaTopic per contract topic, least-privilege ACLs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from panjereh.contracts.topics import (
    INQUIRY_AGENCY_ACTIVE,
    PLATFORM_TOPICS,
    REQUESTS_SUBMITTED,
    agency_inquiries,
    agency_replies,
    agency_requests,
    dead_letter,
)

#: the public contract, kept in the repository
CONTRACT = Path(__file__).resolve().parents[2] / "docs" / "api.md"
#: topics the contract names that the manifests do not provision yet, and why; a topic that
#: gets provisioned must leave this table (a test checks), so it cannot go stale
NOT_YET_PROVISIONED: dict[str, str] = {}

Acl = tuple[str, str, str, frozenset[str]]


def acls(user: dict[str, Any]) -> set[Acl]:
    return {
        (
            acl["resource"]["type"],
            acl["resource"]["name"],
            acl["resource"].get("patternType", "literal"),
            frozenset(acl["operations"]),
        )
        for acl in user["spec"]["authorization"]["acls"]
    }


def agency_acl_violations(user: dict[str, Any], agencies: list[str]) -> list[str]:
    """Whatever ``user`` may do beyond reading ``agency.<code>.*`` and writing its replies."""
    own_topics = {f"agency.{code}." for code in agencies}
    own_replies = {agency_replies(code) for code in agencies}
    own_groups = {f"agency-{code}" for code in agencies}
    problems = []
    for kind, name, pattern, operations in acls(user):
        if kind == "topic" and name in own_replies and pattern == "literal":
            allowed = {"Write", "Describe"}
        elif kind == "topic" and pattern == "prefix" and name in own_topics:
            allowed = {"Read", "Describe"}
        elif kind == "group" and pattern == "literal" and name in own_groups:
            allowed = {"Read"}
        else:
            problems.append(f"{kind} {name} ({pattern}) is not the agency's to touch")
            continue
        if not operations <= allowed:
            problems.append(f"{kind} {name}: {sorted(operations - allowed)} not allowed")
    return problems


def consumed(rendered) -> set[str]:
    """Topics some service or agency reads (literal grants)."""
    return {
        name
        for user in rendered.of_kind("KafkaUser")
        for kind, name, pattern, operations in acls(user)
        if kind == "topic" and pattern == "literal" and "Read" in operations
    }


def agency_users(rendered) -> list[dict[str, Any]]:
    return [
        user
        for user in rendered.of_kind("KafkaUser")
        if "panjereh.io/agency" in user["metadata"].get("labels", {})
    ]


def agency_codes(rendered) -> list[str]:
    return [user["metadata"]["labels"]["panjereh.io/agency"] for user in agency_users(rendered)]


def topic_config(rendered, name: str) -> dict[str, Any]:
    topic = rendered.named("KafkaTopic", name)
    assert topic["spec"]["topicName"] == name
    return topic["spec"]


class TestCluster:
    def test_prod_runs_three_kraft_brokers_in_a_node_pool(self, prod):
        kafka = prod.named("Kafka", "panjereh")
        # the v1 API knows only KRaft and node pools: no opt-in annotations any more
        assert kafka["apiVersion"] == "kafka.strimzi.io/v1"
        assert "zookeeper" not in kafka["spec"]
        (pool,) = prod.of_kind("KafkaNodePool")
        assert pool["metadata"]["labels"]["strimzi.io/cluster"] == "panjereh"
        assert pool["spec"]["replicas"] == 3
        assert set(pool["spec"]["roles"]) == {"controller", "broker"}
        assert pool["spec"]["storage"]["volumes"][0]["type"] == "persistent-claim"

    def test_prod_acknowledges_writes_on_two_replicas(self, prod):
        config = prod.named("Kafka", "panjereh")["spec"]["kafka"]["config"]
        assert config["default.replication.factor"] == 3
        assert config["min.insync.replicas"] == 2
        assert config["auto.create.topics.enable"] is False
        assert config["unclean.leader.election.enable"] is False

    def test_every_listener_authenticates_over_tls_and_acls_apply(self, overlay):
        kafka = overlay.named("Kafka", "panjereh")["spec"]["kafka"]
        assert kafka["authorization"]["type"] == "simple"
        for listener in kafka["listeners"]:
            assert listener["tls"] is True, listener["name"]
            assert listener["authentication"]["type"] == "scram-sha-512", listener["name"]

    def test_every_user_belongs_to_the_cluster_and_authenticates(self, overlay):
        for user in overlay.of_kind("KafkaUser"):
            assert user["metadata"]["labels"]["strimzi.io/cluster"] == "panjereh"
            assert user["spec"]["authentication"]["type"] == "scram-sha-512"
            assert user["spec"]["authorization"]["type"] == "simple"


class TestTopics:
    def test_every_platform_topic_and_its_dead_letter_topic_exists(self, overlay):
        for topic in PLATFORM_TOPICS:
            topic_config(overlay, topic)
            topic_config(overlay, dead_letter(topic))

    def test_every_agency_has_its_inquiry_reply_and_request_topics(self, overlay):
        users = agency_users(overlay)
        assert len(users) >= 7
        for user in users:
            code = user["metadata"]["labels"]["panjereh.io/agency"]
            topic_config(overlay, agency_inquiries(code))
            topic_config(overlay, agency_replies(code))
            topic_config(overlay, dead_letter(agency_replies(code)))  # the broker parks there
            topic_config(overlay, agency_requests(code))

    def test_prod_topics_have_three_replicas_and_two_in_sync(self, prod):
        topics = prod.of_kind("KafkaTopic")
        assert len(topics) >= len(PLATFORM_TOPICS) * 2 + 14
        for topic in topics:
            assert topic["spec"]["replicas"] == 3, topic["metadata"]["name"]
            assert topic["spec"]["config"]["min.insync.replicas"] == 2

    def test_no_topic_exists_outside_the_contract(self, overlay):
        agencies = agency_codes(overlay)
        expected = {*PLATFORM_TOPICS, *(dead_letter(topic) for topic in PLATFORM_TOPICS)}
        expected |= {agency_inquiries(code) for code in agencies}
        expected |= {agency_replies(code) for code in agencies}
        expected |= {dead_letter(agency_replies(code)) for code in agencies}
        expected |= {agency_requests(code) for code in agencies}
        assert {topic["spec"]["topicName"] for topic in overlay.of_kind("KafkaTopic")} == expected

    def test_every_topic_in_the_contract_table_has_a_kafka_topic(self, prod):
        section = CONTRACT.read_text().split("## Kafka", 1)[1].split("\n## ", 1)[0]
        named = re.findall(r"^\| `([a-z0-9.<>_-]+)` \|", section, flags=re.MULTILINE)
        assert len(named) >= 6
        assert set(NOT_YET_PROVISIONED) <= set(named)
        topics = {topic["spec"]["topicName"] for topic in prod.of_kind("KafkaTopic")}
        agencies = agency_codes(prod)
        for name in named:
            wanted = (
                {name.replace("<agency>", code) for code in agencies}
                if "<agency>" in name
                else {name}
            )
            if name in NOT_YET_PROVISIONED:
                assert not wanted & topics, f"{name} is provisioned now: drop it from the table"
            else:
                assert wanted <= topics


class TestAcls:
    def test_an_agency_reads_only_its_topics_and_writes_only_its_replies(self, overlay):
        for user in agency_users(overlay):
            code = user["metadata"]["labels"]["panjereh.io/agency"]
            assert user["metadata"]["name"] == f"agency-{code}"
            assert acls(user) == {
                ("topic", f"agency.{code}.", "prefix", frozenset({"Read", "Describe"})),
                ("group", f"agency-{code}", "literal", frozenset({"Read"})),
                ("topic", agency_replies(code), "literal", frozenset({"Write", "Describe"})),
            }
            assert agency_acl_violations(user, [code]) == []

    def test_the_acl_check_catches_a_broader_grant(self, prod):
        user = prod.named("KafkaUser", "agency-tax")
        broader = {
            "spec": {
                "authorization": {
                    "acls": [
                        *user["spec"]["authorization"]["acls"],
                        {
                            "resource": {
                                "type": "topic",
                                "name": "agency.",
                                "patternType": "prefix",
                            },
                            "operations": ["Read"],
                        },
                        {
                            "resource": {"type": "topic", "name": "agency.tax.inquiries"},
                            "operations": ["Write"],
                        },
                    ]
                }
            }
        }
        problems = agency_acl_violations(broader, ["tax"])
        assert len(problems) == 2
        # writing another agency's replies would let it answer in that agency's name
        forging = {
            "spec": {
                "authorization": {
                    "acls": [
                        {
                            "resource": {
                                "type": "topic",
                                "name": agency_replies("civil-registry"),
                                "patternType": "literal",
                            },
                            "operations": ["Write", "Describe"],
                        }
                    ]
                }
            }
        }
        assert len(agency_acl_violations(forging, ["tax"])) == 1
        # another agency's consumer group is not the agency's either
        assert agency_acl_violations(user, ["police"]) != []

    def test_the_simulators_act_only_as_the_agencies_they_play(self, dev):
        user = dev.named("KafkaUser", "agency-simulators")
        deployment = dev.named("Deployment", "agency-simulators")
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["command"] == ["python", "-m", "panjereh.agency_simulators"]
        played = container["args"]
        assert set(played) == set(agency_codes(dev))
        assert agency_acl_violations(user, played) == []
        read = {name for kind, name, _, ops in acls(user) if kind == "topic" and "Read" in ops}
        assert read == {f"agency.{code}." for code in played}

    def test_services_consume_and_produce_only_literal_topics(self, overlay):
        for user in overlay.of_kind("KafkaUser"):
            if not user["metadata"]["name"].startswith("svc-"):
                continue
            for kind, name, pattern, operations in acls(user):
                if kind == "topic":
                    assert pattern == "literal", (user["metadata"]["name"], name)
                    assert operations in ({"Read", "Describe"}, {"Write", "Describe"})
                elif name.startswith("agency-"):
                    # another party's group: looked at (its offsets), never joined nor moved
                    assert (kind, pattern, operations) == ("group", "literal", {"Describe"})
                else:
                    assert (kind, operations) == ("group", {"Read"})

    def test_the_broker_writes_each_agency_topic_and_reads_each_agencys_replies(self, overlay):
        broker = acls(overlay.named("KafkaUser", "svc-inquiry-broker"))
        requests = acls(overlay.named("KafkaUser", "svc-requests"))
        write = frozenset({"Write", "Describe"})
        read = frozenset({"Read", "Describe"})
        for user in agency_users(overlay):
            code = user["metadata"]["labels"]["panjereh.io/agency"]
            assert ("topic", agency_inquiries(code), "literal", write) in broker
            assert ("topic", agency_replies(code), "literal", read) in broker
            assert ("topic", dead_letter(agency_replies(code)), "literal", write) in broker
            assert ("topic", agency_requests(code), "literal", write) in requests
            # how far the agency has read its inquiries: not delivered is not "not answered"
            assert ("group", f"agency-{code}", "literal", frozenset({"Describe"})) in broker

    def test_only_the_agency_itself_joins_its_consumer_group(self, overlay):
        """The broker describes the agencies' groups; reading one would let it move (or take
        over) the agency's offsets."""
        for code in agency_codes(overlay):
            members = {
                user["metadata"]["name"]
                for user in overlay.of_kind("KafkaUser")
                for kind, name, pattern, operations in acls(user)
                if kind == "group"
                and "Read" in operations
                and (
                    name == f"agency-{code}"
                    or (pattern == "prefix" and f"agency-{code}".startswith(name))
                )
            }
            assert members <= {f"agency-{code}", "agency-simulators"}, (code, members)

    def test_only_an_agency_writes_its_replies_topic(self, overlay):
        """The broker trusts the topic a reply arrives on: it names the sender."""
        for code in agency_codes(overlay):
            writers = {
                user["metadata"]["name"]
                for user in overlay.of_kind("KafkaUser")
                for kind, name, pattern, operations in acls(user)
                if kind == "topic"
                and "Write" in operations
                and (
                    name == agency_replies(code)
                    or (pattern == "prefix" and agency_replies(code).startswith(name))
                )
            }
            assert writers <= {f"agency-{code}", "agency-simulators"}, (code, writers)
            assert f"agency-{code}" in writers

    def test_only_the_broker_reads_submitted_requests(self, overlay):
        """They carry the subject's national code: purpose binding is their one use."""
        readers = {
            user["metadata"]["name"]
            for user in overlay.of_kind("KafkaUser")
            for kind, name, _, operations in acls(user)
            if kind == "topic" and "Read" in operations and REQUESTS_SUBMITTED.startswith(name)
        }
        assert readers == {"svc-inquiry-broker"}

    def test_only_the_broker_announces_agency_activity_and_the_catalog_reads_it(self, overlay):
        """A forged announcement would show an agency connected that is not: one writer."""

        def users_that(operation: str, topic: str) -> set[str]:
            return {
                user["metadata"]["name"]
                for user in overlay.of_kind("KafkaUser")
                for kind, name, pattern, operations in acls(user)
                if kind == "topic"
                and operation in operations
                and (name == topic or (pattern == "prefix" and topic.startswith(name)))
            }

        assert users_that("Write", INQUIRY_AGENCY_ACTIVE) == {"svc-inquiry-broker"}
        assert "svc-catalog" in users_that("Read", INQUIRY_AGENCY_ACTIVE)
        assert users_that("Write", dead_letter(INQUIRY_AGENCY_ACTIVE)) == {"svc-catalog"}
        catalog = acls(overlay.named("KafkaUser", "svc-catalog"))
        assert ("group", "catalog", "prefix", frozenset({"Read"})) in catalog

    def test_every_platform_topic_has_a_producer_and_a_dead_letter_writer(self, overlay):
        # a topic added to the contracts without an ACL to write it would fail in production
        writable = {
            name
            for user in overlay.of_kind("KafkaUser")
            for kind, name, pattern, operations in acls(user)
            if kind == "topic" and pattern == "literal" and "Write" in operations
        }
        for topic in PLATFORM_TOPICS:
            assert topic in writable, topic
            assert dead_letter(topic) in writable or topic not in consumed(overlay), topic

    def test_every_service_with_kafka_credentials_has_a_kafka_user(self, overlay):
        users = overlay.names("KafkaUser")
        for deployment in overlay.of_kind("Deployment"):
            for container in deployment["spec"]["template"]["spec"]["containers"]:
                env = {item["name"]: item for item in container.get("env", [])}
                if "KAFKA_SASL_USERNAME" in env:
                    username = env["KAFKA_SASL_USERNAME"]["value"]
                    assert username in users
                    secret = env["KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
                    assert secret == {"name": username, "key": "password"}
