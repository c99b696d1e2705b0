"""A workflow's published endpoint: its slug and who may call it without a key.

The settings live in the definition's `endpoint` object (schema/workflow.schema.json), so
publishing freezes them with the rest; the latest published version's apply. A public
endpoint's keyless calls are billed to the owner and bounded per client IP, per endpoint
and by a cost cap per run (spec/API.md, v1.1 "Workflows owned and published").
"""

from dataclasses import dataclass, replace
from typing import Any

from weftcore.errors import InvalidArgument

DEFAULT_PER_IP_PER_MINUTE = 10
DEFAULT_PER_MINUTE = 120
MICROS_PER_USD = 1_000_000


@dataclass(frozen=True)
class EndpointSettings:
    auth: str  # "required" | "public"
    max_cost_micros: int  # 0: no cap
    per_ip_per_minute: int
    per_minute: int
    cors_origins: tuple[str, ...]

    @property
    def public(self) -> bool:
        return self.auth == "public"


@dataclass(frozen=True)
class Endpoint:
    """A published endpoint as a keyless call needs it (GetEndpoint)."""

    workflow_id: str
    slug: str
    settings: EndpointSettings  # auth "required" when nobody could pay for keyless calls
    payer_user_id: str  # the owner, or for a team's workflow its latest publisher
    payer_team_id: str


def endpoint_settings(definition: dict[str, Any]) -> EndpointSettings:
    """The definition's endpoint settings, defaults filled in."""
    endpoint = definition.get("endpoint") or {}
    limits = endpoint.get("rate_limit") or {}
    cap = endpoint.get("max_cost_usd")
    return EndpointSettings(
        auth=endpoint.get("auth", "required"),
        max_cost_micros=round(cap * MICROS_PER_USD) if cap is not None else 0,
        per_ip_per_minute=int(limits.get("per_ip_per_minute", DEFAULT_PER_IP_PER_MINUTE)),
        per_minute=int(limits.get("per_minute", DEFAULT_PER_MINUTE)),
        cors_origins=tuple(o.rstrip("/") for o in endpoint.get("cors_origins", [])),
    )


def settle_slug(definition: dict[str, Any]) -> None:
    """The workflow's slug is its endpoint's: `slug`, or `endpoint.slug`, or both agreeing."""
    endpoint_slug = (definition.get("endpoint") or {}).get("slug")
    slug = definition.get("slug")
    if slug is None and endpoint_slug is None:
        raise InvalidArgument(
            "Invalid workflow definition at slug: 'slug' is a required property",
            param="slug",
        )
    if slug is not None and endpoint_slug is not None and slug != endpoint_slug:
        raise InvalidArgument(
            f"endpoint.slug {endpoint_slug!r} differs from slug {slug!r}: the endpoint's"
            " slug is the workflow's (give one of them).",
            param="endpoint.slug",
        )
    definition["slug"] = slug or endpoint_slug


def describe(definition: dict[str, Any], payable: bool) -> dict[str, Any]:
    """The `endpoint` object the API shows for a definition (the gateway adds its url).
    `payable`: someone owns the workflow, so keyless calls have a payer."""
    s = endpoint_settings(definition)
    if s.public and not payable:
        s = replace(s, auth="required")
    shown: dict[str, Any] = {"slug": definition["slug"], "auth": s.auth}
    if s.public:
        shown["max_cost_usd"] = s.max_cost_micros / MICROS_PER_USD if s.max_cost_micros else None
        shown["rate_limit"] = {
            "per_ip_per_minute": s.per_ip_per_minute,
            "per_minute": s.per_minute,
        }
        shown["cors_origins"] = list(s.cors_origins)
    return shown
