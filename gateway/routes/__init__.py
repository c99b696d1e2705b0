"""Public API routes, one module per resource; each exposes `setup(app)`."""

from types import ModuleType

from gateway.routes import attachments, code, endpoints, events, me, openapi, runs, workflows

ROUTE_MODULES: list[ModuleType] = [
    me,
    workflows,
    runs,
    attachments,
    endpoints,
    events,
    openapi,
    code,
]
