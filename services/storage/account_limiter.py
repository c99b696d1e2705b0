"""At most N of something at once per account; an account's extra callers wait their turn."""

import asyncio
from dataclasses import dataclass, field


@dataclass
class _Account:
    slots: asyncio.Semaphore
    held: int = 0
    users: int = 0  # holders and waiters: the entry goes when the last one leaves


@dataclass
class AccountLimiter:
    """Per-account slots. Waiting for one's own account never delays another account, so
    one busy account cannot stall the rest. Only accounts in use take memory."""

    per_account: int
    _accounts: dict[str, _Account] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.per_account < 1:
            raise ValueError("per_account must be at least 1")

    async def acquire(self, account: str) -> None:
        """Takes one of `account`'s slots, waiting (in order) while all are held."""
        entry = self._accounts.get(account)
        if entry is None:
            entry = self._accounts[account] = _Account(asyncio.Semaphore(self.per_account))
        entry.users += 1
        try:
            await entry.slots.acquire()
        except BaseException:  # cancelled or timed out while waiting: nothing is held
            self._leave(account, entry)
            raise
        entry.held += 1

    def release(self, account: str) -> None:
        """Gives back a slot taken by `acquire(account)`."""
        entry = self._accounts[account]
        entry.held -= 1
        entry.slots.release()
        self._leave(account, entry)

    def in_use(self, account: str) -> int:
        """Slots of `account` held right now."""
        entry = self._accounts.get(account)
        return entry.held if entry else 0

    def _leave(self, account: str, entry: _Account) -> None:
        entry.users -= 1
        if entry.users == 0:
            del self._accounts[account]
