"""The asyncio client: :class:`Pantheon`, with the methods of the synchronous
:class:`pantheon_client.Pantheon`, awaited."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

import redis
import redis.asyncio as aioredis

from .. import redis_url as urls
from .. import wire
from ..common import (
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
from ..errors import PantheonError, Rejected, Unavailable
from ..events import SubscribeOptions
from ..resolve import Tls
from ..ring import RingSnapshot, parse_version, snapshot
from .connection import Master
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
        self._refresh = asyncio.Lock()

    @classmethod
    async def connect(
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
            await master.call(lambda r: r.ping())
        except (redis.ConnectionError, redis.TimeoutError) as e:
            # Like the Rust client: a master that cannot be reached (refused, TLS, timeout)
            # is `Unavailable`, with the URL (password masked) and the cause.
            await master.close()
            raise Unavailable(f"{url}: {e}") from e
        return cls(master, Layout(prefix, cluster), cluster, ring_refresh_s)

    async def close(self) -> None:
        await self._master.close()

    async def __aenter__(self) -> Pantheon:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- writes ------------------------------------------------------------------------------

    async def _append(self, fields: wire.Fields) -> str:
        packed = wire.pack_xadd(self.layout.log, fields)
        return (await self._send([packed]))[0]

    async def _send(self, packed: list[bytes]) -> list[str]:
        """Sends XADDs in one round trip; retried with the same command ids (a retry of an
        append that did land is applied once)."""

        async def send(r: aioredis.Redis) -> list[str]:
            pool: Any = r.connection_pool
            con: Any = await pool.get_connection()
            try:
                await con.send_packed_command([b"".join(packed)])
                replies = [await con.read_response() for _ in packed]
            except BaseException:
                await con.disconnect()
                raise
            finally:
                await pool.release(con)
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
            return [text(reply) for reply in replies]

        return await self._master.call(send)

    async def join(
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
        return await self._append(
            wire.join(node, url=url, address=address, port=port, path=path, weight=weight)
        )

    async def leave(self, node: str) -> str:
        """Removes a node for good; its keys move to the remaining nodes."""
        return await self._append(wire.node_command("leave", node))

    async def drain(self, node: str) -> str:
        """Keeps a node but moves its keys away; :meth:`undrain` undoes it."""
        return await self._append(wire.node_command("drain", node))

    async def undrain(self, node: str) -> str:
        return await self._append(wire.node_command("undrain", node))

    async def set_weight(self, node: str, weight: int) -> str:
        """Changes a node's weight (1 to 100): its share of keys relative to the others."""
        return await self._append(wire.set_weight(node, weight))

    async def report_key_loads(self, node: str, keys: Iterable[tuple[str, int]]) -> str:
        """Reports ``node``'s hottest keys for load-aware placement (docs/adr/0018):
        ``(key, load)`` pairs with loads in thousandths of the cluster's unit per second (see
        :func:`format_load`). Written as Rust's ``report_key_loads`` writes it: heaviest
        first, at most 64 (the heaviest are kept). An empty list says none is hot any more.
        Returns the log entry id."""
        return await self._append(wire.key_loads(node, keys))

    async def distribute(self, keys: Iterable[str]) -> list[str]:
        """Assigns keys, in log entries of at most 10,000 keys (25 entries per round trip).
        Every key is checked before the first entry is sent, so a bad key writes nothing.
        Returns the entry ids in log order (wait for the last one)."""
        return await self._key_batches("assign", keys)

    async def unassign(self, keys: Iterable[str]) -> list[str]:
        """The opposite of :meth:`distribute`, in the same batches."""
        return await self._key_batches("unassign", keys)

    async def _key_batches(self, kind: str, keys: Iterable[str]) -> list[str]:
        checked = wire.check_keys(list(keys))
        packed = [wire.pack_key_batch(self.layout.log, kind, b) for b in wire.batches(checked)]
        ids: list[str] = []
        for start in range(0, len(packed), ENTRIES_PER_ROUND_TRIP):
            ids.extend(await self._send(packed[start : start + ENTRIES_PER_ROUND_TRIP]))
        return ids

    # -- read your writes --------------------------------------------------------------------

    async def last_applied(self) -> str | None:
        """The last log entry the projector applied (``None`` before the first)."""
        raw = await self._master.call(lambda r: r.hget(self.layout.checkpoint, "last_id"))
        return (text(raw) or None) if raw is not None else None

    async def rejection(self, entry_id: str) -> str | None:
        """Why the projector rejected log entry ``entry_id``, or ``None``."""
        reply = await self._master.call(
            lambda r: command(r, "XRANGE", self.layout.rejected, entry_id, entry_id)
        )
        if not reply:
            return None
        fields = decode_map(reply[0][1])
        return fields.get("reason", "rejected (no reason recorded)")

    async def wait_applied(self, entry_id: str, timeout_s: float = 10.0) -> str:
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
                last = await self.last_applied()
                if last is not None and entry_key(last) >= want:
                    reason = await self.rejection(entry_id)
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
            await asyncio.sleep(min(pause, deadline - now))
            pause = min(pause * 2, _MAX_POLL_S)

    # -- reads -------------------------------------------------------------------------------

    async def key_node(self, key: str) -> str | None:
        """The committed owner of an assigned key; ``None`` when it was never assigned or
        no node can own keys now."""
        raw = await self._master.call(lambda r: r.hget(self.layout.keymap, key))
        return None if raw is None else text(raw)

    async def node_keys(self, node: str) -> set[str]:
        """The assigned keys a node owns now (read page by page)."""
        wire.check_node(node)
        key = self.layout.node_keys(node)

        async def read(r: aioredis.Redis) -> set[str]:
            return {text(k) async for k in r.sscan_iter(key, count=1000)}

        return await self._master.call(read)

    async def nodes(self) -> list[dict[str, Any]]:
        """Every node that joined and has not left, sorted by id, with the fields of
        ``pantheon nodes --json``: its record, ``keys`` owned and ``ring_share``. ``load`` is
        the node's reported load in thousandths, ``None`` when it never reported one (the
        CLI's JSON leaves the field out then)."""

        async def read(r: aioredis.Redis) -> list[dict[str, Any]]:
            records = {
                text(k): text(v) async for k, v in r.hscan_iter(self.layout.nodes, count=1000)
            }
            pipe = r.pipeline(transaction=False)
            for node in sorted(records):
                pipe.scard(self.layout.node_keys(node))
            pipe.hgetall(self.layout.ring)
            pipe.hgetall(self.layout.node_loads)
            *counts, ring, loads = await pipe.execute()
            return node_statuses(
                self.layout, records, [int(c) for c in counts], decode_map(ring), decode_map(loads)
            )

        return await self._master.call(read)

    async def node_health(self, node: str) -> dict[str, Any] | None:
        """One node's record (with ``load``, see :meth:`nodes`), or ``None`` if it never
        joined or has left."""
        wire.check_node(node)

        async def read(r: aioredis.Redis) -> list[Any]:
            pipe = r.pipeline(transaction=False)
            pipe.hget(self.layout.nodes, node)
            pipe.hget(self.layout.node_loads, node)
            return await pipe.execute()

        raw, load = await self._master.call(read)
        if raw is None:
            return None
        return node_with_load(self.layout, node, text(raw), None if load is None else text(load))

    async def replicas(self, key: str) -> list[str]:
        """A hot key's read replicas (docs/adr/0018): nodes that serve reads of a cached value
        of it besides its owner, in the order load placement added them; empty for a key
        without. Raises :class:`PantheonError` naming the hash and field when the stored
        value is damaged."""
        raw = await self._master.call(lambda r: r.hget(self.layout.loads, plan_field(key)))
        return parse_replicas(self.layout, key, None if raw is None else text(raw))

    # -- local placement ---------------------------------------------------------------------

    async def locate(self, key: str) -> str | None:
        """The owner of ``key`` computed locally from the cached ring definition: no round
        trip except a version check at most once per ``ring_refresh_s``. ``None`` when no
        node can own keys."""
        ring = self._ring
        if ring is None or time.monotonic() - self._ring_checked >= self._ring_refresh_s:
            ring = await self._check_ring()
        return ring.owner(key)

    async def locate_with_token(self, key: str) -> tuple[str, int | None] | None:
        """The owner of ``key`` and its ownership token, computed locally like ``locate``
        (see :meth:`RingSnapshot.owner_with_token`)."""
        return (await self.ring()).owner_with_token(key)

    async def ring(self) -> RingSnapshot:
        """The cached ring, checked against the stored version if the interval passed; hold
        on to it to place many keys against one version."""
        if self._ring is not None and time.monotonic() - self._ring_checked < self._ring_refresh_s:
            return self._ring
        return await self._check_ring()

    async def refresh_ring(self) -> RingSnapshot:
        """Checks the ring version now and reloads the ring if it changed."""
        return await self._check_ring()

    async def ring_version(self) -> int:
        return parse_version(await self._master.call(lambda r: r.hget(self.layout.ring, "version")))

    async def _check_ring(self) -> RingSnapshot:
        # One refresh at a time: callers waiting meanwhile use the ring it loaded.
        checked_before = self._ring_checked
        async with self._refresh:
            cached = self._ring
            if cached is not None and self._ring_checked != checked_before:
                return cached
            if cached is not None and await self.ring_version() == cached.version:
                self._ring_checked = time.monotonic()
                return cached
            reply = await self._master.call(lambda r: r.hgetall(self.layout.ring))
            # Hashing vnodes x weight points per member: off the event loop.
            ring = await asyncio.to_thread(snapshot, reply)
            self._ring, self._ring_checked = ring, time.monotonic()
            return ring

    # -- events ------------------------------------------------------------------------------

    async def subscribe(
        self, group: str, consumer: str, options: SubscribeOptions | None = None
    ) -> Subscription:
        """Joins consumer group ``group`` on the events stream as ``consumer`` (creating the
        group at ``options.start``). Re-use the consumer name after a restart to get back
        what was delivered and not acked."""
        options = options or SubscribeOptions()
        options.validate()
        if not group or not consumer:
            raise PantheonError("group and consumer names must not be empty")
        return await Subscription.open(self._master, self.layout, group, consumer, options)

    async def watch(self, node: str, from_id: str | None = None) -> Watch:
        """Follows ``node``'s ownership feed: a snapshot of the keys it owns first (unless
        ``from_id`` resumes after a line's id), then each ``acquire`` and ``release`` in
        commit order, with its token and peer. Folding the lines gives ``node_keys(node)``."""
        wire.check_node(node)
        return Watch(self._master, self.layout, node, from_id)
