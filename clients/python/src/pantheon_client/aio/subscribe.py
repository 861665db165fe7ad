"""The asyncio twin of :mod:`pantheon_client.subscribe`. Consumer-group subscriptions to the
events stream, as the Rust ``Subscription``
(shared/client/src/subscribe.rs). Delivery is at least once; :meth:`Subscription.next`
works in three phases:

1. **own**: on start (and after an error) it re-reads this consumer's own pending entries
   (``XREADGROUP ... 0``): what was delivered before a restart and not acked comes first;
2. **claim**: it takes over entries pending at any consumer of the group for longer than
   ``min_idle`` (``XAUTOCLAIM``), so a crashed consumer's entries move to a live one; the
   claim scan repeats every ``min_idle / 2``;
3. **new**: it reads new entries (``XREADGROUP ... >`` with ``BLOCK``).

An entry delivered more than ``max_deliveries`` times is moved to the dead-letter stream
``<events>:dead`` with ``original_id``, ``group``, ``deliveries`` and its fields, and acked,
in one transaction.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator

import redis
import redis.asyncio as aioredis

from ..common import Layout, RawEntry, command, parse_autoclaim, parse_read, pending_count
from ..events import AsyncEvent as Event
from ..events import SubscribeOptions
from .connection import Master

_ZERO = "0-0"


class Subscription:
    """A consumer in a consumer group on the events stream; iterate it for events and ack
    each one once handled."""

    def __init__(
        self, master: Master, layout: Layout, group: str, consumer: str, options: SubscribeOptions
    ) -> None:
        self._master = master
        self.stream = layout.events
        self.dead_letter_stream = layout.dead_letters
        self.group = group
        self.consumer = consumer
        self.options = options
        self._phase = "own"
        self._cursor = _ZERO
        self._buffer: deque[Event] = deque()
        self._next_claim = time.monotonic()
        self._group_ready = False

    @classmethod
    async def open(
        cls, master: Master, layout: Layout, group: str, consumer: str, options: SubscribeOptions
    ) -> Subscription:
        sub = cls(master, layout, group, consumer, options)
        await sub._ensure_group()
        return sub

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        while True:
            event = await self.next(timeout_s=None)
            if event is not None:
                return event

    async def next(self, timeout_s: float | None = None) -> Event | None:
        """The next event for this consumer: its own unacked entries first, then entries
        claimed from stuck consumers, then new ones. ``None`` when nothing came within
        ``timeout_s`` (``None`` waits as long as it takes). After an exception call it
        again: it starts over from its pending entries, so nothing is lost."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            if self._buffer:
                return self._buffer.popleft()
            if deadline is not None and time.monotonic() >= deadline:
                return None
            try:
                await self._fill(deadline)
            except redis.RedisError as e:
                if "NOGROUP" in str(e):
                    self._group_ready = False
                self._buffer.clear()
                self._phase, self._cursor = "own", _ZERO
                raise

    async def ack(self, entry_id: str) -> bool:
        """Acknowledges an entry; ``False`` when it was not pending any more."""
        n = await self._master.call(lambda r: command(r, "XACK", self.stream, self.group, entry_id))
        return int(n) > 0

    async def _ensure_group(self) -> None:
        start = "$" if self.options.start == "now" else "0"

        async def create(r: aioredis.Redis) -> None:
            try:
                await command(r, "XGROUP", "CREATE", self.stream, self.group, start, "MKSTREAM")
            except redis.ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise

        await self._master.call(create)
        self._group_ready = True

    def _event(self, entry: RawEntry, deliveries: int) -> Event:
        return Event(entry, deliveries, self.ack)

    async def _fill(self, deadline: float | None) -> None:
        if not self._group_ready:
            await self._ensure_group()
        opts = self.options
        if self._phase == "own":
            reply = await self._master.call(
                lambda r: command(
                    r,
                    "XREADGROUP",
                    "GROUP",
                    self.group,
                    self.consumer,
                    "COUNT",
                    opts.count,
                    "STREAMS",
                    self.stream,
                    self._cursor,
                )
            )
            entries = parse_read(reply)
            await self._admit_pending(entries)
            if entries:
                self._cursor = entries[-1].id
            else:
                self._phase, self._cursor = "claim", _ZERO
        elif self._phase == "claim":
            reply = await self._master.call(
                lambda r: command(
                    r,
                    "XAUTOCLAIM",
                    self.stream,
                    self.group,
                    self.consumer,
                    opts.min_idle_ms,
                    self._cursor,
                    "COUNT",
                    opts.count,
                )
            )
            cursor, entries = parse_autoclaim(reply)
            await self._admit_pending(entries)
            if cursor == _ZERO:
                self._phase = "new"
                self._next_claim = time.monotonic() + opts.claim_every_s
            else:
                self._cursor = cursor
        else:
            now = time.monotonic()
            if now >= self._next_claim:
                self._phase, self._cursor = "claim", _ZERO
                return
            until = self._next_claim if deadline is None else min(self._next_claim, deadline)
            block_ms = max(1, min(opts.block_ms, int((until - now) * 1000)))
            reply = await self._master.call(
                lambda r: command(
                    r,
                    "XREADGROUP",
                    "GROUP",
                    self.group,
                    self.consumer,
                    "COUNT",
                    opts.count,
                    "BLOCK",
                    block_ms,
                    "STREAMS",
                    self.stream,
                    ">",
                )
            )
            # First deliveries: the counter is 1, within any max_deliveries.
            self._buffer.extend(self._event(e, 1) for e in parse_read(reply))

    async def _admit_pending(self, entries: list[RawEntry]) -> None:
        """Queues re-delivered entries after checking each one's delivery counter; too many
        deliveries go to the dead-letter stream. Entries trimmed meanwhile (no fields) are
        acked and skipped."""
        gone = [e.id for e in entries if not e.fields]
        if gone:
            await self._master.call(lambda r: command(r, "XACK", self.stream, self.group, *gone))
        live = [e for e in entries if e.fields]
        if not live:
            return

        async def counts(r: aioredis.Redis) -> list[object]:
            pipe = r.pipeline(transaction=False)
            for e in live:
                command(pipe, "XPENDING", self.stream, self.group, e.id, e.id, 1)
            return list(await pipe.execute())

        for entry, reply in zip(live, await self._master.call(counts)):
            deliveries = pending_count(reply)
            if deliveries is None:  # acked by another consumer meanwhile
                continue
            if deliveries > self.options.max_deliveries:
                await self._dead_letter(entry, deliveries)
            else:
                self._buffer.append(self._event(entry, deliveries))

    async def _dead_letter(self, entry: RawEntry, deliveries: int) -> None:
        """Copies an entry to the dead-letter stream and acks it, atomically."""
        flat: list[bytes | str | int] = []
        for k, v in entry.fields:
            flat.extend((k, v))

        async def move(r: aioredis.Redis) -> None:
            pipe = r.pipeline(transaction=True)
            command(
                pipe,
                "XADD",
                self.dead_letter_stream,
                "*",
                "original_id",
                entry.id,
                "group",
                self.group,
                "deliveries",
                deliveries,
                *flat,
            )
            command(pipe, "XACK", self.stream, self.group, entry.id)
            await pipe.execute()

        await self._master.call(move)
