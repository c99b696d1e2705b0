"""The engines under faults, short form (issue 20): on an HA stack (a NATS cluster of 3
with the streams at 3 replicas, PostgreSQL with a synchronous streaming standby), a
bounded run-creation load keeps going while, in turn, a NATS node is killed and brought
back, the PostgreSQL primary is killed and the standby promoted, and a worker, the runs
service and billing are SIGKILLed and restarted. For each fault: no accepted run lost,
none duplicated, every completed run captured exactly once. (bench/chaos.py runs the
same for longer and prints the figures of bench/RESULTS.md.)"""

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from devstack import chaos
from devstack.stack import Ports, Stack, StackOptions
from tests.support.runs import create_account

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def ha_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root: Path = tmp_path_factory.mktemp("ha")
    stack = Stack(
        StackOptions(
            root=root,
            ports=Ports.free(ha=True),
            llm="none",
            fake_llm=True,
            ha=True,
            extra_env={
                "WEFT_PRICES": '{"fake:echo": [1000000, 2000000]}',
                "WEFT_WORKFLOWS_DIR": "",
                **chaos.FAST_RECOVERY,
            },
        )
    )
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


async def test_no_run_is_lost_or_duplicated_under_faults(ha_stack: Stack) -> None:
    stack = ha_stack
    account = create_account(stack, "100.00")
    definition = {
        "slug": f"chaos-{uuid.uuid4().hex[:8]}",
        "name": "Chaos",
        "stages": [
            {"id": "ask", "type": "llm", "model": "fake:echo", "prompt": "{{ input_text }}"}
        ],
    }
    async with aiohttp.ClientSession(headers=account.headers) as http:
        async with http.post(f"{stack.base_url}/api/v1/workflows", json=definition) as r:
            workflow_id = (await r.json())["data"]["id"]
        async with http.post(f"{stack.base_url}/api/v1/workflows/{workflow_id}/publish") as r:
            assert r.status == 201
    load = chaos.Load(stack.base_url, account.token, workflow_id, rate=8)
    loading = asyncio.create_task(load.run())
    faults = [
        ("NATS node killed, back after 2 s", chaos.kill_and_restart(stack, "nats2")),
        ("PostgreSQL primary killed, standby promoted", chaos.fail_over_postgres(stack)),
        ("worker SIGKILLed", chaos.kill_and_restart(stack, "worker")),
        ("runs service SIGKILLed", chaos.kill_and_restart(stack, "runs")),
        ("billing SIGKILLed", chaos.kill_and_restart(stack, "billing")),
    ]
    reports = []
    try:
        for name, fault in faults:
            reports.append(await chaos.inject(stack, load, name, fault))
    finally:
        load.stop()
        await loading
    print("\n" + chaos.TABLE_HEAD)
    for report in reports:
        print(report.row())
    for report in reports:
        assert report.accepted > 0, report
        assert report.lost == 0, report
        assert report.duplicated == 0, report
        assert report.capture_problems == 0, report
