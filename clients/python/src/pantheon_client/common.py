"""What the synchronous and the asyncio clients share: key names (shared/store/src/
layout.rs), names checks, entry ids, and the parsing of Redis replies."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError, InvalidInput, PantheonError
from .health_url import debug
from .wire import check_node

DEFAULT_PREFIX = "pantheon"
DEFAULT_RING_REFRESH_S = 1.0
DEFAULT_WRITE_RETRIES = 3
ENTRIES_PER_ROUND_TRIP = 25
"""Key batches sent in one round trip by ``distribute`` (250,000 keys), as in Rust."""


def check_name(what: str, name: str) -> str:
    """Cluster names and prefixes: 1 to 64 letters, digits, ``- _ .`` (as the services)."""
    if not name or len(name) > 64:
        raise ConfigError(f"{what} must be 1 to 64 characters, got {name!r}")
    for c in name:
        if not (c.isascii() and (c.isalnum() or c in "-_.")):
            raise ConfigError(f"{what} {name!r} contains {c!r}; use letters, digits, - _ .")
    return name


class Layout:
    """Key names of one cluster: ``<prefix>:{<cluster>}:<name>``."""

    def __init__(self, prefix: str, cluster: str) -> None:
        self.base = f"{prefix}:{{{cluster}}}"
        self.log = f"{self.base}:log"
        self.events = f"{self.base}:events"
        self.dead_letters = f"{self.base}:events:dead"
        self.rejected = f"{self.base}:rejected"
        self.nodes = f"{self.base}:nodes"
        self.ring = f"{self.base}:ring"
        self.keymap = f"{self.base}:keymap"
        self.unowned = f"{self.base}:unowned"
        self.checkpoint = f"{self.base}:checkpoint"
        self.loads = f"{self.base}:loads"
        self.node_loads = f"{self.base}:node_loads"

    def node_keys(self, node: str) -> str:
        return f"{self.base}:node:{node}:keys"

    def node_feed(self, node: str) -> str:
        return f"{self.base}:node:{node}:feed"


def plan_field(key: str) -> str:
    """The field of ``key``'s load plan in the ``loads`` hash (``p:<key>``)."""
    return f"p:{key}"


def entry_key(entry_id: str) -> tuple[int, int]:
    """A stream entry id ``<ms>-<seq>`` as a pair that orders like the stream."""
    ms, sep, seq = entry_id.partition("-")
    if not sep or not (ms.isascii() and ms.isdigit() and seq.isascii() and seq.isdigit()):
        raise ValueError(f"{entry_id!r} is not a stream entry id (expected <ms>-<seq>)")
    return int(ms), int(seq)


def text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


@dataclass(frozen=True)
class RawEntry:
    id: str
    fields: list[tuple[bytes, bytes]]


def parse_entries(reply: Any) -> list[RawEntry]:
    """``[[id, [k, v, ...]], ...]``; a deleted entry comes back with no fields."""
    out = []
    for item in reply or []:
        entry_id, flat = item[0], item[1] or []
        pairs = [(bytes(flat[i]), bytes(flat[i + 1])) for i in range(0, len(flat) - 1, 2)]
        out.append(RawEntry(text(entry_id), pairs))
    return out


def parse_read(reply: Any) -> list[RawEntry]:
    """An ``XREADGROUP`` reply for one stream (``None`` when nothing came)."""
    if not reply:
        return []
    if isinstance(reply, dict):  # RESP3
        return [e for v in reply.values() for e in parse_entries(v)]
    return [e for stream in reply for e in parse_entries(stream[1])]


def parse_autoclaim(reply: Any) -> tuple[str, list[RawEntry]]:
    return text(reply[0]), parse_entries(reply[1])


def pending_count(reply: Any) -> int | None:
    """The delivery counter in an ``XPENDING stream group id id 1`` reply."""
    if not reply:
        return None
    return int(reply[0][3])


