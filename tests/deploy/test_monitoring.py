"""Monitoring: every workload scraped, alerts and dashboard on metrics that really exist.

The platform's metric names are collected from the processes themselves: each component's app
module is imported (which registers its metrics on the process registry, as at start) and the
registry is read. Names from the Kafka and PostgreSQL exporters come from the JMX exporter
configuration in the manifests, or from a short list naming each exporter's documentation.
"""

from __future__ import annotations

import importlib
import json
import re
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from panjereh.devstack.stack import GATEWAY, PORTAL, SERVICES
from tests.deploy.conftest import DEPLOY
from tests.deploy.test_manifests import selects

MONITORING = DEPLOY / "k8s" / "base" / "monitoring"
DASHBOARD = MONITORING / "dashboards" / "panjereh.json"
KAFKA_METRICS = DEPLOY / "k8s" / "base" / "kafka" / "kafka-metrics.yaml"

#: metrics of exporters the manifests switch on but do not configure metric by metric
EXPORTER_METRICS = {
    # Strimzi's Kafka Exporter (kafkaExporter in the Kafka resource): danielqsj/kafka_exporter
    "kafka_consumergroup_lag",
    "kafka_topic_partition_current_offset",
    "kafka_topic_partition_oldest_offset",
    # CloudNativePG's instance exporter, default queries (monitoring.enablePodMonitor)
    "cnpg_pg_replication_lag",
    "cnpg_collector_up",
}
#: words of PromQL that look like metric names
_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def platform_metric_names() -> set[str]:
    """Every sample name the platform's processes can export (``_total``, ``_bucket``...)."""
    for component in (GATEWAY, PORTAL, *SERVICES):
        importlib.import_module(f"{component.package}.main")
    names: set[str] = set()
    for family in REGISTRY.collect():
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif family.type == "histogram":
            names |= {f"{family.name}_{suffix}" for suffix in ("bucket", "sum", "count", "created")}
        else:
            names.add(family.name)
        names |= {sample.name for sample in family.samples}
    return names


def jmx_metric_names() -> set[str]:
    """The names the brokers' JMX exporter rules produce (``$1`` over each alternation)."""
    config = yaml.safe_load(
        yaml.safe_load(KAFKA_METRICS.read_text())["data"]["kafka-metrics-config.yml"]
    )
    names: set[str] = set()
    for rule in config["rules"]:
        groups = re.findall(r"\(([^()]*)\)", rule["pattern"])
        candidates = [rule["name"]]
        for index, group in enumerate(groups, start=1):
            if f"${index}" not in rule["name"]:
                continue
            alternatives = group.split("|")
            candidates = [c.replace(f"${index}", a) for c in candidates for a in alternatives]
        names |= {candidate.lower() for candidate in candidates}
    return names


@pytest.fixture(scope="module")
def known_metrics() -> set[str]:
    return platform_metric_names() | jmx_metric_names() | EXPORTER_METRICS


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression reads (label matchers and grouping ignored)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expression)  # label values
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    names = set()
    for match in _NAME.finditer(text):
        word = match.group(0)
        following = text[match.end() :].lstrip()[:1]
        if following == "(" or word in _PROMQL_WORDS or word.isdigit():
            continue  # a function, an aggregation or a keyword
        if re.fullmatch(r"\d+[smhdwy]?", word) or word in {"e", "inf", "nan"}:
            continue
        names.add(word)
    return names


def alert_rules(rendered_overlay) -> list[dict[str, Any]]:
    (rule,) = rendered_overlay.of_kind("PrometheusRule")
    return [item for group in rule["spec"]["groups"] for item in group["rules"]]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panel_expressions(board: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in board["panels"] for target in panel.get("targets", [])]


