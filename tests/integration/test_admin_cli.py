"""weft-admin as an operator uses it: in a pipeline that stops reading early."""

import subprocess
import sys
from typing import Any

from devstack.stack import PROJECT_ROOT


def test_a_reader_that_stops_early_is_not_an_error(stack: Any) -> None:
    # `true` reads nothing and exits at once: every write of weft-admin meets a closed pipe.
    pipeline = subprocess.run(
        f"{sys.executable} -m admin prices list | true",
        shell=True,
        env=stack.env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        executable="/bin/bash",
    )
    assert pipeline.returncode == 0
    assert "Traceback" not in pipeline.stderr and "BrokenPipe" not in pipeline.stderr, (
        pipeline.stderr
    )
