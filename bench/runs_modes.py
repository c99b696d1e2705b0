"""The workloads bench_runs.py can drive (`--mode`): which workflow the load creates runs
of, and what the stack needs for it.

- `template`: a template-only workflow. Free runs on the caller's own account skip
  billing entirely (no reservation, no capture): the cheapest run there is.
- `realistic`: one `llm` stage on a priced model, then the same template. Every run
  reserves its estimate in billing when created, calls the model (a fake
  OpenAI-compatible server on loopback, tests/support/fake_llm.py) and is captured when
  it finishes: the path a paying user's run takes.
"""

import json
from dataclasses import dataclass, field
from typing import Any

# A small hosted model's price, in micro-dollars per million tokens (input, output).
PRICED_MODEL = "fake:bench-mini"
PRICE_MICROS_PER_MTOK = (150_000, 600_000)
LLM_MAX_TOKENS = 40
# What one run reserves and is charged: billing rounds every priced stage up to a whole
# cent (services/billing/pricing.py), and this stage's raw cost (a few dozen tokens at
# the price above) is far below one.
RUN_COST_MICROS = 10_000

TEMPLATE_STAGE = {"id": "echo", "type": "template", "template": "{{ input_text }} {{ params.n }}"}


@dataclass(frozen=True)
class Mode:
    name: str
    describe: str
    workflow: dict[str, Any]
    billed: bool  # every run reserves credits and is captured
    fake_llm: bool  # the stack starts the fake OpenAI-compatible server (provider "fake")
    env: dict[str, str] = field(default_factory=dict)

    def credits_usd(self, max_runs: int) -> str:
        """What to grant each account so that `max_runs` runs never meet a 402."""
        runs_cost = max_runs * RUN_COST_MICROS if self.billed else 0
        return f"{max(1000, runs_cost // 1_000_000 + 1)}"


TEMPLATE = Mode(
    name="template",
    describe="template-only workflow; free runs skip billing",
    workflow={
        "slug": "bench-template",
        "name": "Bench (template only)",
        "fields": [{"name": "n", "type": "integer", "default": 1}],
        "stages": [TEMPLATE_STAGE],
    },
    billed=False,
    fake_llm=False,
)

REALISTIC = Mode(
    name="realistic",
    describe=(
        f"an llm stage on {PRICED_MODEL} (priced, fake OpenAI-compatible server), then the"
        " template; every run reserves credits and is captured"
    ),
    workflow={
        "slug": "bench-llm",
        "name": "Bench (one priced llm stage, then a template)",
        "fields": [{"name": "n", "type": "integer", "default": 1}],
        "stages": [
            {
                "id": "summarise",
                "type": "llm",
                "model": PRICED_MODEL,
                "prompt": "Summarise: {{ input_text }} {{ params.n }}",
                "max_tokens": LLM_MAX_TOKENS,
            },
            {**TEMPLATE_STAGE, "template": "{{ stages.summarise }} {{ params.n }}"},
        ],
    },
    billed=True,
    fake_llm=True,
    env={"WEFT_PRICES": json.dumps({PRICED_MODEL: list(PRICE_MICROS_PER_MTOK)})},
)

MODES = {mode.name: mode for mode in (TEMPLATE, REALISTIC)}
