"""Ready-to-run client code for a workflow (GET /api/v1/workflows/:id/code).

One renderer per language, all from one CallSpec built from the workflow's declared
fields, so every language sends the same placeholders. Each snippet sends an
Idempotency-Key, checks statuses, long-polls the run until it is terminal, prints it as
JSON on stdout and exits non-zero unless it completed (base URL overridable with
WEFT_BASE_URL). Keyed snippets read the token from WEFT_API_KEY and create the run at
/workflows/:id/runs; keyless ones call the public endpoint without a key and read the run
with the run token its answer carries.
"""

from collections.abc import Callable, Iterable
from typing import Any

from gateway.snippets import curl, go, node, php, python
from gateway.snippets.model import LANGUAGES, VARIANTS, CallSpec, call_spec
from weftcore.errors import InvalidArgument

RENDERERS: dict[str, Callable[[CallSpec], str]] = {
    "curl": curl.render,
    "node": node.render,
    "python": python.render,
    "php": php.render,
    "go": go.render,
}

__all__ = ["LANGUAGES", "VARIANTS", "choose_variants", "default_variants", "generate"]


def _has_files(fields: list[dict[str, Any]]) -> bool:
    return any(f["type"] == "file" for f in fields)


def default_variants(fields: list[dict[str, Any]], keyless: bool = False) -> tuple[str, ...]:
    """json always; multipart too when the workflow has a file field. Keyless calls with
    file fields: multipart only (they cannot name attachment ids)."""
    if not _has_files(fields):
        return ("json",)
    return ("multipart",) if keyless else VARIANTS


def choose_variants(
    fields: list[dict[str, Any]], keyless: bool, asked: str | None
) -> tuple[str, ...]:
    """The variants to generate: the one asked for, else the defaults. A keyless JSON call
    of a workflow with file fields cannot exist: 400 naming `variant`."""
    if asked is None:
        return default_variants(fields, keyless)
    if keyless and asked == "json" and _has_files(fields):
        raise InvalidArgument(
            "variant json is not available without an API key for a workflow with file"
            " fields: a public endpoint takes files only as multipart parts (ask"
            " variant=multipart, or auth=key).",
            param="variant",
        )
    return (asked,)


def generate(
    base_url: str,
    workflow_id: str,
    fields: list[dict[str, Any]],
    languages: Iterable[str] = LANGUAGES,
    variants: Iterable[str] | None = None,
    *,
    slug: str = "",
    keyless: bool = False,
) -> list[dict[str, str]]:
    """[{language, variant, auth, code}] for every requested language and variant
    (`keyless`: calls of the public endpoint `slug` without a key, auth "none")."""
    chosen = tuple(variants) if variants is not None else default_variants(fields, keyless)
    auth = "none" if keyless else "key"
    out = []
    for language in languages:
        for variant in chosen:
            spec = call_spec(base_url, workflow_id, fields, variant, slug=slug, keyless=keyless)
            code = RENDERERS[language](spec)
            out.append({"language": language, "variant": variant, "auth": auth, "code": code})
    return out
