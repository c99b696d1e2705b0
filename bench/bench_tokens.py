"""Benchmark: live tokens through Weft (issue 18) against the embedded llama.cpp server
called directly with the same prompt, on the same machine.

- time to first token: POST the run -> first `stage.delta` on the gateway's SSE, against
  POST /chat/completions (stream) -> first content chunk, one at a time;
- tokens/s at 1 and 4 concurrent: the completion tokens (usage) over the time from the
  first to the last piece, summed over the concurrent streams for the aggregate.

Targets: TTFT within 50 ms of direct; tokens/s >= 95% of direct at 1 and 4 concurrent.
The model server runs with 4 parallel slots (as production would for 4 streams).

    python bench/bench_tokens.py                 # own temporary stack, 3 rounds
    python bench/bench_tokens.py --max-tokens 96 --rounds 5
"""

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devstack.llm import EmbeddedLLM, ensure_model
from devstack.stack import PROJECT_ROOT, Ports, Stack, StackOptions
from services.runs.worker.stages.llm import DEFAULT_SYSTEM

PROMPT = "Describe a walk along a river in spring, in plain sentences."
MODEL = "local:qwen2.5-coder-1.5b-instruct"


@dataclass(frozen=True)
class Stream:
    ttft_s: float  # request sent -> first piece
    span_s: float  # first piece -> last piece
    tokens: int  # completion tokens (usage)


async def direct(http: aiohttp.ClientSession, llm: EmbeddedLLM, max_tokens: int) -> Stream:
    body = {
        "model": llm.alias,
        "messages": [
            {"role": "system", "content": DEFAULT_SYSTEM},
            {"role": "user", "content": PROMPT},
        ],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    began = time.perf_counter()
    first = last = 0.0
    tokens = 0
    async with http.post(f"{llm.base_url}/chat/completions", json=body) as response:
        async for raw in response.content:
            line = raw.strip()
            if not line.startswith(b"data:") or line.endswith(b"[DONE]"):
                continue
            chunk = json.loads(line[5:])
            if chunk.get("usage"):
                tokens = int(chunk["usage"]["completion_tokens"])
            for choice in chunk.get("choices") or ():
                if (choice.get("delta") or {}).get("content"):
                    last = time.perf_counter()
                    first = first or last
    return Stream(first - began, last - first, tokens)


async def through_weft(
    http: aiohttp.ClientSession, base: str, token: str, workflow_id: str
) -> Stream:
    headers = {"Authorization": f"Bearer {token}"}
    began = time.perf_counter()
    async with http.post(
        f"{base}/api/v1/workflows/{workflow_id}/runs", json={"input_text": "go"}, headers=headers
    ) as response:
        run = (await response.json())["data"]
    first = last = 0.0
    tokens = 0
    async with http.get(f"{base}/api/v1/workflow-runs/{run['id']}/events", headers=headers) as r:
        event = ""
        async for raw in r.content:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "stage.delta":
                last = time.perf_counter()
                first = first or last
            elif line.startswith("data:") and event == "run.completed":
                cost = json.loads(line[5:])["data"]["cost_breakdown"][0]
                tokens = int(cost["output_tokens"])
    return Stream(first - began, last - first, tokens)


def rate(streams: list[Stream]) -> float:
    """Aggregate tokens/s of streams that ran together."""
    return sum(s.tokens for s in streams) / max(s.span_s for s in streams)


def make_account(stack: Stack) -> str:
    email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
    user = json.loads(stack.admin("users", "create", "--email", email, "--plan", "pro").stdout)
    stack.admin("credits", "grant", "--account", user["id"], "--amount-usd", "100")
    key = json.loads(stack.admin("keys", "create", "--user", user["id"], "--name", "b").stdout)
    return str(key["secret"])


def apply(stack: Stack, root: Path, max_tokens: int) -> str:
    stage: dict[str, Any] = {"id": "talk", "type": "llm", "model": MODEL, "prompt": PROMPT}
    stage["max_tokens"] = max_tokens
    definition = {"slug": "bench-tokens", "name": "Bench tokens", "stages": [stage]}
    path = root / "bench-tokens.json"
    path.write_text(json.dumps(definition))
    return str(json.loads(stack.admin("workflows", "apply", str(path)).stdout)[0]["id"])


async def measure(args: argparse.Namespace, stack: Stack, llm: EmbeddedLLM, root: Path) -> None:
    token = make_account(stack)
    workflow_id = apply(stack, root, args.max_tokens)
    base = stack.base_url
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        await direct(http, llm, 8)  # warm the model (and its prompt cache) once
        await through_weft(http, base, token, workflow_id)
        results: dict[str, list[Any]] = {k: [] for k in ("d1", "w1", "d4", "w4")}
        for _ in range(args.rounds):  # interleaved: the machine's load hits both alike
            results["d1"].append(await direct(http, llm, args.max_tokens))
            results["w1"].append(await through_weft(http, base, token, workflow_id))
            results["d4"].append(
                await asyncio.gather(*(direct(http, llm, args.max_tokens) for _ in range(4)))
            )
            results["w4"].append(
                await asyncio.gather(
                    *(through_weft(http, base, token, workflow_id) for _ in range(4))
                )
            )
    ttft = {k: statistics.median(s.ttft_s * 1000 for s in results[k]) for k in ("d1", "w1")}
    one = {k: statistics.median(rate([s]) for s in results[k]) for k in ("d1", "w1")}
    four = {k: statistics.median(rate(list(g)) for g in results[k]) for k in ("d4", "w4")}
    print(f"rounds {args.rounds}, max_tokens {args.max_tokens}, 4 model slots")
    print(
        f"TTFT (median, one at a time): direct {ttft['d1']:.1f} ms, Weft SSE {ttft['w1']:.1f} ms"
        f" (+{ttft['w1'] - ttft['d1']:.1f} ms; target <= +50)"
    )
    print(
        f"tokens/s alone: direct {one['d1']:.1f}, Weft {one['w1']:.1f}"
        f" ({100 * one['w1'] / one['d1']:.0f}%; target >= 95%)"
    )
    print(
        f"tokens/s, 4 at once (aggregate): direct {four['d4']:.1f}, Weft {four['w4']:.1f}"
        f" ({100 * four['w4'] / four['d4']:.0f}%)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="weft-bench-tokens-"))
    ports = Ports.free()
    llm = EmbeddedLLM(
        root / "llm", ports.llm, ensure_model(PROJECT_ROOT / ".weft" / "models"), parallel=4
    )
    stack = Stack(
        StackOptions(root=root, ports=ports, llm="none", extra_env={"WEFT_LOG_LEVEL": "WARNING"})
    )
    llm.start()
    try:
        stack.start()
        try:
            asyncio.run(measure(args, stack, llm, root))
        finally:
            stack.stop()
    finally:
        llm.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
