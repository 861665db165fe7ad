"""Ownership tokens and the per-node feed from Python, against a real Redis, a real
``pantheon up`` and real HTTP nodes: the same snapshot and tokens as the Rust CLI, lines that
fold to ``node_keys``, a resume that misses and repeats nothing, and the asyncio twin."""

from __future__ import annotations

import asyncio
from typing import Callable

from conftest import Cli, HealthNode, wait_until

from pantheon_client import Pantheon, WatchLine
from pantheon_client.aio import Pantheon as AsyncPantheon


def fold(keys: set[str], line: WatchLine) -> set[str]:
    if line.op == "snapshot":
        return set(line.keys)
    if line.op == "acquire":
        return keys | set(line.keys)
    return keys - set(line.keys)


def alive(p: Pantheon, *nodes: str) -> bool:
    states = {n["node"]: n["state"] for n in p.nodes()}
    return all(states.get(n) == "alive" for n in nodes)


def test_the_feed_folds_to_node_keys_with_the_tokens_of_the_cli(
    up: Cli, redis_url: str, http_nodes: Callable[[], HealthNode]
) -> None:
    a, b = http_nodes(), http_nodes()
    with Pantheon.connect(redis_url, up.cluster, ring_refresh_s=0) as p:
        p.wait_applied(p.join("a", a.url), 10)
        p.wait_applied(p.join("b", b.url), 10)
        wait_until("both alive", lambda: alive(p, "a", "b"))
        p.wait_applied(p.distribute([f"k{i}" for i in range(200)])[-1], 10)

        watch = p.watch("a")
        first = watch.next(timeout_s=5)
        assert first is not None and first.op == "snapshot"
        assert set(first.keys) == p.node_keys("a")
        rust = up.json("watch", "a", "--lines", "1")
        assert (rust["op"], rust["keys"], rust["token"]) == ("snapshot", first.keys, first.token)
        key = first.keys[0]
        located = p.locate_with_token(key)
        assert located == ("a", first.token)
        assert up.json("locate", key)["token"] == first.token

        # b dies: a takes its keys over, named as coming from b, with a larger token.
        b_keys = p.node_keys("b")
        b.stop()
        wait_until("b's keys moved to a", lambda: p.node_keys("a") == b_keys | set(first.keys))
        owned = set(first.keys)
        lines = []
        while (line := watch.next(timeout_s=1)) is not None:
            lines.append(line)
            owned = fold(owned, line)
        assert owned == p.node_keys("a")
        moved = [line for line in lines if line.op == "acquire"]
        assert moved and all(line.peer == "b" for line in moved)
        # Keys with common prefixes are stored front-coded (`pkeys`), and read back whole.
        import redis

        raw = redis.Redis.from_url(redis_url)
        feed = f"pantheon:{{{up.cluster}}}:node:a:feed"
        found = raw.xrange(feed, lines[0].id, lines[0].id)
        assert found is not None
        stored = found[0][1]
        assert stored is not None and b"pkeys" in stored and b"keys" not in stored
        assert all(line.token > first.token for line in moved)
        b_key = sorted(b_keys)[0]
        after = p.locate_with_token(b_key)
        assert after is not None and after[0] == "a" and (after[1] or 0) > first.token

        # Resuming after the snapshot gives exactly the lines after it.
        resumed = p.watch("a", from_id=first.id)
        again = []
        while (line := resumed.next(timeout_s=1)) is not None:
            again.append(line)
        assert again == lines
        # A position the feed does not hold starts again from a snapshot.
        gone = p.watch("a", from_id="1-0").next(timeout_s=5)
        assert gone is not None and gone.op == "snapshot" and set(gone.keys) == owned


