"""The webhook verification examples in docs/integrations.md accept what Weft signs."""

import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from services.runs.delivery.webhooks import sign

DOC = Path(__file__).parents[4] / "docs" / "integrations.md"


def _block(language: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), re.S)
    return next(b for b in blocks if "erify" in b)


def test_python_example_verifies_weft_signatures() -> None:
    namespace: dict[str, Any] = {}
    exec(_block("python"), namespace)
    verify = namespace["verify_weft_signature"]
    body = b'{"id":"evt_1","type":"run.completed","data":{"id":"run_1"}}'
    now = int(time.time())
    header = sign("whsec_test", body, now)
    assert verify("whsec_test", header, body)
    assert not verify("whsec_other", header, body)
    assert not verify("whsec_test", header, body + b" ")
    assert not verify("whsec_test", sign("whsec_test", body, now - 3600), body)
    assert not verify("whsec_test", "garbage", body)


def test_node_example_verifies_weft_signatures(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    code = _block("js")
    # Only the function: the Express app around it needs a package not installed here.
    fn = code[code.index("function verifyWeftSignature") : code.index("const seen")]
    body = '{"id":"evt_1","data":{"id":"run_1"}}'
    header = sign("whsec_test", body.encode(), int(time.time()))
    script = (
        'const crypto = require("node:crypto");\nconst TOLERANCE_SECONDS = 300;\n'
        + fn
        + f"const body = Buffer.from({body!r});\n"
        + f"console.log(verifyWeftSignature('whsec_test', {header!r}, body),"
        + f" verifyWeftSignature('whsec_x', {header!r}, body),"
        + " verifyWeftSignature('whsec_test', 'nope', body));\n"
    )
    (tmp_path / "v.js").write_text(script)
    done = subprocess.run(
        [node, str(tmp_path / "v.js")], capture_output=True, text=True, timeout=60
    )
    assert done.stdout.split() == ["true", "false", "false"], done.stderr
