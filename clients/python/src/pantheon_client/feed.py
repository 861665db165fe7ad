"""A node's ownership feed, as the Rust ``Watch`` (shared/client/src/watch.rs) reads it: a
snapshot first (unless resuming), then each ``acquire``, ``release`` and ``handoff`` in
commit order, with nothing missed and nothing repeated. A ``handoff`` line changes nothing
the node owns: it is asked to release those keys to ``peer`` (ADR 0016); an ``acquire``
with ``state`` true carries keys ``peer`` released with their state. This module holds the
decisions; :mod:`.watch` and :mod:`.aio.watch` do the reads.

A feed entry has ``op``, its keys (``pkeys``, sorted and front-coded, or ``keys``, a JSON
array: see :func:`decode_prefixed`), ``token``, ``peer`` (absent: none) and ``cause``.
Resuming reads ``XRANGE <from> +``: the entry resumed from must come back first, or the feed
no longer holds it (trimmed, expired) and the reader starts again from a snapshot. See
docs/adr/0015-ownership-tokens-and-feeds.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .common import RawEntry, node_record, parse_entries, text
from .errors import PantheonError

ZERO = "0-0"
PAGE = 500
"""Entries read per round trip."""
FEED_MAX_LEN = 1000
"""Entries a feed keeps (about: ``MAXLEN ~``)."""
WAIT_MS = 5000
"""Longest single wait for a new entry."""


@dataclass(frozen=True)
class WatchLine:
    """One change of a node's owned keys: ``op`` is ``snapshot`` (the whole set, replaces
    what the reader had), ``acquire``, ``release`` or ``handoff`` (still owned; asked to
    release them to ``peer``). Resume after it with ``watch(node, from_id=line.id)``."""

    id: str
    op: str
    keys: list[str]
    token: int
    peer: str | None = None
    cause: str | None = None
    state: bool = False


def decode(entry: RawEntry) -> WatchLine:
    """A feed entry as a line; an entry this client cannot read raises, naming it."""
    f = {text(k): text(v) for k, v in entry.fields}

    def bad(why: str) -> PantheonError:
        return PantheonError(f"feed entry {entry.id}: {why}")

    op = f.get("op")
    if op not in ("acquire", "release", "handoff"):
        raise bad(f"unknown op {op!r}")
    if "pkeys" in f:
        try:
            keys = decode_prefixed(f["pkeys"])
        except ValueError as e:
            raise bad(f"pkeys: {e}") from None
    else:
        try:
            keys = json.loads(f.get("keys", ""))
        except ValueError as e:
            raise bad(f"keys: {e}") from None
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise bad("keys is not a list of strings")
    try:
        token = int(f.get("token", ""))
    except ValueError:
        raise bad("token is not a number") from None
    return WatchLine(
        entry.id, op, keys, token, f.get("peer"), f.get("cause"), f.get("state") == "1"
    )


def decode_prefixed(value: str) -> list[str]:
    """A ``pkeys`` value: the keys sorted, each as ``<shared>:<length>:<suffix>``, where
    ``shared`` is how many bytes it has in common with the key before it and ``length`` the
    byte length of the rest (shared/store/src/feed/key_list.rs writes it). Raises
    ``ValueError`` saying where it stops making sense."""
    data = value.encode()
    keys: list[bytes] = []
    at = 0

    def number(start: int) -> tuple[int, int]:
        end = start
        while end < len(data) and 48 <= data[end] <= 57:
            end += 1
        if end == start or end >= len(data) or data[end] != ord(":"):
            raise ValueError(f"expected a number and ':' at byte {start}")
        return int(data[start:end]), end + 1

    while at < len(data):
        shared, at = number(at)
        length, at = number(at)
        previous = keys[-1] if keys else b""
        if shared > len(previous):
            raise ValueError(
                f"key {len(keys) + 1} shares {shared} bytes with a key of {len(previous)}"
            )
        if at + length > len(data):
            raise ValueError(f"key {len(keys) + 1} runs past the end")
        key = previous[:shared] + data[at : at + length]
        if not key:
            raise ValueError(f"key {len(keys) + 1} is empty")
        keys.append(key)
        at += length
    try:
        return [k.decode() for k in keys]
    except UnicodeDecodeError:
        raise ValueError("a key is not UTF-8") from None


def snapshot_line(keys: Any, newest: Any, record: Any, floor: Any) -> WatchLine:
    """The snapshot from one ``MULTI``: ``SMEMBERS`` of the node's keys, ``XREVRANGE`` of its
    feed (``COUNT 1``), its record, and the ring's ``token_floor``."""
    members = sorted(text(k) for k in keys or [])
    entries = parse_entries(newest)
    at = entries[0].id if entries else ZERO
    own = int(node_record(text(record)).get("token", 0)) if record is not None else 0
    token = max(own, int(text(floor))) if floor is not None else own
    return WatchLine(at, "snapshot", members, token if members else 0)


class Position:
    """Where a reader is in the feed: ``start`` (needs a snapshot), ``from_start`` (a snapshot
    found the feed empty: every entry is new), or after entry ``at``."""

    def __init__(self, from_id: str | None) -> None:
        self.at: str | None = None
        self.state = "start"
        if from_id not in (None, ZERO):
            self.state, self.at = "at", from_id

    def after_snapshot(self, line: WatchLine) -> None:
        if line.id == ZERO:
            self.state, self.at = "from_start", None
        else:
            self.state, self.at = "at", line.id

    def take(self, raw: list[RawEntry]) -> list[WatchLine] | None:
        """The lines of a read in the current state; ``None`` when the reader must start
        again from a snapshot (the position is gone, or the feed may have been trimmed)."""
        if self.state == "at":
            if not raw or raw[0].id != self.at:
                self.state, self.at = "start", None
                return None
            raw = raw[1:]
        elif len(raw) >= FEED_MAX_LEN:
            self.state, self.at = "start", None
            return None
        lines = [decode(e) for e in raw]
        if lines:
            self.state, self.at = "at", lines[-1].id
        return lines

    def range_args(self, feed: str) -> list[Any]:
        if self.state == "at":
            return ["XRANGE", feed, self.at, "+", "COUNT", PAGE + 1]
        return ["XRANGE", feed, "-", "+", "COUNT", FEED_MAX_LEN]

    def wait_args(self, feed: str, wait_ms: int) -> list[Any]:
        # `$` cannot see an entry added between the read and this wait: keep it short.
        after = self.at if self.state == "at" else "$"
        block = wait_ms if self.state == "at" else min(wait_ms, 200)
        return ["XREAD", "COUNT", 1, "BLOCK", max(1, block), "STREAMS", feed, after]
