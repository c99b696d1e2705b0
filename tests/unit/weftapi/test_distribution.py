"""The SDK and the server are separate distributions: neither depends on the other, and
the `weft` command belongs to the SDK (the fresh-venv integration test installs it)."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[3]


def _project(path: Path) -> dict:  # type: ignore[type-arg]
    return dict(tomllib.loads(path.read_text())["project"])


def _names(requirements: list[str]) -> set[str]:
    return {r.split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip() for r in requirements}


def test_the_server_does_not_carry_the_sdk_nor_the_sdk_the_server() -> None:
    server = _project(ROOT / "pyproject.toml")
    sdk = _project(ROOT / "clients" / "python" / "pyproject.toml")
    assert sdk["name"] == "weftapi" and sdk["requires-python"] == ">=3.9"
    assert _names(sdk["dependencies"]) == {"httpx", "httpx-sse", "pydantic"}
    assert _names(sdk["optional-dependencies"]["cli"]) == {"rich"}
    assert sdk["scripts"] == {"weft": "weftapi.cli:main"}
    every_server_requirement = server["dependencies"] + [
        r for extra in server["optional-dependencies"].values() for r in extra
    ]
    assert not _names(every_server_requirement) & {"weftapi", "httpx-sse"}
    assert "weft" not in server["scripts"]
    assert not (ROOT / "weft_client").exists()
