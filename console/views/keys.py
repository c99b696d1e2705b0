"""Settings -> API keys: create (the secret shown once), list with last use, revoke."""

import grpc
from aiohttp import web

from console.key_form import SCOPES, key_request
from console.render import render
from console.session import Person, person_form, require_person
from gateway.keys import SERVICES
from weft.auth.v1 import auth_pb2
from weftcore.errors import InvalidArgument, NotFound, from_rpc_error


async def _keys(request: web.Request, person: Person) -> list[auth_pb2.ApiKey]:
    reply = await request.config_dict[SERVICES].auth.ListKeys(
        auth_pb2.ListKeysRequest(user_id=person.principal.user_id), timeout=10
    )
    return sorted(reply.keys, key=lambda k: k.created_at, reverse=True)


async def _page(
    request: web.Request, person: Person, status: int = 200, **context: object
) -> web.Response:
    return render(
        request,
        "keys.html",
        person,
        status=status,
        keys=await _keys(request, person),
        scopes=SCOPES,
        **context,
    )


async def keys_page(request: web.Request) -> web.StreamResponse:
    return await _page(request, await require_person(request))


async def create_key(request: web.Request) -> web.StreamResponse:
    person, form = await person_form(request)
    try:
        create = key_request(person.principal.user_id, form, form.getall("scopes", []))
        reply = await request.config_dict[SERVICES].auth.CreateKey(create, timeout=10)
    except (InvalidArgument, grpc.RpcError) as exc:
        err = exc if isinstance(exc, InvalidArgument) else from_rpc_error(exc)
        if not isinstance(err, InvalidArgument):
            raise err from None
        return await _page(request, person, status=400, error=err.message, form=form)
    # The answer to this POST is the only place the secret ever appears.
    return await _page(request, person, status=201, created=reply.key, secret=reply.secret)


async def revoke_key(request: web.Request) -> web.StreamResponse:
    person, _ = await person_form(request)
    key_id = request.match_info["key_id"]
    if key_id not in {k.id for k in await _keys(request, person)}:
        raise NotFound(f"No key {key_id}.")
    await request.config_dict[SERVICES].auth.RevokeKey(
        auth_pb2.RevokeKeyRequest(key_id=key_id), timeout=10
    )
    return web.Response(status=303, headers={"Location": "/app/settings/keys"})


def setup(app: web.Application) -> None:
    app.router.add_get("/settings/keys", keys_page)
    app.router.add_post("/settings/keys", create_key)
    app.router.add_post("/settings/keys/{key_id}/revoke", revoke_key)
