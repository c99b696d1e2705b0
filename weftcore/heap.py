"""Garbage-collector setting for long-running service processes.

A full collection walks every object the collector tracks, including the hundreds of
thousands a process makes while starting (modules, gRPC and protobuf descriptors,
Jinja templates) that live as long as it does. Under load that was a pause of up to
~100 ms every few seconds in the gateway, the runs service and the worker, and a
request caught in one waited that long.
"""

import gc


def freeze_startup_heap() -> None:
    """Call once the process serves: everything alive now moves to the permanent
    generation, which collections never walk. Garbage made later is collected as before."""
    gc.collect()
    gc.freeze()
