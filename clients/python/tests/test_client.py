"""The synchronous client against a real Redis, a real ``pantheon up`` and real HTTP nodes:
joins, a node becoming alive, distribute, wait_applied, rejections, reads, and ``locate`` and
``nodes()`` agreeing with the CLI."""

from __future__ import annotations

import time
from typing import Any, Callable

import pytest
from conftest import Cli, HealthNode, wait_until

from pantheon_client import Pantheon, Rejected


def state_of(p: Pantheon, node: str) -> str | None:
    record = p.node_health(node)
    return None if record is None else str(record["state"])


def test_joined_http_nodes_become_alive_and_own_the_distributed_keys(
    up: Cli, redis_url: str, http_nodes: Callable[[], HealthNode]
) -> None:
    a, b = http_nodes(), http_nodes()
    with Pantheon.connect(redis_url, up.cluster) as p:
        p.wait_applied(p.join("a", a.url), 10)
        p.wait_applied(p.join("b", address="http://127.0.0.1", port=b.port, path="health"), 10)
        wait_until("both nodes alive", lambda: {state_of(p, "a"), state_of(p, "b")} == {"alive"})

        keys = [f"user:{i}" for i in range(25_000)]
        ids = p.distribute(keys)
        assert len(ids) == 3
        p.wait_applied(ids[-1], 20)

        owned_a, owned_b = p.node_keys("a"), p.node_keys("b")
        assert owned_a | owned_b == set(keys) and not owned_a & owned_b
        assert owned_a and owned_b
        p.refresh_ring()
        for key in keys[:2000]:
            owner = p.key_node(key)
            assert owner == p.locate(key)
            assert key in (owned_a if owner == "a" else owned_b)

        # A node that stops answering dies and its keys move to the other.
        b.stop()
        wait_until("b dead", lambda: state_of(p, "b") == "dead")
        wait_until("b's keys moved", lambda: p.node_keys("a") == set(keys))
        # The cached ring answers until its refresh interval passes; a refresh sees b gone.
        p.refresh_ring()
        assert {p.locate(k) for k in keys[:1000]} == {"a"}


def test_locate_and_nodes_agree_with_the_cli(
    up: Cli, redis_url: str, http_nodes: Callable[[], HealthNode]
) -> None:
    nodes = [http_nodes() for _ in range(3)]
    with Pantheon.connect(redis_url, up.cluster, ring_refresh_s=0) as p:
        for i, node in enumerate(nodes):
            p.wait_applied(p.join(f"n{i}", node.url, weight=i + 1), 10)
        wait_until("all alive", lambda: all(n["state"] == "alive" for n in p.nodes()))
        p.wait_applied(p.distribute([f"k{i}" for i in range(300)])[-1], 10)

        assert p.nodes() == up.node_records()
        assert [n["node"] for n in p.nodes()] == ["n0", "n1", "n2"]
        # Assigned keys and keys never assigned: the CLI answers the first from the key map
        # and the second from the ring, Python from its cached ring for both.
        for key in ["k0", "k1", "k150", "never-assigned", "clé ✓", "x" * 1000]:
            rust: dict[str, Any] = up.json("locate", key)
            assert p.locate(key) == rust["node"], key
            assert p.ring().version == rust["ring_version"]


def test_wait_applied_raises_rejected_with_the_reason(up: Cli, redis_url: str) -> None:
    with Pantheon.connect(redis_url, up.cluster) as p:
        entry = p.leave("nobody")
        with pytest.raises(Rejected) as e:
            p.wait_applied(entry, 10)
        assert e.value.entry_id == entry
        assert "nobody" in e.value.reason
        assert p.rejection(entry) == e.value.reason
        # The CLI reports the same reason for the same mistake.
        rust = up.run("leave", "nobody", check=False)
        assert rust.returncode == 2 and e.value.reason in rust.stderr


def test_wait_applied_times_out_without_a_projector(redis_url: str, cluster: str) -> None:
    with Pantheon.connect(redis_url, cluster) as p:
        entry = p.join("a", "http://127.0.0.1:1/health")
        start = time.monotonic()
        with pytest.raises(TimeoutError, match="was not applied within"):
            p.wait_applied(entry, 0.3)
        assert 0.3 <= time.monotonic() - start < 2
        assert p.last_applied() is None


def test_reads_of_an_empty_cluster(redis_url: str, cluster: str) -> None:
    with Pantheon.connect(redis_url, cluster) as p:
        assert p.nodes() == []
        assert p.node_keys("a") == set()
        assert p.key_node("k") is None
        assert p.node_health("a") is None
        assert p.locate("k") is None
        assert p.ring_version() == 0


def test_a_cached_ring_is_reloaded_when_its_version_changes(
    up: Cli, redis_url: str, http_nodes: Callable[[], HealthNode]
) -> None:
    a, b = http_nodes(), http_nodes()
    with Pantheon.connect(redis_url, up.cluster, ring_refresh_s=3600) as p:
        p.wait_applied(p.join("a", a.url), 10)
        wait_until("a alive", lambda: state_of(p, "a") == "alive")
        p.refresh_ring()
        assert p.locate("k") == "a"
        p.wait_applied(p.drain("a"), 10)
        p.wait_applied(p.join("b", b.url), 10)
        wait_until("b alive", lambda: state_of(p, "b") == "alive")
        # Within the refresh interval the cached version answers; a refresh sees the drain.
        assert p.locate("k") == "a"
        assert p.refresh_ring().members == [("b", 1)]
        assert p.locate("k") == "b"
