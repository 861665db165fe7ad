"""The synchronous client: :class:`Pantheon`. The asyncio one (:mod:`pantheon_client.aio`)
has the same methods, awaited."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import redis

from . import redis_url as urls
from . import wire
from .common import (
    DEFAULT_PREFIX,
    DEFAULT_RING_REFRESH_S,
    DEFAULT_WRITE_RETRIES,
    ENTRIES_PER_ROUND_TRIP,
    Layout,
    check_name,
    command,
    decode_map,
    entry_key,
    node_statuses,
    node_with_load,
    parse_replicas,
    plan_field,
    text,
)
from .connection import Master
from .errors import PantheonError, Rejected, Unavailable
from .events import SubscribeOptions
from .resolve import Tls
from .ring import RingSnapshot, parse_version, snapshot
from .subscribe import Subscription
from .watch import Watch

_FIRST_POLL_S = 0.005
_MAX_POLL_S = 0.1


class Pantheon:
    """A handle on one Pantheon cluster: writes append to its log, reads come from the read
    models the projector commits, ``locate`` computes owners locally."""

    def __init__(self, master: Master, layout: Layout, cluster: str, ring_refresh_s: float):
        self._master = master
        self.layout = layout
        self.cluster = cluster
        self._ring_refresh_s = ring_refresh_s
        self._ring: RingSnapshot | None = None
        self._ring_checked = 0.0

    @classmethod
    def connect(
        cls,
        redis_url: str,
        cluster: str,
        prefix: str = DEFAULT_PREFIX,
        *,
        ring_refresh_s: float = DEFAULT_RING_REFRESH_S,
        write_retries: int = DEFAULT_WRITE_RETRIES,
        tls: Tls | None = None,
    ) -> Pantheon:
        """Connects to cluster ``cluster`` on the Redis at ``redis_url`` (``redis://``,
        ``rediss://``, ``redis+sentinel://``, ``redis+cluster://``): finds the master that
        serves the cluster and checks that it answers."""
        check_name("cluster", cluster)
        check_name("prefix", prefix)
        url = urls.parse(redis_url)
        master = Master(url, tls or Tls(), cluster, write_retries)
        try:
            master.call(lambda r: r.ping())
        except (redis.ConnectionError, redis.TimeoutError) as e:
            # Like the Rust client: a master that cannot be reached (refused, TLS, timeout)
            # is `Unavailable`, with the URL (password masked) and the cause.
            master.close()
            raise Unavailable(f"{url}: {e}") from e
        return cls(master, Layout(prefix, cluster), cluster, ring_refresh_s)

    def close(self) -> None:
        self._master.close()

    def __enter__(self) -> Pantheon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writes ------------------------------------------------------------------------------

    def _append(self, fields: wire.Fields) -> str:
        packed = wire.pack_xadd(self.layout.log, fields)
        return self._send([packed])[0]

    def _send(self, packed: list[bytes]) -> list[str]:
        """Sends XADDs in one round trip; retried with the same command ids (a retry of an
        append that did land is applied once)."""

        def send(r: redis.Redis) -> list[str]:
            con: Any = r.connection_pool.get_connection()
            try:
                con.send_packed_command([b"".join(packed)])
                replies = [con.read_response() for _ in packed]
            except BaseException:
                con.disconnect()
                raise
            finally:
                r.connection_pool.release(con)
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
            return [text(reply) for reply in replies]

        return self._master.call(send)

    def join(
        self,
        node: str,
        url: str | None = None,
        *,
        address: str | None = None,
        port: int | None = None,
        path: str | None = None,
        weight: int | None = None,
    ) -> str:
        """Adds (or re-adds) a node by its health ``url``, or in the Go library's shape
        (``address`` with a scheme, ``port``, ``path``). Returns the log entry id."""
        return self._append(
            wire.join(node, url=url, address=address, port=port, path=path, weight=weight)
        )

    def leave(self, node: str) -> str:
        """Removes a node for good; its keys move to the remaining nodes."""
        return self._append(wire.node_command("leave", node))

    def drain(self, node: str) -> str:
        """Keeps a node but moves its keys away; :meth:`undrain` undoes it."""
        return self._append(wire.node_command("drain", node))

    def undrain(self, node: str) -> str:
        return self._append(wire.node_command("undrain", node))

    def set_weight(self, node: str, weight: int) -> str:
        """Changes a node's weight (1 to 100): its share of keys relative to the others."""
        return self._append(wire.set_weight(node, weight))

    def report_key_loads(self, node: str, keys: Iterable[tuple[str, int]]) -> str:
        """Reports ``node``'s hottest keys for load-aware placement (docs/adr/0018):
        ``(key, load)`` pairs with loads in thousandths of the cluster's unit per second (see
        :func:`format_load`). Written as Rust's ``report_key_loads`` writes it: heaviest
        first, at most 64 (the heaviest are kept). An empty list says none is hot any more.
        Returns the log entry id."""
        return self._append(wire.key_loads(node, keys))

    def distribute(self, keys: Iterable[str]) -> list[str]:
        """Assigns keys, in log entries of at most 10,000 keys (25 entries per round trip).
        Every key is checked before the first entry is sent, so a bad key writes nothing.
        Returns the entry ids in log order (wait for the last one)."""
        return self._key_batches("assign", keys)

    def unassign(self, keys: Iterable[str]) -> list[str]:
        """The opposite of :meth:`distribute`, in the same batches."""
        return self._key_batches("unassign", keys)

    def _key_batches(self, kind: str, keys: Iterable[str]) -> list[str]:
        checked = wire.check_keys(list(keys))
        packed = [wire.pack_key_batch(self.layout.log, kind, b) for b in wire.batches(checked)]
        ids: list[str] = []
        for start in range(0, len(packed), ENTRIES_PER_ROUND_TRIP):
            ids.extend(self._send(packed[start : start + ENTRIES_PER_ROUND_TRIP]))
        return ids

    # -- read your writes --------------------------------------------------------------------

    def last_applied(self) -> str | None:
        """The last log entry the projector applied (``None`` before the first)."""
        raw = self._master.call(lambda r: r.hget(self.layout.checkpoint, "last_id"))
        return (text(raw) or None) if raw is not None else None

    def rejection(self, entry_id: str) -> str | None:
        """Why the projector rejected log entry ``entry_id``, or ``None``."""
        reply = self._master.call(
            lambda r: command(r, "XRANGE", self.layout.rejected, entry_id, entry_id)
        )
        if not reply:
            return None
        fields = decode_map(reply[0][1])
        return fields.get("reason", "rejected (no reason recorded)")

    def wait_applied(self, entry_id: str, timeout_s: float = 10.0) -> str:
        """Waits until the projector applied log entry ``entry_id``; returns its checkpoint
        then. Raises :class:`Rejected` (``.reason``) when it refused the entry, and
        :class:`TimeoutError` when it was not applied within ``timeout_s``."""
        want = entry_key(entry_id)
        start = time.monotonic()
        deadline = start + timeout_s
        pause = _FIRST_POLL_S
        last: str | None = None
        while True:
            try:
                last = self.last_applied()
                if last is not None and entry_key(last) >= want:
                    reason = self.rejection(entry_id)
                    if reason is not None:
                        raise Rejected(entry_id, reason)
                    return last
            except (redis.ConnectionError, redis.TimeoutError):
                pass
            now = time.monotonic()
            if now >= deadline:
                raise TimeoutError(
                    f"entry {entry_id} was not applied within {now - start:.1f}s (the projector "
                    f"of cluster {self.cluster!r} applied up to {last or 'nothing'}; is "
                    "`pantheon up` running?)"
                )
            time.sleep(min(pause, deadline - now))
            pause = min(pause * 2, _MAX_POLL_S)

    # -- reads -------------------------------------------------------------------------------

    def key_node(self, key: str) -> str | None:
        """The committed owner of an assigned key; ``None`` when it was never assigned or
        no node can own keys now."""
        raw = self._master.call(lambda r: r.hget(self.layout.keymap, key))
        return None if raw is None else text(raw)

    def node_keys(self, node: str) -> set[str]:
        """The assigned keys a node owns now (read page by page)."""
        wire.check_node(node)
        key = self.layout.node_keys(node)
        return self._master.call(lambda r: {text(k) for k in r.sscan_iter(key, count=1000)})

    def nodes(self) -> list[dict[str, Any]]:
        """Every node that joined and has not left, sorted by id, with the fields of
        ``pantheon nodes --json``: its record, ``keys`` owned and ``ring_share``. ``load`` is
        the node's reported load in thousandths, ``None`` when it never reported one (the
        CLI's JSON leaves the field out then)."""

        def read(r: redis.Redis) -> list[dict[str, Any]]:
            records = {text(k): text(v) for k, v in r.hscan_iter(self.layout.nodes, count=1000)}
            pipe = r.pipeline(transaction=False)
            for node in sorted(records):
                pipe.scard(self.layout.node_keys(node))
            pipe.hgetall(self.layout.ring)
            pipe.hgetall(self.layout.node_loads)
            *counts, ring, loads = pipe.execute()
            return node_statuses(
                self.layout, records, [int(c) for c in counts], decode_map(ring), decode_map(loads)
            )

        return self._master.call(read)

    def node_health(self, node: str) -> dict[str, Any] | None:
        """One node's record (with ``load``, see :meth:`nodes`), or ``None`` if it never
        joined or has left."""
        wire.check_node(node)

        def read(r: redis.Redis) -> list[Any]:
            pipe = r.pipeline(transaction=False)
            pipe.hget(self.layout.nodes, node)
            pipe.hget(self.layout.node_loads, node)
            return pipe.execute()

        raw, load = self._master.call(read)
        if raw is None:
            return None
        return node_with_load(self.layout, node, text(raw), None if load is None else text(load))

    def replicas(self, key: str) -> list[str]:
        """A hot key's read replicas (docs/adr/0018): nodes that serve reads of a cached value
        of it besides its owner, in the order load placement added them; empty for a key
        without. Raises :class:`PantheonError` naming the hash and field when the stored
        value is damaged."""
        raw = self._master.call(lambda r: r.hget(self.layout.loads, plan_field(key)))
        return parse_replicas(self.layout, key, None if raw is None else text(raw))

    # -- local placement ---------------------------------------------------------------------

    def locate(self, key: str) -> str | None:
        """The owner of ``key`` computed locally from the cached ring definition: no round
        trip except a version check at most once per ``ring_refresh_s``. ``None`` when no
        node can own keys."""
        ring = self._ring
        if ring is None or time.monotonic() - self._ring_checked >= self._ring_refresh_s:
            ring = self._check_ring()
        return ring.owner(key)

    def locate_with_token(self, key: str) -> tuple[str, int | None] | None:
        """The owner of ``key`` and its ownership token, computed locally like ``locate``
        (see :meth:`RingSnapshot.owner_with_token`)."""
        return (self.ring()).owner_with_token(key)

    def ring(self) -> RingSnapshot:
        """The cached ring, checked against the stored version if the interval passed; hold
        on to it to place many keys against one version."""
        if self._ring is not None and time.monotonic() - self._ring_checked < self._ring_refresh_s:
            return self._ring
        return self._check_ring()

    def refresh_ring(self) -> RingSnapshot:
        """Checks the ring version now and reloads the ring if it changed."""
        return self._check_ring()

    def ring_version(self) -> int:
        return parse_version(self._master.call(lambda r: r.hget(self.layout.ring, "version")))

    def _check_ring(self) -> RingSnapshot:
        cached = self._ring
        if cached is not None and self.ring_version() == cached.version:
            self._ring_checked = time.monotonic()
            return cached
        ring = snapshot(self._master.call(lambda r: r.hgetall(self.layout.ring)))
        self._ring, self._ring_checked = ring, time.monotonic()
        return ring

    # -- events ------------------------------------------------------------------------------

    def subscribe(
        self, group: str, consumer: str, options: SubscribeOptions | None = None
    ) -> Subscription:
        """Joins consumer group ``group`` on the events stream as ``consumer`` (creating the
        group at ``options.start``). Re-use the consumer name after a restart to get back
        what was delivered and not acked."""
        options = options or SubscribeOptions()
        options.validate()
        if not group or not consumer:
            raise PantheonError("group and consumer names must not be empty")
        return Subscription(self._master, self.layout, group, consumer, options)

    def watch(self, node: str, from_id: str | None = None) -> Watch:
        """Follows ``node``'s ownership feed: a snapshot of the keys it owns first (unless
        ``from_id`` resumes after a line's id), then each ``acquire`` and ``release`` in
        commit order, with its token and peer. Folding the lines gives ``node_keys(node)``."""
        wire.check_node(node)
        return Watch(self._master, self.layout, node, from_id)
