"""weft-admin as an operator uses it: in a pipeline that stops reading early."""

import json
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


def test_credits_go_only_to_accounts_that_exist(stack: Any) -> None:
    for account, code in (
        ("usr_doesnotexist", "NOT_FOUND"),
        ("team_doesnotexist", "NOT_FOUND"),
        ("acct_whatever", "NOT_FOUND"),
    ):
        done = stack.admin(
            "credits", "grant", "--account", account, "--amount-usd", "5", check=False
        )
        assert done.returncode == 1, done
        assert f"error: {code}" in done.stderr and "Traceback" not in done.stderr
    user = json.loads(stack.admin("users", "create", "--email", "grant@example.com").stdout)
    done = stack.admin("credits", "grant", "--account", user["id"], "--amount-usd", "5")
    assert json.loads(done.stdout)["account_id"] == user["id"]
