"""devstack.ports: free ports on 127.0.0.1."""

from devstack.ports import bindable, free_port, pick_ports


def test_free_port_is_unique_and_bindable() -> None:
    ports = {free_port() for _ in range(50)}
    assert len(ports) == 50
    assert all(1024 < p < 65536 for p in ports)


def test_picked_ports_are_free_at_every_offset() -> None:
    base = pick_ports((0, 10000))
    assert bindable(base) and bindable(base + 10000)
    assert free_port() not in (base, base + 10000)
