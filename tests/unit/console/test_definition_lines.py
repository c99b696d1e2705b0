"""console/definition_lines.py: the line of the editor's text an error's path names."""

from console.definition_lines import line_of

YAML = """slug: sheet
name: Sheet
fields:
  - name: csv
    type: text
stages:
  - id: sum
    type: table
  - id: say
    type: tabel
"""


def test_the_line_of_the_deepest_node_of_the_path() -> None:
    assert line_of(YAML, "stages[1].type") == 10
    assert line_of(YAML, "fields[0].name") == 4
    assert line_of(YAML, "slug") == 1


def test_a_path_that_leaves_the_text_stops_at_the_deepest_node_found() -> None:
    assert line_of(YAML, "stages[1].model") == 9  # no model there: the stage's line
    assert line_of(YAML, "stages[7]") == 6  # no such stage: the list's key
    assert line_of(YAML, "output") is None


def test_json_text_too_and_unparseable_text_gives_no_line() -> None:
    assert line_of('{\n  "slug": "x",\n  "stages": [\n    {"id": "a"}\n  ]\n}', "stages[0]") == 4
    assert line_of("stages: [unclosed", "stages") is None
