"""The asyncio client has the synchronous client's names and answers, against the same real
Redis, ``pantheon up`` and HTTP nodes."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable
from typing import Any, Callable

import pytest
import redis
from conftest import WAIT_S, Cli, HealthNode

from pantheon_client import Pantheon as SyncPantheon
from pantheon_client import Rejected, SubscribeOptions
from pantheon_client.aio import Pantheon


async def until(what: str, check: Callable[[], Awaitable[bool]]) -> None:
    async def poll() -> None:
        while not await check():
            await asyncio.sleep(0.02)

    try:
        await asyncio.wait_for(poll(), WAIT_S)
    except asyncio.TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def test_the_asyncio_client_has_the_same_public_names() -> None:
    def public(cls: type) -> set[str]:
        return {n for n in dir(cls) if not n.startswith("_")}

    assert public(Pantheon) == public(SyncPantheon)
    for name in public(Pantheon) - {"layout", "cluster"}:
        member = getattr(Pantheon, name)
        if callable(member) and name != "connect":
            assert inspect.iscoroutinefunction(member), name


def test_writes_reads_locate_and_events(
    up: Cli, redis_url: str, http_nodes: Callable[[], HealthNode]
) -> None:
    node = http_nodes()

    async def run() -> None:
        p = await Pantheon.connect(redis_url, up.cluster)
        async with p:
            sub = await p.subscribe("g", "c", SubscribeOptions(start="beginning", block_s=0.1))
            await p.wait_applied(await p.join("a", node.url), 10)

            async def alive() -> bool:
                record = await p.node_health("a")
                return record is not None and record["state"] == "alive"

            await until("a alive", alive)
            ids = await p.distribute([f"k{i}" for i in range(12_000)])
            assert len(ids) == 2
            await p.wait_applied(ids[-1], 10)
            assert await p.key_node("k1") == "a" == await p.locate("k1")
            assert len(await p.node_keys("a")) == 12_000
            assert await p.nodes() == up.node_records()
            with pytest.raises(Rejected, match="nobody"):
                await p.wait_applied(await p.drain("nobody"), 10)

            kinds = []
            for _ in range(50):
                event = await sub.next(timeout_s=0.2)
                if event is None:
                    break
                kinds.append((event.type, event.node))
                assert await event.ack() is True
            assert ("joined", "a") in kinds and ("ready", "a") in kinds, kinds

    asyncio.run(run())


def test_unacked_events_come_back_to_the_same_consumer(redis_url: str, cluster: str) -> None:
    r: Any = redis.Redis.from_url(redis_url)
    ids = [r.xadd(f"pantheon:{{{cluster}}}:events", {"type": "died", "node": "n"}) for _ in "ab"]
    r.close()

    async def run() -> None:
        p = await Pantheon.connect(redis_url, cluster)
        options = SubscribeOptions(start="beginning", min_idle_s=60, block_s=0.1)
        sub = await p.subscribe("g", "c", options)
        first = await sub.next(timeout_s=1)
        second = await sub.next(timeout_s=1)
        assert first is not None and second is not None
        assert await first.ack() is True
        again = await (await p.subscribe("g", "c", options)).next(timeout_s=1)
        assert again is not None and again.id == second.id == ids[1].decode()
        assert again.deliveries == 2
        await p.close()

    asyncio.run(run())


def test_wait_applied_times_out_without_a_projector(redis_url: str, cluster: str) -> None:
    async def run() -> None:
        async with await Pantheon.connect(redis_url, cluster) as p:
            with pytest.raises(TimeoutError):
                await p.wait_applied(await p.leave("a"), 0.2)

    asyncio.run(run())
