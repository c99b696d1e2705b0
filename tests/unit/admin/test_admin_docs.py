"""`weft-admin --help` and every `weft-admin <group> <command>` the docs show name only
commands that exist."""

import argparse
import re
from pathlib import Path

import pytest

from admin.__main__ import build_parser

ROOT = Path(__file__).resolve().parents[3]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# `weft-admin users create`, `-m admin prices list` (the Kubernetes one-off pod).
MENTION = re.compile(r"(?:weft-admin|-m admin) +([a-z][a-z-]*)(?: +([a-z][a-z-]*))?")


def _commands() -> dict[str, set[str]]:
    groups = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    out = {}
    for name, group in groups.choices.items():
        sub = next(a for a in group._actions if isinstance(a, argparse._SubParsersAction))
        out[name] = set(sub.choices)
    return out


def test_every_group_has_commands() -> None:
    commands = _commands()
    assert {"users", "keys", "credits", "workflows", "webhooks"} <= set(commands)
    assert all(commands.values()), commands


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_command_the_docs_show_exists(doc: Path) -> None:
    commands = _commands()
    for group, command in MENTION.findall(doc.read_text()):
        assert group in commands, f"{doc.name}: weft-admin {group} is not a group"
        if command:
            assert command in commands[group], f"{doc.name}: weft-admin {group} {command}?"


def test_help_names_the_groups_and_an_example_of_each(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    commands = _commands()
    for group, command in MENTION.findall(text):
        assert command in commands.get(group, set()), f"--help shows weft-admin {group} {command}"
    for group in commands:
        assert re.search(rf"weft-admin {group} [a-z]", text), f"--help has no {group} example"
