"""deploy/k8s/components/monitoring: scraping reaches every process's /metrics, every
metric the alerts and the dashboard use is one the code exports, and the alert rules
pass `promtool check rules` and their own `promtool test rules`."""

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from prometheus_client import REGISTRY

import gateway.metrics
import services.billing.metrics
import services.runs.metrics
import services.runs.worker.metrics
import services.storage.metrics
import weftcore.metrics
from tests.support.k8s import K8S, build

ROOT = Path(__file__).resolve().parents[3]
MONITORING = K8S / "components" / "monitoring"
MODULES = (
    gateway.metrics,
    services.billing.metrics,
    services.runs.metrics,
    services.runs.worker.metrics,
    services.storage.metrics,
    weftcore.metrics,
)
CRDS = {"PodMonitor", "PrometheusRule"}
PROMTOOL = shutil.which("promtool")


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return build(K8S / "overlays" / "prod-monitoring")


def rules() -> dict[str, Any]:
    (rule,) = yaml.safe_load_all((MONITORING / "prometheusrule.yaml").read_text())
    return dict(rule["spec"])


def dashboard() -> dict[str, Any]:
    return dict(json.loads((MONITORING / "weft-dashboard.json").read_text()))


def exported() -> set[str]:
    """Every sample name the processes' metric modules (imported above) expose."""
    return {
        sample.name
        for metric in REGISTRY.collect()
        for sample in metric.samples
        if sample.name.startswith("weft_")
    } | {
        # Histograms and labelled counters show samples only once observed.
        f"{name}{suffix}"
        for module in MODULES
        for value in vars(module).values()
        if hasattr(value, "_name") and hasattr(value, "_type")
        for name in [value._name]
        for suffix in (
            ("_total",)
            if value._type == "counter"
            else ("_bucket", "_count", "_sum")
            if value._type == "histogram"
            else ("",)
        )
    }


def names_in(expr: str) -> set[str]:
    return set(re.findall(r"\bweft_[a-z_]+", expr))


def test_the_base_overlays_stay_free_of_the_operators_kinds() -> None:
    for name in ("dev", "prod"):
        kinds = {o["kind"] for o in build(K8S / "overlays" / name)}
        assert not kinds & CRDS, name


def test_the_monitoring_overlay_adds_valid_objects(rendered: list[dict[str, Any]]) -> None:
    prod = {(o["kind"], o["metadata"]["name"]) for o in build(K8S / "overlays" / "prod")}
    added = [o for o in rendered if (o["kind"], o["metadata"]["name"]) not in prod]
    assert sorted((o["kind"], o["metadata"]["name"]) for o in added) == [
        ("ConfigMap", "weft-grafana-dashboard"),
        ("NetworkPolicy", "allow-prometheus-scrape"),
        ("PodMonitor", "weft-gateway"),
        ("PodMonitor", "weft-services"),
        ("PrometheusRule", "weft-alerts"),
    ]
    for obj in added:
        assert obj["metadata"]["namespace"] == "weft"
        if obj["kind"] not in CRDS:
            kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def test_pod_monitors_scrape_a_named_port_of_every_component(
    rendered: list[dict[str, Any]],
) -> None:
    deployments = {o["metadata"]["name"]: o for o in rendered if o["kind"] == "Deployment"}
    scraped: dict[str, str] = {}
    for monitor in (o for o in rendered if o["kind"] == "PodMonitor"):
        (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
        assert endpoint["path"] == "/metrics"
        for name, deployment in deployments.items():
            pod = deployment["spec"]["template"]
            if not _matches(monitor["spec"]["selector"], pod["metadata"]["labels"]):
                continue
            (container,) = pod["spec"]["containers"]
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            assert endpoint["port"] in ports, (name, endpoint)
            if endpoint["port"] == "metrics":
                env = {e["name"]: e.get("value") for e in container["env"]}
                assert env["WEFT_METRICS_BIND"] == f"0.0.0.0:{ports['metrics']}", name
            scraped[name] = endpoint["port"]
    assert set(scraped) == set(deployments)
    # The network policy lets Prometheus reach the metrics port.
    (policy,) = [o for o in rendered if o["metadata"]["name"] == "allow-prometheus-scrape"]
    assert policy["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 9090}]


def test_alerts_and_dashboard_use_only_exported_metrics() -> None:
    known = exported()
    assert "weft_runs_created_total" in known and "weft_http_requests_total" in known
    used: set[str] = set()
    for group in rules()["groups"]:
        for rule in group["rules"]:
            used |= names_in(rule["expr"])
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            used |= names_in(target["expr"])
    assert used, "no metric found"
    assert not used - known, f"unknown metrics: {sorted(used - known)}"


def test_every_alert_has_a_runbook_in_the_operations_doc() -> None:
    doc = (ROOT / "docs" / "operations.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in doc.splitlines()
        if line.startswith("#")
    }
    alerts = [r for g in rules()["groups"] for r in g["rules"] if "alert" in r]
    assert len(alerts) >= 6
    for rule in alerts:
        anchor = rule["annotations"]["runbook"].removeprefix("docs/operations.md#")
        assert anchor == rule["alert"].lower()
        assert anchor in anchors, rule["alert"]


def test_the_dashboard_is_a_grafana_dashboard() -> None:
    board = dashboard()
    assert board["uid"] and board["title"]
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert len(panels) >= 15
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    for panel in panels:
        assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}"


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    (tmp_path / "weft-alerts.rules.yaml").write_text(yaml.safe_dump(rules()))
    shutil.copy(MONITORING / "alerts.test.yaml", tmp_path / "alerts.test.yaml")
    return tmp_path


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    if PROMTOOL is None:
        pytest.skip("promtool not installed (scripts/setup installs Debian's prometheus)")
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def test_promtool_checks_the_rules(rules_dir: Path) -> None:
    done = promtool("check", "rules", "weft-alerts.rules.yaml", cwd=rules_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_runs_the_alert_unit_tests(rules_dir: Path) -> None:
    done = promtool("test", "rules", "alerts.test.yaml", cwd=rules_dir)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_fails_a_wrong_expectation(rules_dir: Path) -> None:
    # The unit tests can fail: a rule that never fires breaks them.
    spec = rules()
    spec["groups"][-1]["rules"][-1]["expr"] = "vector(0) > 1"
    (rules_dir / "weft-alerts.rules.yaml").write_text(yaml.safe_dump(spec))
    done = promtool("test", "rules", "alerts.test.yaml", cwd=rules_dir)
    assert done.returncode != 0
