"""Who is signed in (a server-side session behind an HttpOnly cookie), and CSRF checks."""

from dataclasses import dataclass

import grpc
from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from console.keys import CONSOLE_CONFIG
from console.security import same, session_csrf
from gateway.keys import SERVICES
from weft.auth.v1 import auth_pb2
from weftcore.errors import Unauthenticated, from_rpc_error

_PERSON = web.RequestKey("console_person", object)


class SignInRequired(Exception):
    """No valid session: the middleware sends the browser to the sign-in page."""


class CsrfFailed(Exception):
    """A state-changing request without its form's token: 403."""


@dataclass(frozen=True)
class Person:
    principal: auth_pb2.Principal
    token: str
    csrf: str


async def current(request: web.Request) -> Person | None:
    """The signed-in person, or None (asks the auth service once per request)."""
    if _PERSON in request:
        found = request[_PERSON]
        return found if isinstance(found, Person) else None
    person = None
    token = request.cookies.get(request.app[CONSOLE_CONFIG].session_cookie, "")
    if token and len(token) <= 100:
        try:
            principal = await request.config_dict[SERVICES].auth.AuthenticateSession(
                auth_pb2.AuthenticateSessionRequest(token=token), timeout=5
            )
            person = Person(principal, token, session_csrf(token))
        except grpc.RpcError as exc:
            if not isinstance(from_rpc_error(exc), Unauthenticated):
                raise
    request[_PERSON] = person
    return person


async def require_person(request: web.Request) -> Person:
    person = await current(request)
    if person is None:
        raise SignInRequired()
    return person


async def checked_form(request: web.Request, expected: str) -> MultiDictProxy[str]:
    """The POSTed text fields, once `csrf_token` matches `expected` (else CsrfFailed)."""
    form = await request.post()
    token = form.get("csrf_token")
    if not isinstance(token, str) or not same(expected, token):
        raise CsrfFailed()
    return MultiDictProxy(MultiDict((k, v) for k, v in form.items() if isinstance(v, str)))


async def person_form(request: web.Request) -> tuple[Person, MultiDictProxy[str]]:
    """The signed-in person and their POSTed form, CSRF-checked."""
    person = await require_person(request)
    return person, await checked_form(request, person.csrf)