def test_the_asyncio_watch_reads_the_same_lines(
    up: Cli, redis_url: str, http_nodes: Callable[[], HealthNode]
) -> None:
    a = http_nodes()

    async def run() -> None:
        p = await AsyncPantheon.connect(redis_url, up.cluster)
        try:
            await p.wait_applied(await p.join("a", a.url), 10)
            watch = await p.watch("a")
            first = await watch.next(timeout_s=5)
            assert first is not None and first.op == "snapshot"
            while not alive_now(await p.nodes()):
                await asyncio.sleep(0.02)
            await p.wait_applied((await p.distribute(["x", "y"]))[-1], 10)
            line = await watch.next(timeout_s=5)
            assert line is not None and line.op == "acquire"
            assert sorted(line.keys) == ["x", "y"] and line.peer is None
            assert await p.locate_with_token("x") == ("a", line.token)
        finally:
            await p.close()

    def alive_now(nodes: list[dict[str, object]]) -> bool:
        return any(n["node"] == "a" and n["state"] == "alive" for n in nodes)

    asyncio.run(run())


def test_hand_off_lines_read_as_the_cli_reads_them(
    up: Cli, redis_url: str, http_nodes: Callable[[], HealthNode]
) -> None:
    """A node joined with ``handoff`` is asked to release the keys a drain gives away (a
    ``handoff`` line: still its keys), and once it releases them the new owner's ``acquire``
    says ``state``: the same lines as ``pantheon watch --json``."""
    import json

    import redis

    a, b = http_nodes(), http_nodes()
    log = f"pantheon:{{{up.cluster}}}:log"
    raw = redis.Redis.from_url(redis_url)

    def xadd(*fields: tuple[str, str]) -> str:
        flat = [x for kv in fields for x in kv]
        added = raw.execute_command("XADD", log, "*", *flat)  # type: ignore[no-untyped-call]
        return str(added.decode())

    with Pantheon.connect(redis_url, up.cluster, ring_refresh_s=0) as p:
        p.wait_applied(xadd(("type", "join"), ("node", "a"), ("url", a.url), ("handoff", "1")), 10)
        p.wait_applied(p.join("b", b.url), 10)
        wait_until("both alive", lambda: alive(p, "a", "b"))
        p.wait_applied(p.distribute([f"k{i}" for i in range(100)])[-1], 10)
        mine = p.node_keys("a")
        assert mine

        watch_a, watch_b = p.watch("a"), p.watch("b")
        start_a, start_b = watch_a.next(timeout_s=5), watch_b.next(timeout_s=5)
        assert start_a is not None and start_b is not None
        p.wait_applied(xadd(("type", "drain"), ("node", "a")), 10)
        asked = watch_a.next(timeout_s=5)
        assert asked is not None and asked.op == "handoff" and asked.peer == "b"
        assert set(asked.keys) == mine
        assert p.node_keys("a") == mine, "still a's until it releases them"

        p.wait_applied(
            xadd(("type", "released"), ("node", "a"), *[("key", k) for k in sorted(mine)]), 10
        )
        assert p.node_keys("a") == set()
        gone = watch_a.next(timeout_s=5)
        assert gone is not None and gone.op == "release" and gone.peer == "b"
        assert gone.token > asked.token
        took = watch_b.next(timeout_s=5)
        assert took is not None and took.op == "acquire" and took.peer == "a" and took.state
        assert set(took.keys) == mine and took.token == gone.token

        def cli_lines(node: str, after: str, n: int) -> list[dict[str, object]]:
            out = up.run("watch", node, "--from", after, "--json", "--lines", str(n)).stdout
            return [json.loads(line) for line in out.splitlines()]

        for line, rust in zip([asked, gone], cli_lines("a", start_a.id, 2), strict=True):
            assert (
                rust["id"],
                rust["op"],
                rust["keys"],
                rust["token"],
                rust["peer"],
                rust["state"],
            ) == (line.id, line.op, line.keys, line.token, line.peer, line.state)
        [rust] = cli_lines("b", start_b.id, 1)
        assert (rust["op"], rust["keys"], rust["state"]) == ("acquire", took.keys, True)
