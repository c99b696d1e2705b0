"""freeze_startup_heap: what is alive when the process starts serving is never walked
by a collection again; later garbage still is collected."""

import gc

from weftcore.heap import freeze_startup_heap


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector can free it


def test_startup_objects_are_frozen_and_later_cycles_still_collected() -> None:
    startup = Node()
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() > 0
        assert all(obj is not startup for obj in gc.get_objects())  # frozen: not tracked
        Node()  # garbage made after the freeze
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()
