"""Workflows as a product, through the whole stack: create (JSON and YAML), validation
errors naming their field, a draft run, publish, runs pinned and unpinned, edit, v2,
archive, duplicate, and every other account getting 404."""

import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from devstack.stack import Stack
from tests.support.runs import Account, admin_json, create_account, create_user, wait_for

TEMPLATE = {"id": "echo", "type": "template", "template": "v1: {{ input_text }}"}


def definition(slug: str, template: str = "v1: {{ input_text }}") -> dict[str, Any]:
    return {
        "slug": slug,
        "name": "Echo",
        "fields": [{"name": "tone", "type": "select", "constraints": {"options": ["dry", "warm"]}}],
        "stages": [{"id": "echo", "type": "template", "template": template}],
    }


def slug() -> str:
    return f"echo-{uuid.uuid4().hex[:10]}"


class Api:
    def __init__(self, http: aiohttp.ClientSession, stack: Stack, account: Account) -> None:
        self.http, self.base, self.account = http, f"{stack.base_url}/api/v1", account

    async def call(
        self,
        method: str,
        path: str,
        json: Any = None,
        data: str | None = None,
        content_type: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        headers = dict(self.account.headers)
        if content_type:
            headers["Content-Type"] = content_type
        async with self.http.request(
            method, f"{self.base}{path}", json=json, data=data, headers=headers
        ) as response:
            return response.status, await response.json()

    async def run(self, workflow_id: str, text: str, **body: Any) -> dict[str, Any]:
        status, created = await self.call(
            "POST", f"/workflows/{workflow_id}/runs", {"input_text": text, **body}
        )
        assert status == 201, created
        return created["data"]


@pytest.fixture(scope="module")
def owner(stack: Stack) -> Account:
    return create_account(stack)


@pytest.fixture(scope="module")
def stranger(stack: Stack) -> Account:
    return create_account(stack)


async def finished(http: aiohttp.ClientSession, stack: Stack, who: Account, run_id: str) -> Any:
    run = await wait_for(http, stack, who, run_id)
    assert run["status"] == "completed", run
    return run


async def test_the_whole_authoring_loop(
    stack: Stack, http: aiohttp.ClientSession, owner: Account, stranger: Account
) -> None:
    api = Api(http, stack, owner)
    status, created = await api.call("POST", "/workflows", definition(slug()))
    assert status == 201, created
    wf = created["data"]
    workflow_id = wf["id"]
    assert wf["id"].startswith("wf_") and wf["version"] is None
    assert wf["owner"] == {"type": "user", "id": owner.user_id}
    assert wf["visibility"] == "private"
    assert wf["draft"]["revision"] == 1
    assert wf["draft"]["definition"]["stages"][0]["template"] == "v1: {{ input_text }}"

    # Not published yet: the default run is refused, the draft runs (and says so).
    status, refused = await api.call("POST", f"/workflows/{workflow_id}/runs", {"input_text": "x"})
    assert status == 409 and refused["error"]["code"] == "WORKFLOW_NOT_PUBLISHED", refused
    draft_run = await api.run(workflow_id, "try", version="draft")
    done = await finished(http, stack, owner, draft_run["id"])
    assert (done["result"], done["version"]) == ("v1: try", "draft")

    status, v1 = await api.call("POST", f"/workflows/{workflow_id}/publish", {"note": "first"})
    assert status == 201, v1
    assert (v1["data"]["version"], v1["data"]["note"]) == (1, "first")
    assert v1["data"]["published_by"] == owner.user_id
    status, again = await api.call("POST", f"/workflows/{workflow_id}/publish")
    assert status == 409 and again["error"]["code"] == "NOTHING_TO_PUBLISH"

    unpinned = await api.run(workflow_id, "a")
    assert (await finished(http, stack, owner, unpinned["id"]))["version"] == 1

    # Edit (a merge patch of the stage list) and publish v2; v1 stays as it was.
    patch = {"stages": [{"id": "echo", "type": "template", "template": "v2: {{ input_text }}"}]}
    status, edited = await api.call(
        "PATCH", f"/workflows/{workflow_id}", patch, content_type="application/merge-patch+json"
    )
    assert status == 200, edited
    assert edited["data"]["draft"]["revision"] == 2 and edited["data"]["version"] == 1
    status, v2 = await api.call("POST", f"/workflows/{workflow_id}/publish")
    assert status == 201 and v2["data"]["version"] == 2

    latest = await api.run(workflow_id, "b")
    pinned = await api.run(workflow_id, "c", version=1)
    by_query = await api.call(
        "POST", f"/workflows/{workflow_id}/runs?version=1", {"input_text": "d"}
    )
    assert by_query[0] == 201, by_query
    results = {
        (await finished(http, stack, owner, run["id"]))["result"]
        for run in (latest, pinned, by_query[1]["data"])
    }
    assert results == {"v2: b", "v1: c", "v1: d"}
    status, versions = await api.call("GET", f"/workflows/{workflow_id}/versions")
    assert status == 200 and [v["version"] for v in versions["data"]] == [2, 1]
    status, one = await api.call("GET", f"/workflows/{workflow_id}/versions/1")
    assert status == 200
    assert one["data"]["definition"]["stages"][0]["template"] == "v1: {{ input_text }}"
    status, missing = await api.call(
        "POST", f"/workflows/{workflow_id}/runs", {"input_text": "x", "version": 9}
    )
    assert status == 400 and missing["error"]["param"] == "version", missing

    # Another account: the workflow, its versions, its runs and its endpoint do not exist.
    other = Api(http, stack, stranger)
    for method, path, body in (
        ("GET", f"/workflows/{workflow_id}", None),
        ("GET", f"/workflows/{workflow_id}/versions", None),
        ("GET", f"/workflows/{workflow_id}/versions/1", None),
        ("GET", f"/workflows/{workflow_id}/openapi.json", None),
        ("PATCH", f"/workflows/{workflow_id}", {"name": "mine"}),
        ("POST", f"/workflows/{workflow_id}/publish", None),
        ("POST", f"/workflows/{workflow_id}/archive", None),
        ("POST", f"/workflows/{workflow_id}/duplicate", {"slug": slug()}),
        ("POST", f"/workflows/{workflow_id}/runs", {"input_text": "x"}),
        ("GET", f"/workflow-runs/{latest['id']}", None),
    ):
        status, answer = await other.call(method, path, body)
        assert status == 404, (method, path, answer)
    status, listed = await other.call("GET", "/workflows?limit=100")
    assert workflow_id not in [w["id"] for w in listed["data"]]
    status, mine = await api.call("GET", "/workflows?limit=100")
    assert workflow_id in [w["id"] for w in mine["data"]]

    # Archived: no new runs; its runs and versions stay readable.
    status, archived = await api.call("POST", f"/workflows/{workflow_id}/archive")
    assert status == 200 and archived["data"]["archived_at"], archived
    status, refused = await api.call("POST", f"/workflows/{workflow_id}/runs", {"input_text": "x"})
    assert status == 409 and refused["error"]["code"] == "WORKFLOW_ARCHIVED"
    assert (await finished(http, stack, owner, pinned["id"]))["result"] == "v1: c"


async def test_yaml_definitions_and_errors_that_name_their_field(
    stack: Stack, http: aiohttp.ClientSession, owner: Account
) -> None:
    api = Api(http, stack, owner)
    name = slug()
    yaml_text = (
        f"slug: {name}\nname: From YAML\nstages:\n"
        "  - id: echo\n    type: template\n    template: 'yaml: {{ input_text }}'\n"
    )
    status, created = await api.call(
        "POST", "/workflows", data=yaml_text, content_type="application/yaml"
    )
    assert status == 201, created
    assert created["data"]["draft"]["definition"]["name"] == "From YAML"

    bad_stage = definition(slug())
    bad_stage["stages"][0]["type"] = "teleport"
    bad_field = definition(slug())
    bad_field["fields"][0]["constraints"] = {}
    for body, param in (
        (bad_stage, "stages[0].type"),
        (bad_field, "fields[0].constraints.options"),
        ({"name": "no slug", "stages": [TEMPLATE]}, "slug"),
    ):
        status, answer = await api.call("POST", "/workflows", body)
        assert status == 400, answer
        assert answer["error"]["param"] == param, answer
    status, answer = await api.call(
        "POST", "/workflows", data="slug: [unclosed", content_type="application/yaml"
    )
    assert status == 400 and answer["error"]["param"] == "definition", answer
    status, answer = await api.call("POST", "/workflows", data="x", content_type="text/plain")
    assert status == 415 and answer["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE", answer

    # The slug is unique across the installation (also against the catalog's).
    status, taken = await api.call("POST", "/workflows", definition(name))
    assert status == 409 and taken["error"]["code"] == "SLUG_TAKEN", taken
    assert taken["error"]["param"] == "slug"


async def test_the_catalog_is_read_only_and_can_be_copied(
    stack: Stack, http: aiohttp.ClientSession, owner: Account, stranger: Account
) -> None:
    api = Api(http, stack, owner)
    status, listed = await api.call("GET", "/workflows?limit=100")
    catalog = [w for w in listed["data"] if w["visibility"] == "catalog"]
    assert catalog and all(w["owner"] is None for w in catalog)
    source = (
        next(w for w in catalog if w["slug"] == "ticket-triage")
        if any(w["slug"] == "ticket-triage" for w in catalog)
        else catalog[0]
    )
    status, refused = await api.call("PATCH", f"/workflows/{source['id']}", {"name": "mine"})
    assert status == 403 and refused["error"]["code"] == "WORKFLOW_READ_ONLY", refused
    copy_slug = slug()
    status, copied = await api.call(
        "POST", f"/workflows/{source['id']}/duplicate", {"slug": copy_slug}
    )
    assert status == 201, copied
    copy = copied["data"]
    assert copy["id"] != source["id"] and copy["slug"] == copy_slug
    assert copy["owner"] == {"type": "user", "id": owner.user_id}
    assert copy["draft"]["definition"]["name"] == f"{source['name']} (copy)"
    # The copy is the owner's alone.
    status, _ = await Api(http, stack, stranger).call("GET", f"/workflows/{copy['id']}")
    assert status == 404


async def test_writing_needs_the_write_scope(stack: Stack, http: aiohttp.ClientSession) -> None:
    from tests.support.runs import admin_json

    user = admin_json(stack, "users", "create", "--email", f"{slug()}@example.com", "--plan", "pro")
    key = admin_json(
        stack, "keys", "create", "--user", user["id"], "--name", "ro", "--scopes", "workflows:read"
    )
    api = Api(http, stack, Account(user["id"], key["secret"]))
    status, answer = await api.call("POST", "/workflows", definition(slug()))
    assert status == 403 and answer["error"]["code"] == "MISSING_SCOPE", answer


async def test_the_readme_example_workflow(
    stack: Stack, http: aiohttp.ClientSession, owner: Account
) -> None:
    """The README tour's steps with examples/greeting.yaml, as written there."""
    api = Api(http, stack, owner)
    text = (Path(__file__).parents[2] / "examples" / "greeting.yaml").read_text()
    status, created = await api.call(
        "POST", "/workflows", data=text, content_type="application/yaml"
    )
    assert status == 201, created
    workflow_id = created["data"]["id"]
    run = await api.run(workflow_id, "Ann", params={"tone": "formal"}, version="draft")
    assert (await finished(http, stack, owner, run["id"]))["result"] == "Good day, Ann."
    status, _ = await api.call(
        "POST", f"/workflows/{workflow_id}/publish", {"note": "first version"}
    )
    assert status == 201
    status, patched = await api.call(
        "PATCH",
        f"/workflows/{workflow_id}",
        {"description": "Now in two tones."},
        content_type="application/merge-patch+json",
    )
    assert (
        status == 200
        and patched["data"]["draft"]["definition"]["description"] == "Now in two tones."
    )
    status, called = await api.call(
        "POST", "/endpoints/my-greeting?version=1", {"input_text": "Bob"}
    )
    assert status == 201, called
    done = await finished(http, stack, owner, called["data"]["id"])
    assert (done["result"], done["version"]) == ("Hi Bob!", 1)
    # Opened to callers without a key, as version 2.
    status, _ = await api.call(
        "PATCH",
        f"/workflows/{workflow_id}",
        {"endpoint": {"auth": "public"}},
        content_type="application/merge-patch+json",
    )
    assert status == 200
    status, v2 = await api.call("POST", f"/workflows/{workflow_id}/publish")
    assert status == 201 and v2["data"]["version"] == 2
    async with http.post(
        f"{stack.base_url}/api/v1/endpoints/my-greeting", json={"input_text": "Cy"}
    ) as response:
        keyless = (await response.json())["data"]
        assert response.status == 201, keyless
    async with http.get(
        f"{stack.base_url}/api/v1/endpoints/my-greeting/runs/{keyless['id']}?wait=30",
        headers={"Authorization": f"Bearer {keyless['run_token']}"},
    ) as response:
        read = (await response.json())["data"]
    assert (read["status"], read["result"], read["version"]) == ("completed", "Hi Cy!", 2)


async def test_operators_apply_owned_workflows_archive_and_delete(
    stack: Stack, http: aiohttp.ClientSession, owner: Account, stranger: Account, tmp_path: Path
) -> None:
    file = tmp_path / "owned.yaml"
    name = slug()
    file.write_text(
        f"slug: {name}\nname: Owned\nstages:\n  - {{id: t, type: template, template: ok}}\n"
    )
    [applied] = admin_json(stack, "workflows", "apply", str(file), "--owner-user", owner.user_id)
    assert applied["owner"] == {"type": "user", "id": owner.user_id}
    assert applied["version"] == 1 and applied["visibility"] == "private"
    workflow_id = applied["id"]
    assert (await Api(http, stack, owner).call("GET", f"/workflows/{workflow_id}"))[0] == 200
    assert (await Api(http, stack, stranger).call("GET", f"/workflows/{workflow_id}"))[0] == 404

    # Never ran: it can be deleted. One that ran is archived instead.
    other = tmp_path / "other.yaml"
    other.write_text(file.read_text().replace(name, slug()))
    [spare] = admin_json(stack, "workflows", "apply", str(other))
    assert spare["visibility"] == "catalog"
    assert admin_json(stack, "workflows", "delete", spare["id"]) == {
        "id": spare["id"],
        "deleted": True,
    }
    assert stack.admin("workflows", "show", spare["id"], check=False).returncode != 0
    run = await Api(http, stack, owner).run(workflow_id, "x")
    await finished(http, stack, owner, run["id"])
    refused = stack.admin("workflows", "delete", workflow_id, check=False)
    assert refused.returncode != 0 and "archive it instead" in refused.stderr
    archived = admin_json(stack, "workflows", "archive", workflow_id)
    assert archived["archived_at"] is not None
    listed = admin_json(stack, "workflows", "list")
    assert any(w["id"] == workflow_id and w["archived_at"] for w in listed)


async def test_a_result_that_breaks_the_output_schema_fails_naming_the_output(
    stack: Stack, http: aiohttp.ClientSession, owner: Account
) -> None:
    api = Api(http, stack, owner)
    body = {
        **definition(slug(), "{{ input_text }}"),
        "output": "{{ stages.echo }}",
        "output_schema": {"type": "object", "required": ["total"]},
    }
    status, created = await api.call("POST", "/workflows", body)
    assert status == 201, created
    workflow_id = created["data"]["id"]
    good = await api.run(workflow_id, '{"total": 10}', version="draft")
    assert (await finished(http, stack, owner, good["id"]))["result"] == {"total": 10}
    bad = await api.run(workflow_id, "", version="draft")
    run = await wait_for(http, stack, owner, bad["id"])
    assert run["status"] == "failed", run
    assert (run["error"]["code"], run["error"]["stage"]) == ("OUTPUT_INVALID", "output")
    assert run["error"]["message"].startswith("empty result"), run["error"]
    status, doc = await api.call("GET", f"/workflows/{workflow_id}/openapi.json")
    assert status == 200
    schemas = doc["components"]["schemas"]
    assert any(s == {"type": "object", "required": ["total"]} for s in schemas.values()), schemas


async def test_file_fields_take_only_their_kinds_up_to_their_size(
    stack: Stack, http: aiohttp.ClientSession, owner: Account
) -> None:
    api = Api(http, stack, owner)
    body = {
        "slug": slug(),
        "name": "Sheets",
        "fields": [
            {
                "name": "sheet",
                "type": "file",
                "required": True,
                "constraints": {"kinds": ["csv"], "max_bytes": 64},
            }
        ],
        "stages": [{"id": "t", "type": "template", "template": "{{ attachments | length }}"}],
    }
    status, created = await api.call("POST", "/workflows", body)
    assert status == 201, created
    workflow_id = created["data"]["id"]

    async def upload(name: str, data: bytes) -> str:
        form = aiohttp.FormData()
        form.add_field("file", data, filename=name)
        async with http.post(
            f"{api.base}/attachments", data=form, headers=owner.headers
        ) as response:
            answer = await response.json()
            assert response.status == 201, answer
            return str(answer["data"]["id"])

    small = await upload("a.csv", b"project,hours\nApollo,5\n")
    text = await upload("notes.txt", b"just words")
    big = await upload("big.csv", b"project,hours\n" + b"Apollo,5\n" * 20)
    ok = await api.run(workflow_id, "x", params={"sheet": small}, version="draft")
    assert (await finished(http, stack, owner, ok["id"]))["result"] == "1"
    for att, status_code, code in ((text, 400, "INVALID_PARAM"), (big, 413, "PAYLOAD_TOO_LARGE")):
        status, refused = await api.call(
            "POST",
            f"/workflows/{workflow_id}/runs",
            {"input_text": "x", "params": {"sheet": att}, "version": "draft"},
        )
        assert status == status_code, refused
        assert (refused["error"]["code"], refused["error"]["param"]) == (code, "params.sheet")
    # The same through a multipart run: the file part is bound to the field by name.
    form = aiohttp.FormData()
    form.add_field("input_text", "x")
    form.add_field("sheet", b"project,hours\n" + b"Apollo,5\n" * 20, filename="big.csv")
    async with http.post(
        f"{api.base}/workflows/{workflow_id}/runs?version=draft", data=form, headers=owner.headers
    ) as response:
        refused = await response.json()
        assert response.status == 413, refused
        assert refused["error"]["param"] == "params.sheet"


async def test_a_key_pinned_to_a_version_runs_it_unless_the_call_names_another(
    stack: Stack, http: aiohttp.ClientSession, owner: Account
) -> None:
    api = Api(http, stack, owner)
    status, created = await api.call("POST", "/workflows", definition(slug()))
    workflow_id = created["data"]["id"]
    await api.call("POST", f"/workflows/{workflow_id}/publish")
    patch = {"stages": [{"id": "echo", "type": "template", "template": "v2: {{ input_text }}"}]}
    await api.call("PATCH", f"/workflows/{workflow_id}", patch)
    status, _ = await api.call("POST", f"/workflows/{workflow_id}/publish")
    assert status == 201
    key = admin_json(
        stack,
        "keys",
        "create",
        "--user",
        owner.user_id,
        "--name",
        "pinned",
        "--pin",
        f"{workflow_id}=1",
    )
    assert key["version_pins"] == {workflow_id: 1}
    pinned = Api(http, stack, Account(owner.user_id, key["secret"]))
    by_pin = await pinned.run(workflow_id, "a")
    named = await pinned.run(workflow_id, "b", version=2)
    unpinned = await api.run(workflow_id, "c")
    results = [
        (await finished(http, stack, owner, run["id"]))["result"]
        for run in (by_pin, named, unpinned)
    ]
    assert results == ["v1: a", "v2: b", "v2: c"]
    bad = stack.admin(
        "keys", "create", "--user", owner.user_id, "--name", "x", "--pin", "nope", check=False
    )
    assert bad.returncode == 2 and "--pin takes WORKFLOW_ID=VERSION" in bad.stderr


async def test_team_roles_decide_who_changes_the_teams_workflows(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    team = admin_json(stack, "teams", "create", "--name", f"t-{uuid.uuid4().hex[:6]}")
    people: dict[str, Account] = {}
    for role in ("admin", "member", "viewer"):
        person = create_user(stack, plan="team")
        admin_json(
            stack, "teams", "add-member", "--team", team["id"], "--user", person.user_id,
            "--role", role,
        )  # fmt: skip
        admin_json(
            stack, "allocations", "set", "--team", team["id"], "--user", person.user_id,
            "--monthly-usd", "1",
        )  # fmt: skip
        people[role] = person
    shown = admin_json(stack, "teams", "add-member", "--team", team["id"],
                       "--user", people["viewer"].user_id, "--role", "viewer")  # fmt: skip
    assert shown["member_roles"][people["admin"].user_id] == "admin"
    admin, member, viewer = (Api(http, stack, people[r]) for r in ("admin", "member", "viewer"))

    status, created = await member.call("POST", "/workflows", definition(slug()))
    assert status == 201 and created["data"]["owner"] == {"type": "team", "id": team["id"]}
    workflow_id = created["data"]["id"]
    assert (await member.call("POST", f"/workflows/{workflow_id}/publish"))[0] == 201
    # A viewer reads and runs the team's workflows, and changes none of them.
    assert (await viewer.call("GET", f"/workflows/{workflow_id}"))[0] == 200
    run = await viewer.run(workflow_id, "from a viewer")
    assert (await finished(http, stack, people["viewer"], run["id"]))["status"] == "completed"
    for method, path, body in (
        ("PATCH", f"/workflows/{workflow_id}", {"description": "no"}),
        ("POST", f"/workflows/{workflow_id}/publish", None),
        ("POST", "/workflows", definition(slug())),
    ):
        status, refused = await viewer.call(method, path, body)
        assert status == 403 and refused["error"]["code"] == "WORKFLOW_READ_ONLY", refused
    status, refused = await viewer.call(
        "POST", f"/workflows/{workflow_id}/runs", {"input_text": "x", "version": "draft"}
    )
    assert status == 400 and refused["error"]["param"] == "version"
    # Members build; only admins archive.
    status, refused = await member.call("POST", f"/workflows/{workflow_id}/archive")
    assert status == 403 and refused["error"]["code"] == "WORKFLOW_READ_ONLY"
    status, archived = await admin.call("POST", f"/workflows/{workflow_id}/archive")
    assert status == 200 and archived["data"]["archived_at"]
