"""deploy/k8s renders (dev and prod) into objects that are valid for Kubernetes and follow
the rules of docs/kubernetes.md: probes, hardened pods, grace periods, PDBs, HPAs,
network policies, backing servers through their operators, one image."""

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.support.k8s import K8S, KustomizeError, build

ROOT = Path(__file__).resolve().parents[3]
OVERLAYS = ("dev", "prod")
# Oldest version we support (native gRPC probes are GA since 1.27) and the newest schema.
K8S_VERSIONS = ("1.30", kubernetes_validate.latest_version())
GRPC_COMPONENTS = {
    "auth": 7101,
    "runs": 7102,
    "runs-worker": 7110,
    "storage": 7103,
    "billing": 7104,
}
COMPONENTS = ("gateway", *GRPC_COMPONENTS)
# Custom resources of the operators: no built-in schema; checked field by field below.
CUSTOM = {("postgresql.cnpg.io/v1", "Cluster"), ("minio.min.io/v2", "Tenant")}


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    name = str(request.param)
    return name, build(K8S / "overlays" / name)


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    """Init and regular containers of a Deployment's or a Job's pod template."""
    spec = workload["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def only_container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def config_value(objects: list[dict[str, Any]], key: str) -> str:
    values = {o["data"][key] for o in objects if o["kind"] == "ConfigMap" and key in o["data"]}
    assert len(values) == 1, (key, values)
    return str(values.pop())


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_rendered_object_is_valid_against_the_kubernetes_schemas(name: str) -> None:
    objects = build(K8S / "overlays" / name) + build(K8S / "overlays" / name / "migrate")
    checked = 0
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) in CUSTOM:
            continue
        for version in K8S_VERSIONS:
            # strict: unknown fields (typos) are errors too.
            kubernetes_validate.validate(obj, version, strict=True)
        checked += 1
    assert checked >= 40


def test_the_validator_rejects_a_broken_object() -> None:
    (deployment,) = [o for o in build(K8S / "overlays" / "dev") if o["kind"] == "Deployment"][:1]
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["grpcc"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[0], strict=True)


