"""The TypeScript client (clients/typescript, npm package `weftapi`) against the live stack.

Its pinned dev packages install with `npm ci` into .weft/typescript-client/<lock hash>
(tests/support/npm.py). In a copy of the package: the generated types must equal a fresh
generation from gateway/openapi.yaml, the sources must be as prettier formats them, `tsc`
must build dist/ (what `npm pack` ships), and `node --test` runs test/*.test.ts,
compiled, against this stack.
"""

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from devstack.ports import free_port
from devstack.stack import PROJECT_ROOT
from tests.support.npm import npm_packages
from tests.support.runs import Account, apply_workflow

PACKAGE = PROJECT_ROOT / "clients" / "typescript"
COPIED = (
    "package.json",
    "package-lock.json",
    "tsconfig.json",
    "tsconfig.test.json",
    ".prettierrc.json",
    ".prettierignore",
    "src",
    "test",
)
FIELDS: list[dict[str, Any]] = [
    {"name": "count", "type": "integer", "required": True, "constraints": {"min": 1}},
    {"name": "tone", "type": "select", "constraints": {"options": ["formal", "casual"]}},
]
TEMPLATE = '{{ {"input": input_text, "count": params.count, "tone": params.tone} | tojson }}'
REVIEW: list[dict[str, Any]] = [
    {"id": "draft", "type": "template", "template": "draft: {{ input_text }}"},
    {
        "id": "review",
        "type": "human_review",
        "prompt": "OK?",
        "fields": [{"name": "approved", "type": "boolean", "required": True}],
    },
]


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{args[:4]} failed:\n{output[-8000:]}"
    return output


def _env(**extra: str) -> dict[str, str]:
    return {
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": os.environ.get("HOME", "/tmp"),
        "NO_COLOR": "1",
        **extra,
    }


def _package_copy(tmp_path: Path) -> tuple[Path, Path]:
    node_modules = npm_packages(PACKAGE, "typescript-client")
    work = tmp_path / "typescript"
    work.mkdir()
    for name in COPIED:
        source = PACKAGE / name
        if source.is_dir():
            shutil.copytree(source, work / name)
        else:
            shutil.copy(source, work)
    (work / "node_modules").symlink_to(node_modules)
    return work, node_modules


async def test_the_typescript_client_builds_and_passes_its_tests_against_the_stack(
    stack: Any, account: Account, tmp_path: Path
) -> None:
    work, node_modules = await asyncio.to_thread(_package_copy, tmp_path)
    env = _env()

    # The committed types are what the OpenAPI document generates today.
    generator = str(node_modules / "openapi-typescript" / "bin" / "cli.js")
    spec = str(PROJECT_ROOT / "gateway" / "openapi.yaml")
    await asyncio.to_thread(_run, ["node", generator, spec, "-o", "fresh.ts"], work, env)
    assert (work / "fresh.ts").read_text() == (work / "src" / "schema.ts").read_text(), (
        "clients/typescript/src/schema.ts is stale: run `npm run generate` there"
    )

    # Formatted as `npm run format` leaves it (prettier, like ruff format for Python).
    prettier = str(node_modules / "prettier" / "bin" / "prettier.cjs")
    sources = [str(p) for folder in ("src", "test") for p in sorted((work / folder).glob("*.ts"))]
    await asyncio.to_thread(_run, ["node", prettier, "--check", *sources], work, env)

    # The publishable build: strict tsc into dist/, with declarations, as `npm pack` ships.
    tsc = str(node_modules / "typescript" / "bin" / "tsc")
    await asyncio.to_thread(_run, ["node", tsc, "-p", "tsconfig.json"], work, env)
    packed = await asyncio.to_thread(
        _run, ["npm", "pack", "--dry-run", "--json", "--ignore-scripts"], work, env
    )
    files = {f["path"] for f in json.loads(packed[packed.index("[") :])[0]["files"]}
    assert {"dist/index.js", "dist/index.d.ts", "dist/schema.d.ts", "package.json"} <= files
    assert not any(f.startswith(("src/", "test/", "node_modules/")) for f in files), files

    echo_stage = {"id": "echo", "type": "template", "output": "json", "template": TEMPLATE}
    echo = await apply_workflow(stack, [echo_stage], fields=FIELDS)
    review = await apply_workflow(stack, REVIEW)
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{stack.base_url}/api/v1/workflows/{echo}", headers=account.headers) as got,
    ):
        slug = (await got.json())["data"]["slug"]

    await asyncio.to_thread(_run, ["node", tsc, "-p", "tsconfig.test.json"], work, env)
    test_env = _env(
        WEFT_API_KEY=account.token,
        WEFT_BASE_URL=stack.base_url,
        WEFT_TEST_ECHO_WORKFLOW=echo,
        WEFT_TEST_ECHO_SLUG=slug,
        WEFT_TEST_REVIEW_WORKFLOW=review,
        WEFT_TEST_CLOSED_URL=f"http://127.0.0.1:{free_port()}",
    )
    args = ["node", "--test", "--test-reporter=tap", "build-test/test/"]
    output = await asyncio.to_thread(_run, args, work, test_env, 600)
    passed = re.search(r"^# pass (\d+)$", output, re.MULTILINE)
    failed = re.search(r"^# fail (\d+)$", output, re.MULTILINE)
    assert passed and failed, output[-3000:]
    assert int(failed.group(1)) == 0, output[-8000:]
    assert int(passed.group(1)) >= 12, output[-3000:]
    assert account.token not in output  # no key in what the tests print
