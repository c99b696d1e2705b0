"""A tokenizer-free estimate of prompt tokens, shared by runs (estimates) and tests.

Heuristic: BPE tokenizers of current LLMs average about 4 bytes of English per token but
fewer for code, digits and non-Latin scripts, so we count UTF-8 bytes / 3, rounded up,
plus a fixed overhead for the chat template (role markers, system prompt framing).
It over-estimates on purpose: the estimate is what gets reserved before a run starts.
"""

import math

BYTES_PER_TOKEN = 3
MESSAGE_OVERHEAD_TOKENS = 16


def estimate_tokens(text: str) -> int:
    """Estimated prompt tokens of `text` (0 for the empty string)."""
    if not text:
        return 0
    return math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN) + MESSAGE_OVERHEAD_TOKENS
