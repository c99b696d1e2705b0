"""Who is calling and through what: what one /mcp HTTP request hands the MCP handlers.

The gateway authenticates the request (gateway.auth, the REST routes' path) before the
MCP SDK sees it, and passes this in the ASGI scope: the SDK runs its handlers in its
own tasks, so a context variable would not reach them.
"""

from dataclasses import dataclass
from typing import Any

from gateway.auth import RUNS_CREATE, WORKFLOWS_READ
from gateway.clients import Services
from weft.auth.v1 import auth_pb2
from weftcore.errors import PermissionDenied

SCOPE_KEY = "weft.mcp"


@dataclass(frozen=True)
class McpCaller:
    principal: auth_pb2.Principal
    services: Services
    base_url: str  # public base URL, for the runs' links
    request_id: str

    def can(self, scope: str) -> bool:
        return scope in self.principal.scopes

    def require(self, scope: str) -> None:
        """403 MISSING_SCOPE, worded as the REST API words it."""
        if not self.can(scope):
            raise PermissionDenied(f"This API key lacks the `{scope}` scope.", code="MISSING_SCOPE")

    @property
    def lists_workflows(self) -> bool:
        return self.can(WORKFLOWS_READ)

    @property
    def runs(self) -> bool:
        return self.can(RUNS_CREATE)


def caller_of(scope: dict[str, Any]) -> McpCaller:
    value = scope.get(SCOPE_KEY)
    if not isinstance(value, McpCaller):
        raise RuntimeError("an MCP request reached the server without the gateway's caller")
    return value
