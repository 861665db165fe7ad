"""Events delivered by a subscription, and the subscription settings (the same defaults and
rules as the Rust ``SubscribeOptions``)."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Callable

from .common import RawEntry
from .errors import ConfigError


@dataclass(frozen=True)
class SubscribeOptions:
    start: str = "now"
    """Where a new group starts: ``now`` (``$``) or ``beginning`` (``0``). An existing
    group keeps its own position."""
    min_idle_s: float = 30.0
    """An entry pending this long without an ack is delivered again (to whichever consumer
    claims it first, this one included)."""
    max_deliveries: int = 5
    """An entry delivered more often than this goes to the dead-letter stream instead."""
    block_s: float = 2.0
    """Longest single wait for new entries; between waits the claim scan runs."""
    count: int = 100
    """Most entries fetched per read."""

    def validate(self) -> None:
        if self.start not in ("now", "beginning"):
            raise ConfigError(f"start must be 'now' or 'beginning', got {self.start!r}")
        if self.min_idle_s < 0.001:
            raise ConfigError("min_idle must be at least 1ms")
        if self.block_s < 0.001:
            raise ConfigError("block must be at least 1ms")
        if self.max_deliveries < 1:
            raise ConfigError("max_deliveries must be at least 1")
        if self.count < 1:
            raise ConfigError("count must be at least 1")

    @property
    def claim_every_s(self) -> float:
        return max(self.min_idle_s / 2, 0.01)

    @property
    def min_idle_ms(self) -> int:
        return int(self.min_idle_s * 1000)

    @property
    def block_ms(self) -> int:
        return max(int(self.block_s * 1000), 1)


class EventBase:
    """One entry of the events stream, handed to one consumer of a group. It stays pending
    until acked."""

    __slots__ = ("deliveries", "fields", "id", "node", "type")

    def __init__(self, entry: RawEntry, deliveries: int) -> None:
        self.id: str = entry.id
        """The entry's id in the events stream: unique and increasing (de-duplicate by it)."""
        self.fields: dict[str, str] = {
            k.decode(errors="replace"): v.decode(errors="replace") for k, v in entry.fields
        }
        self.type: str = self.fields.get("type", "")
        """``joined``, ``ready``, ``died``, ``revived``, ``rebalanced``, ... (README)."""
        self.node: str | None = self.fields.get("node")
        """The node of a node event, else ``None``."""
        self.deliveries = deliveries
        """How many times it has been delivered, this time included (1 = first time)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, type={self.type!r}, node={self.node!r})"


class Event(EventBase):
    """An event of the synchronous client's subscription."""

    __slots__ = ("_ack",)

    def __init__(self, entry: RawEntry, deliveries: int, ack: Callable[[str], bool]) -> None:
        super().__init__(entry, deliveries)
        self._ack = ack

    def ack(self) -> bool:
        """Acknowledges the event: it will not be delivered again. Returns whether it was
        still pending."""
        return self._ack(self.id)


class AsyncEvent(EventBase):
    """An event of the asyncio client's subscription: ``await event.ack()``."""

    __slots__ = ("_ack",)

    def __init__(
        self, entry: RawEntry, deliveries: int, ack: Callable[[str], Awaitable[bool]]
    ) -> None:
        super().__init__(entry, deliveries)
        self._ack = ack

    async def ack(self) -> bool:
        """Acknowledges the event; whether it was still pending."""
        return await self._ack(self.id)
