"""A real n8n for the tests: installed with npm once per version into a cache outside the
repository (~/.cache/weft/n8n-<version>, about 2.4 GB), with the Weft node package built
from clients/n8n and installed as a community package into a throwaway user folder."""

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from devstack.ports import free_port
from devstack.stack import PROJECT_ROOT
from tests.support.npm import install_cached, npm_packages

N8N_VERSION = "2.8.4"
NODE_PACKAGE = PROJECT_ROOT / "clients" / "n8n"
# The xlsx tarball n8n depends on by default is not reachable; 0.18.5 is on the registry.
RUNNER_PACKAGE = {
    "name": "weft-n8n-runner",
    "private": True,
    "dependencies": {"n8n": N8N_VERSION},
    "overrides": {"xlsx": "0.18.5"},
}


def n8n_binary() -> Path:
    """node_modules/.bin/n8n of the cached install, installing it first when missing."""
    cache = Path.home() / ".cache" / "weft" / f"n8n-{N8N_VERSION}"
    binary = cache / "node_modules" / ".bin" / "n8n"
    if not binary.exists():
        install_cached(
            cache,
            {"package.json": json.dumps(RUNNER_PACKAGE).encode()},
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
            1800,
        )
    return binary


def build_node_package(work: Path) -> Path:
    """clients/n8n compiled with its pinned tsc into `work`; answers the package folder."""
    modules = npm_packages(NODE_PACKAGE, "n8n-node")
    source = work / "source"
    shutil.copytree(NODE_PACKAGE, source, ignore=shutil.ignore_patterns("node_modules", "dist"))
    (source / "node_modules").symlink_to(modules)
    for args in (
        ["node", "node_modules/typescript/bin/tsc", "-p", "tsconfig.json"],
        ["node", "scripts/copy-icons.mjs"],
    ):
        done = subprocess.run(args, cwd=source, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{args} failed:\n{done.stdout}{done.stderr}"
    # What `npm pack` ships (package.json "files"): n8n resolves n8n-workflow itself.
    package = work / "n8n-nodes-weft"
    package.mkdir()
    for name in ("package.json", "index.js", "README.md", "dist"):
        if (source / name).is_dir():
            shutil.copytree(source / name, package / name)
        elif (source / name).exists():
            shutil.copy(source / name, package / name)
    return package


class N8n:
    """One n8n user folder (SQLite, its own encryption key) and its CLI."""

    def __init__(self, binary: Path, folder: Path, package: Path, files: Path) -> None:
        self.binary = binary
        self.folder = folder
        # Where n8n looks for installed community packages (n8n-nodes-*).
        nodes = folder / ".n8n" / "nodes" / "node_modules"
        nodes.mkdir(parents=True)
        shutil.copytree(package, nodes / package.name)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(folder),
            "N8N_USER_FOLDER": str(folder),
            "N8N_ENCRYPTION_KEY": "weft-test-encryption-key",
            "N8N_RESTRICT_FILE_ACCESS_TO": str(files),
            "N8N_DIAGNOSTICS_ENABLED": "false",
            "N8N_VERSION_NOTIFICATIONS_ENABLED": "false",
            "N8N_LOG_LEVEL": "info",
            "N8N_ENFORCE_SETTINGS_FILE_PERMISSIONS": "false",
            "NODE_OPTIONS": "--max-old-space-size=1024",
            # The task runners' broker: its default port would clash with another n8n.
            "N8N_RUNNERS_BROKER_PORT": str(free_port()),
        }

    def _run(self, args: tuple[str, ...], timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.binary), *args],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def cli(self, *args: str, timeout: float = 180) -> str:
        done = self._run(args, timeout)
        output = f"{done.stdout[-6000:]}{done.stderr[-4000:]}"
        assert done.returncode == 0, f"n8n {args[0]} failed:\n{output}"
        return done.stdout

    def execute(self, workflow_id: str) -> dict[str, Any]:
        """`n8n execute --id`: answers each node's last output item (JSON) by node name."""
        out = self.cli("execute", f"--id={workflow_id}", "--rawOutput")
        # The execution is the JSON document after n8n's start-up lines.
        start = out.find("\n{")
        assert start >= 0, f"{workflow_id}: no execution in the output:\n{out[-6000:]}"
        # raw_decode: the task runner may log a line after it.
        run, _ = json.JSONDecoder().raw_decode(out[start + 1 :])
        error = run["data"]["resultData"].get("error")
        assert error is None, f"{workflow_id} failed: {json.dumps(error)[:3000]}"
        outputs: dict[str, Any] = {}
        for name, runs in run["data"]["resultData"]["runData"].items():
            main = runs[-1].get("data", {}).get("main", [])
            items = [item for branch in main if branch for item in branch]
            outputs[name] = items[-1]["json"] if items else None
        return outputs

    def execute_failing(self, workflow_id: str) -> str:
        """`n8n execute --id` of an execution that must fail: answers its whole output."""
        done = self._run(("execute", f"--id={workflow_id}", "--rawOutput"), 180)
        output = done.stdout + done.stderr
        assert '"error"' in output and "Execution was NOT successful" in output, output[-6000:]
        return output

    @contextmanager
    def server(self) -> Iterator[str]:
        """`n8n start` on a free loopback port (the editor and its REST API): its URL."""
        port = free_port()
        env = {
            **self.env,
            "N8N_PORT": str(port),
            "N8N_LISTEN_ADDRESS": "127.0.0.1",
            "N8N_HOST": "127.0.0.1",
            "N8N_SECURE_COOKIE": "false",
            "N8N_PERSONALIZATION_ENABLED": "false",
            "N8N_LOG_LEVEL": "warn",
        }
        log = (self.folder / "server.log").open("w")
        process = subprocess.Popen(
            [str(self.binary), "start"],
            cwd=self.folder,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                assert process.poll() is None, (self.folder / "server.log").read_text()[-4000:]
                assert time.monotonic() < deadline, "n8n did not start within 120 s"
                try:
                    with urllib.request.urlopen(f"{url}/rest/settings", timeout=2) as answer:
                        if answer.status == 200:
                            break
                except OSError:
                    pass
                time.sleep(1)
            yield url
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            log.close()
