"""The shared prompt-token estimate."""

from weftcore.tokens import MESSAGE_OVERHEAD_TOKENS, estimate_tokens


def test_empty_text_is_zero() -> None:
    assert estimate_tokens("") == 0


def test_counts_utf8_bytes_rounded_up() -> None:
    assert estimate_tokens("abc") == 1 + MESSAGE_OVERHEAD_TOKENS
    assert estimate_tokens("abcd") == 2 + MESSAGE_OVERHEAD_TOKENS
    # Three bytes each in UTF-8: non-Latin text is not under-estimated.
    assert estimate_tokens("日本語") == 3 + MESSAGE_OVERHEAD_TOKENS


def test_grows_with_text() -> None:
    assert estimate_tokens("x" * 30_000) == 10_000 + MESSAGE_OVERHEAD_TOKENS
