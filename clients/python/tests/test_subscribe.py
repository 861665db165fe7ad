"""Subscriptions against a real Redis: only what the caller acks is acked, a consumer's
unacked events come back on its next start, stuck events are claimed by another consumer,
events delivered too often go to the dead-letter stream, and events of a real projector
arrive."""

from __future__ import annotations

from typing import Any, Callable

import redis
from conftest import Cli, HealthNode

from pantheon_client import Event, Pantheon, SubscribeOptions
from pantheon_client.subscribe import Subscription


def add_events(url: str, cluster: str, count: int) -> list[str]:
    """Events as the projector writes them (any fields: the client passes them through)."""
    r = redis.Redis.from_url(url)
    ids = [
        r.xadd(f"pantheon:{{{cluster}}}:events", {"type": "died", "node": f"n{i}", "epoch": "1"})
        for i in range(count)
    ]
    r.close()
    return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]


def drain(sub: Subscription, timeout_s: float = 0.5) -> list[Event]:
    out = []
    while (event := sub.next(timeout_s=timeout_s)) is not None:
        out.append(event)
    return out


QUICK = SubscribeOptions(start="beginning", min_idle_s=0.2, max_deliveries=3, block_s=0.1)


def test_only_acked_events_are_gone_and_the_rest_come_back(redis_url: str, cluster: str) -> None:
    ids = add_events(redis_url, cluster, 10)
    slow = SubscribeOptions(start="beginning", min_idle_s=60, block_s=0.1)
    with Pantheon.connect(redis_url, cluster) as p:
        sub = p.subscribe("g", "c1", slow)
        got = drain(sub)
        assert [e.id for e in got] == ids
        assert [(e.type, e.node, e.deliveries) for e in got[:2]] == [
            ("died", "n0", 1),
            ("died", "n1", 1),
        ]
        assert got[0].fields == {"type": "died", "node": "n0", "epoch": "1"}
        for e in got[:4]:
            assert e.ack() is True
        assert got[0].ack() is False
        # The same consumer, restarted, gets exactly the six it did not ack, first.
        again = drain(p.subscribe("g", "c1", slow))
        assert [e.id for e in again] == ids[4:]
        assert all(e.deliveries == 2 for e in again)


def test_stuck_events_are_claimed_then_dead_lettered(redis_url: str, cluster: str) -> None:
    ids = add_events(redis_url, cluster, 3)
    with Pantheon.connect(redis_url, cluster) as p:
        patient = SubscribeOptions(start="beginning", min_idle_s=60, block_s=0.1)
        crashed = p.subscribe("g", "crashed", patient)
        assert [e.id for e in drain(crashed, 0.3)] == ids  # delivered, never acked
        live = p.subscribe("g", "live", QUICK)
        claimed = [live.next(timeout_s=2) for _ in ids]
        assert [(e.id, e.deliveries) for e in claimed if e] == [(i, 2) for i in ids]
        assert claimed[0] is not None and claimed[0].ack()
        # The other two keep coming back without an ack until max_deliveries (3) is passed.
        again = drain(live, 1.5)
        assert [(e.id, e.deliveries) for e in again] == [(i, 3) for i in ids[1:]]
        r: Any = redis.Redis.from_url(redis_url)
        dead = r.xrange(f"pantheon:{{{cluster}}}:events:dead")
        pending = r.xpending(f"pantheon:{{{cluster}}}:events", "g")
        r.close()
        assert [f[b"original_id"].decode() for _, f in dead] == ids[1:]
        assert all(f[b"group"] == b"g" and f[b"deliveries"] == b"4" for _, f in dead)
        assert dead[0][1][b"type"] == b"died" and dead[0][1][b"node"] == b"n1"
        assert pending["pending"] == 0


def test_a_new_group_starts_now_by_default(redis_url: str, cluster: str) -> None:
    add_events(redis_url, cluster, 2)
    with Pantheon.connect(redis_url, cluster) as p:
        sub = p.subscribe("fresh", "c", SubscribeOptions(block_s=0.1))
        assert drain(sub, 0.3) == []
        later = add_events(redis_url, cluster, 1)
        assert [e.id for e in drain(sub, 0.3)] == later


def test_events_of_a_real_projector_arrive(
    up: Cli, redis_url: str, http_nodes: Callable[[], HealthNode]
) -> None:
    node = http_nodes()
    with Pantheon.connect(redis_url, up.cluster) as p:
        sub = p.subscribe("alerts", "w1", SubscribeOptions(block_s=0.2))
        joined = p.join("web-1", node.url)
        seen: list[Event] = []
        for _ in range(100):
            event = sub.next(timeout_s=0.2)
            if event is not None:
                seen.append(event)
                event.ack()
            if any(e.type == "ready" for e in seen):
                break
        kinds = [(e.type, e.node) for e in seen]
        assert ("joined", "web-1") in kinds and ("ready", "web-1") in kinds, kinds
        assert next(e for e in seen if e.type == "joined").fields["cause"] == joined


def test_bad_options_are_refused(redis_url: str, cluster: str) -> None:
    import pytest

    from pantheon_client import ConfigError

    with Pantheon.connect(redis_url, cluster) as p:
        for bad in [
            SubscribeOptions(max_deliveries=0),
            SubscribeOptions(block_s=0),
            SubscribeOptions(count=0),
            SubscribeOptions(start="yesterday"),
        ]:
            with pytest.raises(ConfigError):
                p.subscribe("g", "c", bad)