class TestMetricNames:
    def test_the_collected_names_are_the_platforms(self, known_metrics):
        # the collection itself must see the kernel's, each service's and the gateway's metrics
        for name in (
            "panjereh_http_requests_total",
            "panjereh_outbox_oldest_pending_age_seconds",
            "panjereh_consumer_records_total",
            "panjereh_otp_events_total",
            "panjereh_inquiries_total",
            "panjereh_request_decisions_total",
            "panjereh_gateway_requests_total",
            "panjereh_db_pool_connections",
        ):
            assert name in known_metrics
        assert "kafka_server_replicamanager_underreplicatedpartitions" in known_metrics

    def test_every_alert_reads_only_exported_metrics(self, overlay, known_metrics):
        for rule in alert_rules(overlay):
            names = metric_names(rule["expr"])
            assert names, rule["alert"]
            assert names <= known_metrics, (rule["alert"], names - known_metrics)

    def test_every_dashboard_panel_reads_only_exported_metrics(self, known_metrics):
        expressions = panel_expressions(dashboard())
        assert len(expressions) > 20
        for expression in expressions:
            names = metric_names(expression)
            assert names, expression
            assert names <= known_metrics, (expression, names - known_metrics)

    def test_an_unknown_metric_is_caught(self, known_metrics):
        planted = 'sum by (job) (rate(panjereh_outbox_lag_seconds{job="x"}[5m])) > 1'
        assert metric_names(planted) == {"panjereh_outbox_lag_seconds"}
        assert not metric_names(planted) <= known_metrics
        histogram = 'histogram_quantile(0.99, sum by (le) (rate(a_bucket{b=~"5.."}[5m])))'
        assert metric_names(histogram) == {"a_bucket"}


#: what the alerts must watch, and a metric each must read
REQUIRED_ALERTS = {
    "outbox backlog": "panjereh_outbox_oldest_pending_age_seconds",
    "dead letters": "panjereh_consumer_records_total",
    "consumer lag": "panjereh_consumer_lag",
    "5xx ratio": "panjereh_http_requests_total",
    "p99 latency": "panjereh_http_request_duration_seconds_bucket",
    "OTP abuse": "panjereh_otp_events_total",
    "SLA breaches": "panjereh_requests_overdue_total",
    "audit chain": "panjereh_audit_verification_failures_total",
}


class TestAlerts:
    def test_the_alerts_that_matter_exist(self, prod):
        read = {name for rule in alert_rules(prod) for name in metric_names(rule["expr"])}
        missing = {what for what, metric in REQUIRED_ALERTS.items() if metric not in read}
        assert missing == set()

    def test_every_alert_has_a_severity_a_summary_and_a_runbook_line(self, prod):
        readme = (DEPLOY / "README.md").read_text()
        runbook = readme.split("### Alerts", 1)[1].split("\n## ", 1)[0]
        for rule in alert_rules(prod):
            name = rule["alert"]
            assert rule["labels"]["severity"] in ("warning", "critical"), name
            assert rule["annotations"]["summary"], name
            line = next((line for line in runbook.splitlines() if f"`{name}`" in line), "")
            assert len(line) > 80, f"{name} has no runbook line in deploy/README.md"


