"""docs/integrations.md: the Make recipe's module numbers agree with its references, and
its Repeater stops once the run is finished."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _section(title: str) -> str:
    text = (ROOT / "docs" / "integrations.md").read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_make_modules_are_numbered_in_order_and_references_name_them() -> None:
    make = _section("Make")
    numbers = [int(n) for n in re.findall(r"\*\*Module (\d+) —", make)]
    assert numbers == list(range(1, len(numbers) + 1)), numbers
    references = {int(n) for n in re.findall(r"\{\{(\d+)\.", make)}
    assert references, "the recipe maps fields from earlier modules"
    assert references <= set(numbers), references - set(numbers)
    blocks = dict(zip(numbers, re.split(r"\*\*Module \d+ —", make)[1:], strict=True))
    [create] = [n for n, block in blocks.items() if "Method | `POST`" in block]
    # The run id comes from the module that created the run, which reads the trigger.
    assert {int(n) for n in re.findall(r"\{\{(\d+)\.data\.data\.id\}\}", make)} == {create}
    table = "\n".join(line for line in blocks[create].splitlines() if line.startswith("|"))
    assert all(int(n) < create for n in re.findall(r"\{\{(\d+)\.", table))


def test_make_repeater_stops_once_the_status_is_terminal() -> None:
    make = _section("Make")
    assert "Repeater" in make
    for status in ("completed", "failed", "canceled"):
        assert f"`{status}`" in make, status
    # The stop: a variable set once the run finished, checked before each further GET.
    [variable] = set(re.findall(r"Set variable\*\*: Variable name `(\w+)`", make))
    assert re.search(rf"Get variable\*\*: Variable name `{variable}`", make)
    assert re.search(rf"{{{{\d+\.{variable}}}}}`? \*Does not\s+exist\*", make)
