"""Where in the editor's text a validation error's `param` path points: the line the
console shows beside the error (YAML, or JSON, which YAML reads too)."""

import re

import yaml

_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def line_of(text: str, param: str) -> int | None:
    """The 1-based line of the deepest node of `param` (e.g. `stages[1].type`) found in
    `text`; None when the text does not parse or the path's first step is not there."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    line = None
    for key, index in _SEGMENT.findall(param):
        if isinstance(node, yaml.MappingNode) and key:
            found = [(k, v) for k, v in node.value if k.value == key]
            if not found:
                break
            key_node, node = found[0]
            line = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and index:
            if int(index) >= len(node.value):
                break
            node = node.value[int(index)]
            line = node.start_mark.line + 1
        else:
            break
    return line
