"""The chaos suite's accounting of outages, and the NATS cluster node's arguments."""

from devstack.chaos import Load, kill_and_restart
from devstack.nats import ClusterNode


def test_the_longest_outage_is_the_longest_stretch_without_an_accepted_creation() -> None:
    load = Load("http://x", "t", "wf_1", rate=10)
    load.successes = [10.1, 10.2, 13.7, 13.8]
    assert load.longest_outage(10.0, 14.0) == 13.7 - 10.2
    # Nothing accepted at all: the whole window.
    assert load.longest_outage(20.0, 25.0) == 5.0
    # A stretch running to the end of the window counts too.
    assert round(load.longest_outage(13.0, 18.0), 6) == round(18.0 - 13.8, 6)


def test_a_cluster_node_routes_to_every_node() -> None:
    node = ClusterNode("nats2", 6223, (6222, 6223, 6224))
    args = node.args()
    assert args[args.index("--name") + 1] == "nats2"
    assert args[args.index("--cluster") + 1] == "nats://127.0.0.1:6223"
    routes = args[args.index("--routes") + 1].split(",")
    assert routes == [f"nats://127.0.0.1:{p}" for p in (6222, 6223, 6224)]


def test_a_fault_is_a_plain_callable() -> None:
    class FakeStack:
        def __init__(self) -> None:
            self.calls: list[tuple[str, str]] = []

        def kill(self, name: str) -> None:
            self.calls.append(("kill", name))

        def start(self, name: str) -> None:
            self.calls.append(("start", name))

    stack = FakeStack()
    kill_and_restart(stack, "billing", down_seconds=0)()  # type: ignore[arg-type]
    assert stack.calls == [("kill", "billing"), ("start", "billing")]
