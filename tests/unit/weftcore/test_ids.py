"""Ids: Crockford base32 of 50 bits of milliseconds and 80 random bits, time-ordered."""

import random
import time

from weftcore.ids import encode_id, has_prefix, new_id

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def base32(value: int, length: int) -> str:
    """The plain definition, five bits a character, most significant first."""
    return "".join(ALPHABET[(value >> 5 * i) & 31] for i in reversed(range(length)))


def test_the_fast_encoder_matches_the_definition() -> None:
    rng = random.Random(7)
    cases = [(0, 0), ((1 << 50) - 1, (1 << 80) - 1)]
    cases += [(rng.getrandbits(50), rng.getrandbits(80)) for _ in range(2000)]
    for millis, rand in cases:
        assert encode_id(millis, rand) == base32(millis, 10) + base32(rand, 16)


def test_ids_are_prefixed_and_sort_by_time() -> None:
    first = new_id("run")
    time.sleep(0.002)
    second = new_id("run")
    assert has_prefix(first, "run") and len(first) == len("run_") + 26
    assert first < second
    assert set(first[4:]) <= set(ALPHABET)
