"""``Pantheon.watch``: a node's ownership changes, with asyncio (see :mod:`..feed`)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis

from ..common import Layout, command, parse_entries
from ..feed import WAIT_MS, Position, WatchLine, snapshot_line
from .connection import Master


class Watch:
    """``async for`` it for :class:`WatchLine` s, or await :meth:`next` with a timeout."""

    def __init__(self, master: Master, layout: Layout, node: str, from_id: str | None) -> None:
        self._master = master
        self._layout = layout
        self.node = node
        self._feed = layout.node_feed(node)
        self._position = Position(from_id)
        self._ready: deque[WatchLine] = deque()

    def __aiter__(self) -> AsyncIterator[WatchLine]:
        return self

    async def __anext__(self) -> WatchLine:
        while True:
            line = await self.next(timeout_s=None)
            if line is not None:
                return line

    async def next(self, timeout_s: float | None = None) -> WatchLine | None:
        """The next line; ``None`` when none came within ``timeout_s``."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            if self._ready:
                return self._ready.popleft()
            if self._position.state == "start":
                line = await self._master.call(self._snapshot)
                self._position.after_snapshot(line)
                return line
            args = self._position.range_args(self._feed)
            reply = await self._call(args)
            lines = self._position.take(parse_entries(reply))
            if lines is None:
                continue
            if lines:
                self._ready.extend(lines)
                continue
            wait_ms = WAIT_MS
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                wait_ms = min(wait_ms, int(left * 1000))
            wait = self._position.wait_args(self._feed, wait_ms)
            await self._call(wait)

    async def _call(self, args: list[Any]) -> Any:
        return await self._master.call(lambda r: command(r, *args))

    async def _snapshot(self, r: aioredis.Redis) -> WatchLine:
        pipe = r.pipeline(transaction=True)
        pipe.smembers(self._layout.node_keys(self.node))
        command(pipe, "XREVRANGE", self._feed, "+", "-", "COUNT", 1)
        pipe.hget(self._layout.nodes, self.node)
        pipe.hget(self._layout.ring, "token_floor")
        keys, newest, record, floor = await pipe.execute()
        return snapshot_line(keys, newest, record, floor)
