"""Sign-in, sign-out and accepting an invite (setting the password)."""

from email.utils import formatdate

import grpc
from aiohttp import web

from console.keys import CONSOLE_CONFIG
from console.render import render
from console.security import new_form_secret, safe_next
from console.session import checked_form, current, person_form
from gateway.client_address import client_ip
from gateway.http import http_status
from gateway.keys import SERVICES
from weft.auth.v1 import auth_pb2
from weftcore.errors import ResourceExhausted, WeftError, from_rpc_error


def _form_secret(request: web.Request) -> str:
    return request.cookies.get(request.app[CONSOLE_CONFIG].form_cookie, "")


def _anonymous_page(
    request: web.Request, template: str, status: int = 200, **context: object
) -> web.Response:
    """A page with a form shown before sign-in: CSRF by a double-submitted cookie."""
    config = request.app[CONSOLE_CONFIG]
    secret = _form_secret(request) or new_form_secret()
    response = render(request, template, None, status=status, form_csrf=secret, **context)
    response.set_cookie(
        config.form_cookie,
        secret,
        path="/",
        httponly=True,
        secure=config.secure_cookies,
        samesite="Strict",
    )
    return response


async def login_page(request: web.Request) -> web.StreamResponse:
    if await current(request) is not None:
        return web.Response(status=303, headers={"Location": safe_next(request.query.get("next"))})
    return _anonymous_page(
        request,
        "login.html",
        next=safe_next(request.query.get("next")),
        notice="Your password is set. Sign in." if "invited" in request.query else "",
    )


async def login(request: web.Request) -> web.StreamResponse:
    form = await checked_form(request, _form_secret(request))
    email = form.get("email", "").strip()
    target = safe_next(form.get("next"))
    try:
        session = await request.config_dict[SERVICES].auth.SignIn(
            auth_pb2.SignInRequest(
                email=email, password=form.get("password", ""), client_ip=client_ip(request)
            ),
            timeout=10,
        )
    except grpc.RpcError as exc:
        err = from_rpc_error(exc)
        response = _anonymous_page(
            request,
            "login.html",
            status=http_status(err),
            next=target,
            error=err.message,
            email_value=email,
        )
        if isinstance(err, ResourceExhausted):
            response.headers["Retry-After"] = str(err.extra.get("retry_after", 900))
        return response
    config = request.app[CONSOLE_CONFIG]
    response = web.Response(status=303, headers={"Location": target})
    # A new token was minted by SignIn: whatever cookie the browser had is replaced.
    response.set_cookie(
        config.session_cookie,
        session.token,
        path="/",
        httponly=True,
        secure=config.secure_cookies,
        samesite="Lax",
        expires=_http_date(session.expires_at_unix),
    )
    return response


def _http_date(unix: int) -> str:
    return formatdate(unix, usegmt=True)


async def logout(request: web.Request) -> web.StreamResponse:
    person, _ = await person_form(request)
    await request.config_dict[SERVICES].auth.SignOut(
        auth_pb2.SignOutRequest(token=person.token), timeout=5
    )
    config = request.app[CONSOLE_CONFIG]
    response = web.Response(status=303, headers={"Location": "/app/login"})
    # The same attributes as when set: a __Host- cookie is only replaced by a Secure one.
    response.del_cookie(
        config.session_cookie,
        path="/",
        secure=config.secure_cookies,
        httponly=True,
        samesite="Lax",
    )
    return response


async def invite_page(request: web.Request) -> web.StreamResponse:
    return _anonymous_page(request, "invite.html", token=request.match_info["token"])


async def accept_invite(request: web.Request) -> web.StreamResponse:
    form = await checked_form(request, _form_secret(request))
    token = request.match_info["token"]
    password = form.get("password", "")
    error = ""
    if password != form.get("password_again", ""):
        error = "The two passwords differ."
    else:
        try:
            await request.config_dict[SERVICES].auth.AcceptInvite(
                auth_pb2.AcceptInviteRequest(token=token, password=password), timeout=10
            )
        except grpc.RpcError as exc:
            err: WeftError = from_rpc_error(exc)
            if http_status(err) >= 500:
                raise
            error = err.message
    if error:
        return _anonymous_page(request, "invite.html", status=400, token=token, error=error)
    return web.Response(status=303, headers={"Location": "/app/login?invited=1"})


def setup(app: web.Application) -> None:
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/invite/{token}", invite_page)
    app.router.add_post("/invite/{token}", accept_invite)