class TestScraping:
    def test_every_platform_process_has_a_pod_monitor_on_a_port_it_serves(self, overlay):
        monitors = overlay.of_kind("PodMonitor")
        for name in (GATEWAY.name, PORTAL.name, *(component.name for component in SERVICES)):
            deployment = overlay.named("Deployment", name)
            labels = deployment["spec"]["template"]["metadata"]["labels"]
            container = deployment["spec"]["template"]["spec"]["containers"][0]
            ports = {port["name"]: port["containerPort"] for port in container["ports"]}
            matching = [m for m in monitors if selects(m["spec"]["selector"], labels)]
            assert len(matching) == 1, name
            (endpoint,) = matching[0]["spec"]["podMetricsEndpoints"]
            assert endpoint["path"] == "/metrics"
            assert endpoint["port"] in ports, name

    def test_the_gateway_serves_metrics_off_the_public_port(self, overlay):
        data = overlay.named("ConfigMap", "gateway-config")["data"]
        port = int(data["PANJEREH_GATEWAY_METRICS_PORT"])
        service = overlay.named("Service", "gateway")
        assert port != 8080
        assert all(item["targetPort"] != "metrics" for item in service["spec"]["ports"])
        monitor = overlay.named("PodMonitor", "gateway")
        assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"

    def test_the_monitoring_namespace_may_scrape_every_metrics_port(self, overlay):
        for name in (GATEWAY.name, PORTAL.name, *(component.name for component in SERVICES)):
            deployment = overlay.named("Deployment", name)
            labels = deployment["spec"]["template"]["metadata"]["labels"]
            container = deployment["spec"]["template"]["spec"]["containers"][0]
            ports = {port["name"]: port["containerPort"] for port in container["ports"]}
            endpoint = overlay.named("PodMonitor", name)["spec"]["podMetricsEndpoints"][0]
            scraped = ports[endpoint["port"]]
            admitted = any(
                selects(policy["spec"]["podSelector"], labels)
                and any(
                    peer.get("namespaceSelector", {}).get("matchLabels", {})
                    == {"kubernetes.io/metadata.name": "monitoring"}
                    for peer in rule.get("from", [])
                )
                and any(port["port"] == scraped for port in rule.get("ports", []))
                for policy in overlay.of_kind("NetworkPolicy")
                for rule in policy["spec"].get("ingress", [])
            )
            assert admitted, name

    def test_databases_poolers_and_kafka_are_monitored(self, overlay):
        for cluster in overlay.of_kind("Cluster"):
            assert cluster["spec"]["monitoring"]["enablePodMonitor"] is True
        for pooler in overlay.of_kind("Pooler"):
            assert pooler["spec"]["monitoring"]["enablePodMonitor"] is True
        kafka = overlay.named("Kafka", "panjereh")["spec"]
        reference = kafka["kafka"]["metricsConfig"]["valueFrom"]["configMapKeyRef"]
        config = overlay.named("ConfigMap", reference["name"])["data"][reference["key"]]
        assert yaml.safe_load(config)["rules"]
        assert "kafkaExporter" in kafka
        assert {"kafka", "kafka-exporter"} <= overlay.names("PodMonitor")


class TestDashboard:
    def test_the_dashboard_is_structurally_valid_grafana_json(self):
        board = dashboard()
        assert board["uid"]
        assert board["title"]
        assert isinstance(board["schemaVersion"], int)
        assert board["schemaVersion"] >= 36
        variables = {item["name"]: item for item in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids))
        cells: set[tuple[int, int]] = set()
        for panel in board["panels"]:
            grid = panel["gridPos"]
            assert set(grid) == {"x", "y", "w", "h"}
            assert grid["x"] >= 0, panel["title"]
            assert grid["x"] + grid["w"] <= 24, panel["title"]
            assert grid["w"] > 0
            assert grid["h"] > 0
            taken = {
                (x, y)
                for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])
            }
            assert not taken & cells, f"{panel['title']} overlaps another panel"
            cells |= taken
            if panel["type"] == "row":
                continue
            assert panel["type"] in {"timeseries", "stat", "gauge", "table", "bargauge"}
            assert panel["datasource"]["uid"] == "${datasource}"
            refs = [target["refId"] for target in panel["targets"]]
            assert refs, panel["title"]
            assert len(refs) == len(set(refs)), panel["title"]
            for target in panel["targets"]:
                assert target["expr"].strip()
                # variables used must be defined
                for variable in re.findall(r"\$(\w+)", target["expr"]):
                    assert variable in variables, (panel["title"], variable)

    def test_grafana_gets_the_dashboard_from_a_labelled_config_map(self, overlay):
        config_map = overlay.named("ConfigMap", "panjereh-dashboard")
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert json.loads(config_map["data"]["panjereh.json"]) == dashboard()
