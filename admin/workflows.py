"""`weft-admin workflows apply FILE... | list | show ID | archive ID | delete ID`.

`apply` validates each file (YAML or JSON) on the server and prints, per file, the
workflow id, slug and version, and whether the version changed. Applied workflows form
the shared catalog unless `--owner-user` or `--owner-team` gives them an owner.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import grpc

from admin.clients import AdminClients
from weft.runs.v1 import runs_pb2 as pb
from weftcore.errors import from_rpc_error


def _summary(w: pb.Workflow) -> dict[str, Any]:
    owner = None
    if w.owner_team_id:
        owner = {"type": "team", "id": w.owner_team_id}
    elif w.owner_user_id:
        owner = {"type": "user", "id": w.owner_user_id}
    return {
        "id": w.id,
        "slug": w.slug,
        "name": w.name,
        "version": w.version or None,
        "owner": owner,
        "visibility": "private" if owner else "catalog",
        "archived_at": w.archived_at or None,
        "updated_at": w.updated_at,
    }


async def apply(args: argparse.Namespace, clients: AdminClients) -> None:
    from admin.__main__ import print_json

    results: list[dict[str, Any]] = []
    failed = False
    for path in args.files:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            results.append({"file": path, "error": f"cannot read: {exc.strerror}"})
            failed = True
            continue
        try:
            reply = await clients.runs.ApplyWorkflow(
                pb.ApplyWorkflowRequest(
                    definition=text,
                    owner_user_id=args.owner_user or "",
                    owner_team_id=args.owner_team or "",
                )
            )
        except grpc.RpcError as exc:
            err = from_rpc_error(exc)
            entry = {"file": path, "error": err.message, "code": err.code}
            if err.param:
                entry["param"] = err.param
            results.append(entry)
            failed = True
            continue
        results.append({"file": path, **_summary(reply), "changed": reply.changed})
    print_json(results)
    if failed:
        print("error: some workflow definitions were not applied", file=sys.stderr)
        raise SystemExit(1)


async def list_(args: argparse.Namespace, clients: AdminClients) -> None:
    from admin.__main__ import print_json

    out: list[dict[str, Any]] = []
    cursor = ""
    while True:
        reply = await clients.runs.ListWorkflows(
            pb.ListWorkflowsRequest(limit=100, starting_after=cursor)
        )
        out.extend(_summary(w) for w in reply.workflows)
        if not reply.has_more or not reply.workflows:
            break
        cursor = reply.workflows[-1].id
    print_json(out)


async def show(args: argparse.Namespace, clients: AdminClients) -> None:
    from admin.__main__ import print_json

    ref = args.workflow
    request = (
        pb.GetWorkflowRequest(workflow_id=ref)
        if ref.startswith("wf_")
        else (pb.GetWorkflowRequest(slug=ref))
    )
    w = await clients.runs.GetWorkflow(request)
    print_json({**_summary(w), "definition": json.loads(w.definition_json)})


async def archive(args: argparse.Namespace, clients: AdminClients) -> None:
    from admin.__main__ import print_json

    w = await clients.runs.ArchiveWorkflow(pb.ArchiveWorkflowRequest(workflow_id=args.workflow))
    print_json(_summary(w))


async def delete(args: argparse.Namespace, clients: AdminClients) -> None:
    from admin.__main__ import print_json

    await clients.runs.DeleteWorkflow(pb.DeleteWorkflowRequest(workflow_id=args.workflow))
    print_json({"id": args.workflow, "deleted": True})


def register(groups: Any) -> None:
    """Adds the `workflows` command group."""
    wf = groups.add_parser("workflows", help="workflow definitions")
    cmds = wf.add_subparsers(dest="command", required=True)
    p = cmds.add_parser("apply", help="validate and apply definition files (YAML/JSON)")
    p.add_argument("files", nargs="+", metavar="FILE")
    owner = p.add_mutually_exclusive_group()
    owner.add_argument("--owner-user", metavar="USR", help="owned by this user (usr_...)")
    owner.add_argument("--owner-team", metavar="TEAM", help="owned by this team (team_...)")
    p.set_defaults(run=apply)
    p = cmds.add_parser("list", help="every workflow")
    p.set_defaults(run=list_)
    p = cmds.add_parser("show", help="one workflow with its definition (by id or slug)")
    p.add_argument("workflow", metavar="ID")
    p.set_defaults(run=show)
    p = cmds.add_parser("archive", help="no new runs; its runs and versions stay readable")
    p.add_argument("workflow", metavar="ID")
    p.set_defaults(run=archive)
    p = cmds.add_parser("delete", help="delete a workflow that never ran (else: archive it)")
    p.add_argument("workflow", metavar="ID")
    p.set_defaults(run=delete)