def decode_map(flat: Any) -> dict[str, str]:
    if isinstance(flat, dict):
        return {text(k): text(v) for k, v in flat.items()}
    return {text(flat[i]): text(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}


_RECORD_DEFAULTS = {
    "held": False,
    "penalty": 0,
    "penalty_at": 0,
    "damped": False,
    "token": 0,
    "handoff": False,
    "handing": 0,
    "load": None,
}
_RECORD_FIELDS = (
    "node",
    "state",
    "health",
    "draining",
    "url",
    "epoch",
    "weight",
    "fails",
    "successes",
    "last",
    "since",
    "since_ms",
    "held",
    "penalty",
    "penalty_at",
    "damped",
    "token",
    "handoff",
    "handing",
    "load",
)


def node_record(raw: str) -> dict[str, Any]:
    """A node's JSON record with the fields (and defaults) of Rust's ``NodeRecord``."""
    try:
        stored = json.loads(raw)
    except ValueError as e:
        raise PantheonError(f"a node record does not parse: {e}") from None
    record: dict[str, Any] = {}
    for name in _RECORD_FIELDS:
        if name in stored:
            record[name] = stored[name]
        elif name in _RECORD_DEFAULTS:
            record[name] = _RECORD_DEFAULTS[name]
        else:
            raise PantheonError(f"node record {stored.get('node')!r} has no field {name!r}")
    return record


def parse_replicas(layout: Layout, key: str, raw: str | None) -> list[str]:
    """The read replicas in a ``p:<key>`` value of the ``loads`` hash, ``{"to": node|null,
    "replicas": [node, ...]}`` (none when the field is absent), checked as Rust's
    ``parse_replicas`` checks them; a damaged value names the hash and the field."""
    if raw is None:
        return []

    def damaged(reason: str) -> PantheonError:
        return PantheonError(f"read model {layout.loads} is damaged: {plan_field(key)}: {reason}")

    try:
        plan = json.loads(raw)
    except ValueError as e:
        raise damaged(str(e)) from None
    if not isinstance(plan, dict):
        raise damaged(f"expected a JSON object, got {raw[:64]!r}")
    to, replicas = plan.get("to"), plan.get("replicas")
    if to is not None and not isinstance(to, str):
        raise damaged(f'"to" must be a node id or null, got {to!r}')
    if not isinstance(replicas, list):
        what = "missing" if "replicas" not in plan else f"not a list: {replicas!r}"
        raise damaged(f'"replicas" is {what}')
    for node in replicas:
        if not isinstance(node, str):
            raise damaged(f"replica {node!r} is not a node id")
        try:
            check_node(node)
        except InvalidInput as e:
            reason = e.reason.removeprefix("bad node id: ")
            raise damaged(f"replica {debug(node)}: {reason}") from None
    return list(replicas)


def parse_members(raw: str) -> list[tuple[str, int]]:
    """The ring's ``members`` field: ``id=weight id=weight ...``."""
    out = []
    for part in raw.split():
        node, sep, weight = part.rpartition("=")
        if not sep or not weight.isdigit():
            raise PantheonError(f"the ring definition has a bad member {part!r}")
        out.append((node, int(weight)))
    return out


def parse_tokens(raw: str) -> dict[str, int]:
    """The ring's ``tokens`` field: ``id=token id=token ...`` (each owner's token: members,
    and nodes still handing keys off)."""
    out = {}
    for part in raw.split():
        node, sep, token = part.rpartition("=")
        if not sep or not token.isdigit():
            raise PantheonError(f"the ring definition has a bad token {part!r}")
        out[node] = int(token)
    return out


def ring_shares(members: Iterable[tuple[str, int]]) -> dict[str, float]:
    members = list(members)
    total = sum(w for _, w in members)
    return {n: (w / total if total else 0.0) for n, w in members}


def node_load(layout: Layout, node: str, raw: str | None) -> int | None:
    """A node's load (thousandths) as the ``node_loads`` hash holds it; ``None``: no report.
    Node loads live apart from the node records (docs/adr/0018)."""
    if raw is None:
        return None
    if not raw.isdigit():
        raise PantheonError(f"{layout.node_loads}: node {node}: bad load {raw!r}")
    return int(raw)


def node_with_load(layout: Layout, node: str, raw: str, load: str | None) -> dict[str, Any]:
    """A node's record with its load from ``node_loads`` filled in."""
    record = node_record(raw)
    record["load"] = node_load(layout, node, load)
    return record


def node_statuses(
    layout: Layout,
    records: dict[str, str],
    counts: list[int],
    ring: dict[str, str],
    loads: dict[str, str],
) -> list[dict[str, Any]]:
    """``nodes --json``'s nodes: each record (with its load), then ``keys`` and
    ``ring_share``."""
    shares = ring_shares(parse_members(ring.get("members", "")))
    out = []
    for (node, raw), keys in zip(sorted(records.items()), counts):
        status = node_with_load(layout, node, raw, loads.get(node))
        status["keys"] = keys
        status["ring_share"] = shares.get(node, 0.0)
        out.append(status)
    return out


RAW_REPLY_COMMANDS = (
    "XREADGROUP",
    "XREAD",
    "XAUTOCLAIM",
    "XPENDING",
    "XRANGE",
    "XREVRANGE",
    "XACK",
    "XADD",
)


def raw_replies(client: Any) -> None:
    """The client with redis-py's reply parsing off for the stream commands: the parsers here
    read the replies as Redis sends them, as the Rust client does."""
    for name in RAW_REPLY_COMMANDS:
        client.response_callbacks.pop(name, None)


def command(client: Any, *args: Any) -> Any:
    """``client.execute_command(*args)`` (redis-py leaves it untyped): a reply, or an
    awaitable of one on an asyncio client; on a pipeline it queues the command."""
    return client.execute_command(*args)


def is_retryable(e: Exception) -> bool:
    """A failure another master (after a failover) or a new connection may not have."""
    import redis

    if isinstance(e, (redis.ConnectionError, redis.TimeoutError)):
        return True
    if isinstance(e, redis.ResponseError):
        message = str(e)
        return message.startswith(("MOVED", "READONLY", "LOADING", "TRYAGAIN", "MASTERDOWN"))
    return False
