"""Start times the backing-server tests measure, printed once after them."""

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="package")
def timings(request: pytest.FixtureRequest) -> Iterator[dict[str, float]]:
    """Label -> seconds; printed at the end, bypassing output capture (as
    capsys.disabled()), so CI logs show how long the servers take to start."""
    measured: dict[str, float] = {}
    yield measured
    capman = request.config.pluginmanager.get_plugin("capturemanager")
    if not measured or capman is None:
        return
    with capman.global_and_fixture_disabled():
        print("\nbacking server timings:")
        for name, seconds in measured.items():
            print(f"  {name:<34} {seconds:6.2f} s")