def test_a_broken_kustomization_fails_with_kustomizes_message(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources:\n- missing.yaml\n")
    with pytest.raises(KustomizeError, match=r"missing\.yaml"):
        build(tmp_path)


def test_overlays_set_namespace_image_and_sizes(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    name, objects = overlay
    namespace = {"dev": "weft-dev", "prod": "weft"}[name]
    assert list(by_kind(objects, "Namespace")) == [namespace]
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == namespace, obj["metadata"]
    images = {
        c["image"] for d in by_kind(objects, "Deployment").values() for c in [only_container(d)]
    }
    expected = {"dev": "weft:dev", "prod": "registry.example.com/weft/weft:0.1.0"}[name]
    assert images == {expected}
    hpas = by_kind(objects, "HorizontalPodAutoscaler")
    assert hpas["gateway"]["spec"]["minReplicas"] == {"dev": 1, "prod": 3}[name]
    deployments = by_kind(objects, "Deployment")
    # The HPA owns the gateway's and workers' replica count; apply must not reset it.
    assert "replicas" not in deployments["gateway"]["spec"]
    assert "replicas" not in deployments["runs-worker"]["spec"]
    assert deployments["runs"]["spec"]["replicas"] == {"dev": 1, "prod": 3}[name]


def test_a_deployment_service_and_pdb_per_component(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    _, objects = overlay
    for kind in ("Deployment", "Service", "PodDisruptionBudget"):
        assert set(by_kind(objects, kind)) == set(COMPONENTS), kind
    services = by_kind(objects, "Service")
    for name, port in GRPC_COMPONENTS.items():
        (svc_port,) = services[name]["spec"]["ports"]
        assert (svc_port["port"], svc_port["targetPort"]) == (port, "grpc")
    for pdb in by_kind(objects, "PodDisruptionBudget").values():
        assert pdb["spec"]["maxUnavailable"] == 1


def test_entrypoints_probes_and_binds(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = overlay
    deployments = by_kind(objects, "Deployment")
    args = {n: only_container(d)["args"] for n, d in deployments.items()}
    assert args == {
        "gateway": ["-m", "gateway"],
        "auth": ["-m", "services.auth", "serve"],
        "runs": ["-m", "services.runs", "serve"],
        "runs-worker": ["-m", "services.runs.worker"],
        "storage": ["-m", "services.storage", "serve"],
        "billing": ["-m", "services.billing", "serve"],
    }
    for name, port in GRPC_COMPONENTS.items():
        container = only_container(deployments[name])
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"] == {"port": port}, (name, probe)
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["WEFT_GRPC_BIND"] == f"0.0.0.0:{port}"
        assert container["ports"][0]["containerPort"] == port
    gateway = only_container(deployments["gateway"])
    # /readyz fails whenever any one service is down: as a readiness probe it would take
    # every gateway out of the Service at once.
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e.get("value") for e in gateway["env"]}
    assert (env["WEFT_HTTP_HOST"], env["WEFT_HTTP_PORT"]) == ("0.0.0.0", "8080")


def test_pods_are_non_root_read_only_and_drop_everything(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    _, objects = overlay
    migrate = build(K8S / "overlays" / overlay[0] / "migrate")
    workloads = [*by_kind(objects, "Deployment").values(), *by_kind(migrate, "Job").values()]
    assert len(workloads) == 7
    for workload in workloads:
        spec = workload["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == 10001
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert "emptyDir" in volumes["tmp"]
        for container in containers(workload):
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
            limits, requests = container["resources"]["limits"], container["resources"]["requests"]
            assert {"cpu", "memory"} <= set(limits) and {"cpu", "memory"} <= set(requests)


def _seconds(value: str) -> float:
    return float(value)


def test_termination_grace_outlasts_the_services_grace_period(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    _, objects = overlay
    grace = _seconds(config_value(objects, "WEFT_GRACE_SECONDS"))
    for name, deployment in by_kind(objects, "Deployment").items():
        spec = deployment["spec"]["template"]["spec"]
        container = only_container(deployment)
        pre_stop = 0.0
        if "lifecycle" in container:
            command = container["lifecycle"]["preStop"]["exec"]["command"]
            assert command[0] == "sleep"
            pre_stop = float(command[1])
        # The kubelet's clock covers the preStop hook and the SIGTERM grace together.
        assert spec["terminationGracePeriodSeconds"] > pre_stop + grace, name
        strategy = deployment["spec"]["strategy"]["rollingUpdate"]
        assert strategy["maxUnavailable"] == 0, name
    gateway = only_container(by_kind(objects, "Deployment")["gateway"])
    assert float(gateway["lifecycle"]["preStop"]["exec"]["command"][1]) >= 5


def test_hpas_scale_gateway_and_workers_on_cpu(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = overlay
    hpas = by_kind(objects, "HorizontalPodAutoscaler")
    assert set(hpas) == {"gateway", "runs-worker"}
    for name, hpa in hpas.items():
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
        }
        (metric,) = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
        assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def _egress_targets(policy: dict[str, Any]) -> set[tuple[str, int]]:
    """(peer, port) pairs a policy lets its pods call; peer is a pod's name label, a
    backing server, or "internet"."""
    found: set[tuple[str, int]] = set()
    for rule in policy["spec"].get("egress", []):
        for peer in rule.get("to", []):
            labels = peer.get("podSelector", {}).get("matchLabels", {})
            if "ipBlock" in peer:
                who = "internet"
            elif "cnpg.io/cluster" in labels:
                who = "postgres"
            elif "v1.min.io/tenant" in labels:
                who = "minio"
            else:
                who = labels.get("app.kubernetes.io/name", labels.get("k8s-app", "?"))
            for port in rule.get("ports", []):
                found.add((who, int(port["port"])))
    return found


def test_network_policies_allow_only_the_architectures_calls(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    _, objects = overlay
    policies = by_kind(objects, "NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny == {
        "podSelector": {},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [],
        "egress": [],
    }
    services = {"auth": 7101, "runs": 7102, "storage": 7103, "billing": 7104}
    calls = {
        "gateway": {*services.items(), ("nats", 4222), ("postgres", 5432)},
        "auth": {("postgres", 5432)},
        "runs": {
            ("billing", 7104), ("storage", 7103), ("postgres", 5432), ("nats", 4222),
            ("internet", 443), ("internet", 80),
        },
        "billing": {("postgres", 5432), ("nats", 4222)},
        "storage": {("postgres", 5432), ("minio", 9000)},
        "migrate": {("postgres", 5432)},
    }  # fmt: skip
    calls["runs-worker"] = calls["runs"]
    for name, expected in calls.items():
        assert _egress_targets(policies[name]) == expected, name
    internet = next(
        rule["to"][0]["ipBlock"]
        for rule in policies["runs-worker"]["spec"]["egress"]
        if "ipBlock" in rule["to"][0]
    )
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= set(
        internet["except"]
    )
    # Ingress to each gRPC service: only from its callers (and weft-admin pods).
    callers = {
        "auth": {"gateway"},
        "runs": {"gateway"},
        "storage": {"gateway", "runs", "runs-worker"},
        "billing": {"gateway", "runs", "runs-worker"},
    }
    for name, expected_callers in callers.items():
        (rule,) = policies[name]["spec"]["ingress"]
        names = {
            p["podSelector"]["matchLabels"].get("app.kubernetes.io/name", "admin")
            for p in rule["from"]
        }
        assert names == expected_callers | {"admin"}, name
        assert rule["ports"] == [{"protocol": "TCP", "port": services[name]}]
    assert policies["runs-worker"]["spec"]["ingress"] == []


def test_backing_servers_come_from_their_operators(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    name, objects = overlay
    assert not by_kind(objects, "StatefulSet"), "backing servers are operator-managed"
    cluster = by_kind(objects, "Cluster")["weft-pg"]
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    assert cluster["spec"]["instances"] == {"dev": 1, "prod": 3}[name]
    assert cluster["spec"]["bootstrap"]["initdb"]["database"] == "weft"
    tenant = by_kind(objects, "Tenant")["weft-minio"]
    assert [b["name"] for b in tenant["spec"]["buckets"]] == [
        config_value(objects, "WEFT_S3_BUCKET")
    ]
    assert config_value(objects, "WEFT_S3_ENDPOINT") == "minio:80"
    assert tenant["spec"]["requestAutoCert"] is False
    assert config_value(objects, "WEFT_S3_SECURE") == "false"
    (pool,) = tenant["spec"]["pools"]
    assert pool["servers"] * pool["volumesPerServer"] >= 4  # erasure coding needs 4 drives
    # The database URL is the Secret CloudNativePG writes for the cluster.
    for deployment in by_kind(objects, "Deployment").values():
        env = {e["name"]: e for e in only_container(deployment)["env"]}
        ref = env["WEFT_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": f"{cluster['metadata']['name']}-app", "key": "uri"}
    nats = yaml.safe_load((K8S / "backing" / "nats-values.yaml").read_text())
    assert nats["config"]["cluster"] == {"enabled": True, "replicas": 3}
    assert nats["config"]["jetstream"]["enabled"] is True
    assert nats["config"]["jetstream"]["fileStore"]["pvc"]["enabled"] is True
    assert config_value(objects, "WEFT_NATS_URL") == "nats://nats:4222"
    # Streams are replicated over the whole NATS cluster in prod (one node in dev).
    replicas = {"dev": 1, "prod": nats["config"]["cluster"]["replicas"]}[name]
    assert config_value(objects, "WEFT_NATS_STREAM_REPLICAS") == str(replicas)


def test_secrets_referenced_by_pods_exist_in_dev() -> None:
    objects = build(K8S / "overlays" / "dev")
    secrets = {
        n: {**s.get("data", {}), **s.get("stringData", {})}
        for n, s in by_kind(objects, "Secret").items()
    }
    for deployment in by_kind(objects, "Deployment").values():
        for entry in only_container(deployment)["env"]:
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            if ref is None or ref["name"] == "weft-pg-app":  # written by CloudNativePG
                continue
            assert ref["key"] in secrets[ref["name"]], ref
    tenant = by_kind(objects, "Tenant")["weft-minio"]
    assert tenant["spec"]["configuration"]["name"] in secrets
    user = secrets[tenant["spec"]["users"][0]["name"]]
    assert (user["CONSOLE_ACCESS_KEY"], user["CONSOLE_SECRET_KEY"]) == (
        secrets["weft-s3"]["access-key"],
        secrets["weft-s3"]["secret-key"],
    )


def test_prod_renders_no_secrets() -> None:
    assert not by_kind(build(K8S / "overlays" / "prod"), "Secret")


def test_migration_job_migrates_every_service_in_order() -> None:
    for name in OVERLAYS:
        (job,) = build(K8S / "overlays" / name / "migrate")
        assert job["kind"] == "Job"
        args = [c["args"] for c in containers(job)]
        assert args == [
            ["-m", f"services.{svc}", "migrate"] for svc in ("auth", "billing", "storage", "runs")
        ]
        app = build(K8S / "overlays" / name)
        image = only_container(by_kind(app, "Deployment")["gateway"])["image"]
        assert {c["image"] for c in containers(job)} == {image}
        assert (
            job["metadata"]["namespace"]
            == by_kind(app, "Deployment")["gateway"]["metadata"]["namespace"]
        )


def test_keda_option_targets_the_worker_consumer() -> None:
    (scaled,) = yaml.safe_load_all((K8S / "optional" / "keda-runs-worker.yaml").read_text())
    assert scaled["spec"]["scaleTargetRef"]["name"] == "runs-worker"
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "nats-jetstream"
    from services.runs.worker.consumer import DURABLE
    from weftcore.nats import JOBS_STREAM

    assert trigger["metadata"]["stream"] == JOBS_STREAM
    assert trigger["metadata"]["consumer"] == DURABLE


def _listed_objects(directory: Path) -> list[tuple[str, str]]:
    """(kind, name) of every object in the files a kustomization lists as resources,
    following listed directories, read straight from the YAML."""
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    found: list[tuple[str, str]] = []
    for entry in spec.get("resources", []):
        target = directory / entry
        if target.is_dir():
            found += _listed_objects(target)
        else:
            docs = yaml.safe_load_all(target.read_text())
            found += [(d["kind"], d["metadata"]["name"]) for d in docs if d is not None]
    return found


@pytest.mark.parametrize("path", [*OVERLAYS, *(f"{name}/migrate" for name in OVERLAYS)])
def test_kustomize_renders_every_listed_object_once(path: str) -> None:
    # Patches, images and replicas change objects, never add or drop one.
    directory = K8S / "overlays" / path
    rendered = sorted((o["kind"], o["metadata"]["name"]) for o in build(directory))
    assert rendered == sorted(_listed_objects(directory))


def test_image_name_matches_the_documented_build() -> None:
    docs = (ROOT / "docs" / "kubernetes.md").read_text()
    built = set(re.findall(r"build -t (\S+?):(\S+) -f Containerfile", docs))
    assert built, "docs/kubernetes.md shows how to build the image"
    kustomization = yaml.safe_load((K8S / "overlays" / "prod" / "kustomization.yaml").read_text())
    (image,) = kustomization["images"]
    assert (image["newName"], image["newTag"]) in built
    dev = yaml.safe_load((K8S / "overlays" / "dev" / "kustomization.yaml").read_text())
    assert (dev["images"][0]["newName"], dev["images"][0]["newTag"]) in built
