"""``Pantheon.watch``: a node's ownership changes, synchronously (see :mod:`.feed`)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from typing import Any

import redis

from .common import Layout, command, parse_entries
from .connection import Master
from .feed import WAIT_MS, Position, WatchLine, snapshot_line


class Watch:
    """Iterate it for :class:`WatchLine` s, or call :meth:`next` with a timeout."""

    def __init__(self, master: Master, layout: Layout, node: str, from_id: str | None) -> None:
        self._master = master
        self._layout = layout
        self.node = node
        self._feed = layout.node_feed(node)
        self._position = Position(from_id)
        self._ready: deque[WatchLine] = deque()

    def __iter__(self) -> Iterator[WatchLine]:
        return self

    def __next__(self) -> WatchLine:
        while True:
            line = self.next(timeout_s=None)
            if line is not None:
                return line

    def next(self, timeout_s: float | None = None) -> WatchLine | None:
        """The next line; ``None`` when none came within ``timeout_s`` (``None``: wait as long
        as it takes). After an exception call it again: it goes on from the last line it
        returned."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            if self._ready:
                return self._ready.popleft()
            if self._position.state == "start":
                line = self._master.call(self._snapshot)
                self._position.after_snapshot(line)
                return line
            args = self._position.range_args(self._feed)
            lines = self._position.take(parse_entries(self._call(args)))
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
            self._call(wait)

    def _call(self, args: list[Any]) -> Any:
        return self._master.call(lambda r: command(r, *args))

    def _snapshot(self, r: redis.Redis) -> WatchLine:
        pipe = r.pipeline(transaction=True)
        pipe.smembers(self._layout.node_keys(self.node))
        command(pipe, "XREVRANGE", self._feed, "+", "-", "COUNT", 1)
        pipe.hget(self._layout.nodes, self.node)
        pipe.hget(self._layout.ring, "token_floor")
        keys, newest, record, floor = pipe.execute()
        return snapshot_line(keys, newest, record, floor)
