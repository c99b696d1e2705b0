"""The engines under faults, short form (issue 20): on an HA stack (a NATS cluster of 3
with the streams at 3 replicas, PostgreSQL with a synchronous streaming standby), a
bounded run-creation load keeps going while, in turn, a NATS node is killed and brought
back, the PostgreSQL primary is killed and the standby promoted, and a worker, the runs
service and billing are SIGKILLed and restarted. For each fault: no accepted run lost,
none duplicated, every completed run captured exactly once. (bench/chaos.py runs the
same for longer and prints the figures of bench/RESULTS.md.)"""

import asyncio
from collections.abc import Iterator

import pytest

from devstack import chaos
from devstack.stack import Stack
from tests.support.runs import create_account

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def ha_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(chaos.ha_options(tmp_path_factory.mktemp("ha")))
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


async def test_no_run_is_lost_or_duplicated_under_faults(ha_stack: Stack) -> None:
    stack = ha_stack
    account = create_account(stack, "100.00")
    workflow_id = await chaos.publish_workflow(stack, account.token)
    load = chaos.Load(stack.base_url, account.token, workflow_id, rate=8)
    loading = asyncio.create_task(load.run())
    reports = []
    try:
        for name, fault in chaos.faults(stack, nats_down_seconds=2):
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
