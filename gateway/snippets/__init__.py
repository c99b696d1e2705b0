"""Ready-to-run client code for a workflow (GET /api/v1/workflows/:id/code).

One renderer per language, all from one CallSpec built from the workflow's declared
fields, so every language sends the same placeholders. Each snippet reads the token from
WEFT_API_KEY (base URL overridable with WEFT_BASE_URL), sends an Idempotency-Key, checks
statuses, long-polls the run until it is terminal and prints it as JSON on stdout.
"""

from collections.abc import Callable, Iterable
from typing import Any

from gateway.snippets import curl, go, node, php, python
from gateway.snippets.model import LANGUAGES, VARIANTS, CallSpec, call_spec

RENDERERS: dict[str, Callable[[CallSpec], str]] = {
    "curl": curl.render,
    "node": node.render,
    "python": python.render,
    "php": php.render,
    "go": go.render,
}

__all__ = ["LANGUAGES", "VARIANTS", "default_variants", "generate"]


def default_variants(fields: list[dict[str, Any]]) -> tuple[str, ...]:
    """json always; multipart too when the workflow has a file field."""
    return VARIANTS if any(f["type"] == "file" for f in fields) else ("json",)


def generate(
    base_url: str,
    workflow_id: str,
    fields: list[dict[str, Any]],
    languages: Iterable[str] = LANGUAGES,
    variants: Iterable[str] | None = None,
) -> list[dict[str, str]]:
    """[{language, variant, code}] for every requested language and variant."""
    chosen = tuple(variants) if variants is not None else default_variants(fields)
    out = []
    for language in languages:
        for variant in chosen:
            spec = call_spec(base_url, workflow_id, fields, variant)
            out.append(
                {"language": language, "variant": variant, "code": RENDERERS[language](spec)}
            )
    return out
