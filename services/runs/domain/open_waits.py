"""A cap on each account's open long-polls and event streams in one runs process.

Each one holds a gRPC stream, a gateway connection and a notifier registration for up
to a minute (long-polls) or a run's lifetime (streams), so one account opening thousands
would crowd out every other. Over the cap: 429 RATE_LIMITED with `Retry-After`, as for
run creation."""

from collections.abc import Iterator
from contextlib import contextmanager

from weftcore.errors import ResourceExhausted

RETRY_AFTER_SECONDS = 1


class OpenWaits:
    def __init__(self, per_account: int) -> None:
        self.per_account = per_account
        self._open: dict[str, int] = {}

    def count(self, account_id: str) -> int:
        return self._open.get(account_id, 0)

    @contextmanager
    def hold(self, account_id: str) -> Iterator[None]:
        """One open wait of `account_id` for the duration of the block."""
        held = self._open.get(account_id, 0)
        if held >= self.per_account:
            raise ResourceExhausted(
                f"This account already has {held} long-polls and event streams open "
                f"(the limit is {self.per_account}); close some or poll less.",
                code="RATE_LIMITED",
                extra={
                    "limit": self.per_account,
                    "remaining": 0,
                    "retry_after": RETRY_AFTER_SECONDS,
                },
            )
        self._open[account_id] = held + 1
        try:
            yield
        finally:
            left = self._open[account_id] - 1
            if left:
                self._open[account_id] = left
            else:
                del self._open[account_id]
