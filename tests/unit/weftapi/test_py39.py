"""The SDK promises Python >= 3.9: its sources parse as 3.9 code, and no annotation uses
`X | Y` (pydantic and dataclasses evaluate some at run time, where 3.9 has no `|`)."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[3] / "clients" / "python" / "src" / "weftapi"
FILES = sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SRC)))
def test_parses_as_python_39_without_union_operators_in_annotations(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path), feature_version=(3, 9))
    annotations: list[ast.expr | None] = [
        n.annotation for n in ast.walk(tree) if isinstance(n, ast.AnnAssign)
    ]
    annotations += [a.annotation for n in ast.walk(tree) if isinstance(n, ast.arg) for a in [n]]
    annotations += [
        n.returns for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]
    for annotation in filter(None, annotations):
        for node in ast.walk(annotation):
            bad = isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr)
            assert not bad, f"{path.name}:{ast.unparse(node)}: use Optional[...] / Union[...]"


def test_the_package_is_there() -> None:
    assert len(FILES) >= 8 and (SRC / "py.typed").is_file()
