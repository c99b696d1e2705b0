"""Every environment variable a component's code reads is set in its rendered manifests,
and every WEFT_* variable the manifests set is read by that component.

The variables are found in the source: each component's modules (the import graph from
its entry module) are parsed and calls like env_str("WEFT_X", ...), env.get("WEFT_X"),
os.environ["WEFT_X"] collected. Names built at run time are expanded from the code's
own tables (DYNAMIC). Then the config dataclasses' from_env() run on the rendered env.
A failure here means: add the variable to deploy/k8s/base/config.yaml (or the
component's env in deploy/k8s/base/<component>.yaml).
"""

import ast
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from services.runs.domain.concurrency import PLANS
from services.runs.store.ratelimit import DEFAULT_LIMITS
from tests.support.k8s import K8S, build

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("gateway", "services", "weftcore")
ENTRY = {
    "gateway": "gateway.__main__",
    "auth": "services.auth.__main__",
    "runs": "services.runs.__main__",
    "runs-worker": "services.runs.worker.__main__",
    "storage": "services.storage.__main__",
    "billing": "services.billing.__main__",
}
READERS = {
    "env_str",
    "env_optional",
    "env_int",
    "env_float",
    "env_bool",
    "env_list",
    "getenv",
    "get",
}
# Variable names the code builds at run time (regex over the literal parts) -> the names
# the manifests must set. LLM providers are open-ended: the manifests configure "local"
# (the model the example workflows use) and "openai"; the generic knobs cover the rest.
DYNAMIC: dict[str, set[str]] = {
    r"WEFT_RATE_LIMIT_.*": {f"WEFT_RATE_LIMIT_{p.upper()}" for p in DEFAULT_LIMITS},
    r"WEFT_CONCURRENCY_LIMIT_.*": {f"WEFT_CONCURRENCY_LIMIT_{p.upper()}" for p in PLANS},
    r"WEFT_LLM_.*_": {
        "WEFT_LLM_LOCAL_BASE_URL",
        "WEFT_LLM_LOCAL_API_KEY",
        "WEFT_LLM_OPENAI_BASE_URL",
        "WEFT_LLM_OPENAI_API_KEY",
    },
    r"WEFT_LLM_.*": {
        "WEFT_LLM_TIMEOUT_SECONDS",
        "WEFT_LLM_MAX_RETRIES",
        "WEFT_LLM_BACKOFF_SECONDS",
        "WEFT_LLM_CONTEXT_TOKENS",
    },
}
# Read by the code but deliberately left to its default in the cluster, with why.
ALLOWED_UNSET: dict[str, set[str]] = {
    # weftcore/config.py (imported for the env_* helpers) also holds ServiceConfig, which
    # the gateway never builds: it listens on WEFT_HTTP_HOST/PORT, not a gRPC bind, and
    # serves /metrics on that port, not on a WEFT_METRICS_BIND of its own.
    "gateway": {"WEFT_GRPC_BIND", "WEFT_METRICS_BIND"},
}
# Set in the manifests without a WEFT_ prefix: Python's own switches.
NON_WEFT = {"PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"}


def _module_file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _imports(path: Path, module: str) -> Iterator[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            yield name
            yield from (f"{name}.{alias.name}" for alias in node.names)


def modules_of(entry: str) -> set[Path]:
    """The project's files a process started at `entry` can import (transitively)."""
    seen: set[str] = set()
    todo = [entry]
    files: set[Path] = set()
    while todo:
        module = todo.pop()
        if module in seen or module.split(".")[0] not in PACKAGES:
            continue
        seen.add(module)
        path = _module_file(module)
        if path is None:
            continue
        files.add(path)
        parts = module.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages
        todo.extend(_imports(path, module))
    return files


def _literal(node: ast.expr) -> str | None:
    """The variable name, or a regex for a name built at run time, that `node` gives."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return re.escape(node.value)
    if isinstance(node, ast.JoinedStr):
        return "".join(
            re.escape(str(v.value)) if isinstance(v, ast.Constant) else ".*" for v in node.values
        )
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _literal(node.left), _literal(node.right)
        return (left or ".*") + (right or ".*") if (left or right) else None
    if isinstance(node, ast.Name):
        return ".*"  # a prefix variable (e.g. the LLM provider's)
    return None


def reads_in(path: Path) -> set[str]:
    """Names (escaped regexes) of WEFT_* variables read in one file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        arg: ast.expr | None = None
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if name in READERS:
                arg = node.args[0]
        elif isinstance(node, ast.Subscript) and "environ" in ast.unparse(node.value):
            arg = node.slice
        if arg is None:
            continue
        pattern = _literal(arg)
        if pattern and pattern.startswith("WEFT_"):
            found.add(pattern)
    return found


def required(component: str) -> tuple[set[str], set[str]]:
    """(names the manifests must set, regexes of every name the component may read)."""
    patterns: set[str] = set()
    for path in modules_of(ENTRY[component]):
        patterns |= reads_in(path)
    names: set[str] = set()
    for pattern in patterns:
        if re.fullmatch(r"[A-Z0-9_\\]+", pattern):
            names.add(pattern.replace("\\", ""))
        else:
            assert pattern in DYNAMIC, f"{component}: expand {pattern!r} in DYNAMIC"
            names |= DYNAMIC[pattern]
    return names - ALLOWED_UNSET.get(component, set()), patterns


def manifest_env(objects: list[dict[str, Any]], component: str) -> dict[str, str]:
    """The env the component's container gets: envFrom ConfigMaps, then env entries
    (a Secret or field reference stands in as "<from name/key>")."""
    maps = {o["metadata"]["name"]: o["data"] for o in objects if o["kind"] == "ConfigMap"}
    (deployment,) = [
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == component
    ]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]])
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = str(entry["value"])
        else:
            ref = entry["valueFrom"].get("secretKeyRef") or entry["valueFrom"]["fieldRef"]
            env[entry["name"]] = (
                f"<from {ref.get('name', '')}/{ref.get('key', ref.get('fieldPath'))}>"
            )
    return env


@pytest.fixture(scope="module", params=("dev", "prod"))
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return build(K8S / "overlays" / str(request.param))


def test_the_scan_finds_known_reads() -> None:
    names, _ = required("runs-worker")
    assert {"WEFT_DATABASE_URL", "WEFT_WORKER_CONCURRENCY", "WEFT_HTTP_STAGE_ALLOWLIST"} <= names
    assert "WEFT_RATE_LIMIT_PRO" in required("runs")[0]
    gateway, _ = required("gateway")
    assert {"WEFT_HTTP_PORT", "WEFT_AUTH_CACHE_SECONDS"} <= gateway
    assert "WEFT_S3_BUCKET" not in gateway and "WEFT_S3_BUCKET" in required("storage")[0]


@pytest.mark.parametrize("component", sorted(ENTRY))
def test_every_variable_read_is_set(rendered: list[dict[str, Any]], component: str) -> None:
    names, _ = required(component)
    env = manifest_env(rendered, component)
    missing = sorted(n for n in names if n not in env)
    assert not missing, f"{component} reads {missing}: set them in deploy/k8s/base"


@pytest.mark.parametrize("component", sorted(ENTRY))
def test_every_variable_set_is_read(rendered: list[dict[str, Any]], component: str) -> None:
    _, patterns = required(component)
    env = manifest_env(rendered, component)
    unread = sorted(
        n for n in env if n not in NON_WEFT and not any(re.fullmatch(p, n) for p in patterns)
    )
    assert not unread, f"{component} never reads {unread} (typo, or remove it)"


class Recording(dict[str, str]):
    """An env mapping that notes every name looked up."""

    def __init__(self, values: Mapping[str, str]) -> None:
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return super().__getitem__(key)


def _configs(component: str, env: Recording) -> list[Any]:
    from gateway.config import GatewayConfig
    from services.billing.config import BillingConfig
    from services.runs.config import RunsConfig
    from services.runs.domain.ssrf import SSRFPolicy
    from services.runs.worker.config import WorkerConfig
    from services.storage.config import StorageConfig
    from weftcore.config import ServiceConfig

    built: list[Any] = []
    if component == "gateway":
        return [GatewayConfig.from_env(env)]
    if component == "runs-worker":
        built += [WorkerConfig.from_env(env), SSRFPolicy.from_env(env)]
    else:
        built.append(ServiceConfig.from_env("127.0.0.1:1", env))
    if component == "storage":
        built.append(StorageConfig.from_env(env))
    if component == "billing":
        built.append(BillingConfig.from_env(env))
    if component == "runs":
        built.append(RunsConfig.from_env(env))
    return built


@pytest.mark.parametrize("component", sorted(ENTRY))
def test_config_dataclasses_accept_the_manifest_env(
    rendered: list[dict[str, Any]], component: str
) -> None:
    env = Recording(manifest_env(rendered, component))
    configs = _configs(component, env)
    assert configs
    # Everything from_env looked up is set explicitly, not left to a default.
    assert sorted(env.asked - set(env)) == []
    if component == "gateway":
        (gateway,) = configs
        assert (gateway.host, gateway.port, gateway.processes) == ("0.0.0.0", 8080, 1)
        assert gateway.runs_addr == "runs:7102"
    if component == "runs":
        runs = configs[-1]
        assert runs.rate_limits == {
            p: int(env[f"WEFT_RATE_LIMIT_{p.upper()}"]) for p in DEFAULT_LIMITS
        }
        assert runs.workflows_dir == "/app/workflows" and runs.billing_addr == "billing:7104"
