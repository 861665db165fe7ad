"""Load-aware placement (docs/adr/0018) in the Python client: ``format_load``/``parse_load``
against Rust's, ``report_key_loads`` writing Rust's ``key_loads`` entry, ``replicas`` reading
the ``loads`` hash, and node loads, all end to end against a real ``pantheon up``, real HTTP
nodes that send ``X-Pantheon-Load``, and the real CLI."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Callable

import pytest
import redis
from conftest import Cli, HealthNode, wait_until

from pantheon_client import (
    MAX_KEY_LOADS,
    InvalidInput,
    Pantheon,
    PantheonError,
    format_load,
    parse_load,
)
from pantheon_client.aio import Pantheon as AsyncPantheon
from pantheon_client.common import raw_replies

# -- format_load / parse_load -------------------------------------------------------------

# Copied from the Rust unit test `loads_parse_as_thousandths_and_refuse_garbage`
# (shared/domain/src/load.rs): text → thousandths, or the refusal (LoadError variant).
RUST_PARSE_CASES: list[tuple[str, int | str]] = [
    ("12.5", 12_500),
    (" 0 ", 0),
    ("1e3", 1_000_000),
    ("0.0004", 0),
    ("fast", "not a number"),  # LoadError::NotANumber
    ("-1", "negative"),  # LoadError::Negative
    ("NaN", "not finite"),  # LoadError::NotFinite
    ("inf", "not finite"),  # LoadError::NotFinite
    ("2e12", "above the limit of 1e12"),  # LoadError::TooLarge
    ("", "not a number"),  # LoadError::NotANumber
]
# From `loads_format_back_to_what_parses` (shared/domain/src/load.rs).
RUST_ROUND_TRIPS = [0, 1, 10, 999, 1000, 12_500, 123_456_789]
RUST_FORMATS = [(12_500, "12.5"), (3_000, "3")]

# Further cases where Python's `float`/`round`/`strip` differ from Rust's `str::parse::<f64>`,
# `f64::round` and `str::trim`. Each answer is what Rust's `parse_load` gave when its body was
# compiled on its own with rustc and run on these inputs.
RUST_EDGE_CASES: list[tuple[str, int | str]] = [
    ("+5", 5_000),
    (".5", 500),
    ("5.", 5_000),
    ("1.e5", 100_000_000),
    ("+.5e-3", 1),
    ("1E3", 1_000_000),
    ("1e+3", 1_000_000),
    ("00012.5000", 12_500),
    ("-0", 0),
    ("-0.0", 0),
    # Halves round away from zero (Python's `round` would give 2, 0, 2).
    ("0.0025", 3),
    ("0.0005", 1),
    ("0.0015", 2),
    ("1.0045", 1_005),
    ("2.5e-4", 0),
    ("1e-400", 0),
    ("1e12", 1_000_000_000_000_000),
    ("999999999999.9999", 1_000_000_000_000_000),
    # Rust's `trim` strips Unicode White_Space, not U+001C..U+001F as Python's `strip` does.
    ("\u00a07\u3000", 7_000),
    ("\u20097\u2028", 7_000),
    ("\t\n 8 \r\x0b\x0c", 8_000),
    ("\x1c7", "not a number"),
    ("7\x1f", "not a number"),
    # Python's `float` takes `_` separators and non-ASCII digits; Rust does not.
    ("1_000", "not a number"),
    ("\u0661", "not a number"),
    ("\uff11", "not a number"),
    (".", "not a number"),
    ("1e", "not a number"),
    ("e5", "not a number"),
    ("+", "not a number"),
    ("0x10", "not a number"),
    ("1,5", "not a number"),
    ("1 2", "not a number"),
    ("infinit", "not a number"),
    ("nan(1)", "not a number"),
    ("\u22121", "not a number"),
    ("-inf", "not finite"),
    ("-nan", "not finite"),
    ("Infinity", "not finite"),
    ("iNf", "not finite"),
    ("1e99999", "not finite"),
    ("1000000000000.0001", "above the limit of 1e12"),
    ("1e308", "above the limit of 1e12"),
]


@pytest.mark.parametrize(("text", "want"), RUST_PARSE_CASES + RUST_EDGE_CASES)
def test_parse_load_answers_as_rust(text: str, want: int | str) -> None:
    if isinstance(want, int):
        assert parse_load(text) == want
    else:
        with pytest.raises(InvalidInput, match=want) as e:
            parse_load(text)
        assert isinstance(e.value, PantheonError) and isinstance(e.value, ValueError)


def test_parse_load_messages_are_rusts() -> None:
    with pytest.raises(InvalidInput) as e:
        parse_load(" fast ")
    assert e.value.reason == 'load "fast" is not a number'
    with pytest.raises(InvalidInput) as e:
        parse_load("-1")
    assert e.value.reason == 'load "-1" is negative'
    with pytest.raises(InvalidInput) as e:
        parse_load("9" * 100)
    assert e.value.reason == f'load "{"9" * 64}…" is above the limit of 1e12'


def test_format_load_answers_as_rust() -> None:
    for milli in RUST_ROUND_TRIPS:
        assert parse_load(format_load(milli)) == milli, milli
    for milli, text in RUST_FORMATS:
        assert format_load(milli) == text
    assert format_load(1_001) == "1.001"
    assert format_load(1_010) == "1.01"
    assert format_load(2**64 - 1) == "18446744073709551.615"
    for bad in [-1, 2**64]:
        with pytest.raises(InvalidInput, match="outside"):
            format_load(bad)
    for wrong in [1.5, True, "1"]:
        with pytest.raises(InvalidInput, match="must be an int"):
            format_load(wrong)  # type: ignore[arg-type]


# -- report_key_loads ---------------------------------------------------------------------


def log_entries(url: str, cluster: str) -> list[list[tuple[bytes, bytes]]]:
    r: Any = redis.Redis.from_url(url)
    raw_replies(r)
    reply: Any = r.execute_command("XRANGE", f"pantheon:{{{cluster}}}:log", "-", "+")
    r.close()
    return [[(f[i], f[i + 1]) for i in range(0, len(f), 2)] for _, f in reply]


def test_report_key_loads_writes_rusts_entry(redis_url: str, cluster: str) -> None:
    # 70 keys: sorted heaviest first, ties by key (as bytes), the 64 heaviest kept.
    keys = [(f"k{i:02d}", (i % 7) * 1_000 + 1) for i in range(70)]
    keys.append(("é", 6_001))
    keys.append(("z", 6_001))
    keys.append(("a", 12_500))
    want = sorted(keys, key=lambda kl: (-kl[1], kl[0].encode()))[:MAX_KEY_LOADS]
    with Pantheon.connect(redis_url, cluster) as p:
        entry_id = p.report_key_loads("n-1", keys)
        assert p.report_key_loads("n-2", []) != entry_id

        async def aio() -> None:
            async with await AsyncPantheon.connect(redis_url, cluster) as a:
                await a.report_key_loads("n-1", keys)

        asyncio.run(aio())
        first, empty, again = log_entries(redis_url, cluster)
        assert first[0:2] == [(b"v", b"1"), (b"type", b"key_loads")]
        assert first[2][0] == b"cmd" and first[2][1].startswith(b"py-")
        assert first[3] == (b"node", b"n-1")
        pairs = first[4:]
        assert len(pairs) == 2 * MAX_KEY_LOADS
        assert pairs[0::2] == [(b"key", k.encode()) for k, _ in want]
        assert pairs[1::2] == [(b"load", format_load(v).encode()) for _, v in want]
        assert pairs[:2] == [(b"key", b"a"), (b"load", b"12.5")]
        # Ties by key as Rust's `String` orders them (bytes): "z" (7a) before "é" (c3 a9).
        assert pairs.index((b"key", b"z")) < pairs.index((b"key", "é".encode()))
        assert [f for f in empty if f[0] != b"cmd"] == [
            (b"v", b"1"),
            (b"type", b"key_loads"),
            (b"node", b"n-2"),
        ]
        # The asyncio client writes the same entry.
        assert [f for f in again if f[0] != b"cmd"] == [f for f in first if f[0] != b"cmd"]


@pytest.mark.parametrize(
    ("node", "keys", "reason"),
    [
        ("", [("k", 1)], "bad node id: node id is empty"),
        ("a b", [("k", 1)], "bad node id: node id contains ' '"),
        ("n", [("", 1)], "key is empty"),
        ("n", [("x" * 1025, 1)], 'field "key" is 1025 bytes, longer than the limit of 1024'),
        ("n", [("k", 10**15 + 1)], 'load "1000000000000.001" is above the limit of 1e12'),
        ("n", [("k", -1)], "outside"),
        ("n", [("k", 1.5)], "must be an int"),
        ("n", [(1, 1)], "a key must be a str, got int"),
    ],
)
def test_report_key_loads_refuses_what_the_decoder_refuses(
    redis_url: str, cluster: str, node: str, keys: Any, reason: str
) -> None:
    with Pantheon.connect(redis_url, cluster) as p:
        with pytest.raises(InvalidInput) as e:
            p.report_key_loads(node, keys)
        assert reason in e.value.reason
        # The largest load the decoder takes goes through; a bad key past the 64 heaviest is
        # dropped before it is checked, as in Rust.
        heavy = [(f"k{i}", 10**6) for i in range(64)]
        p.report_key_loads("n", [("k", 10**15), *heavy, ("", 1)])
    assert len(log_entries(redis_url, cluster)) == 1


# -- replicas -----------------------------------------------------------------------------


def test_replicas_reads_the_plan_and_names_a_damaged_value(redis_url: str, cluster: str) -> None:
    r: Any = redis.Redis.from_url(redis_url, decode_responses=True)
    loads = f"pantheon:{{{cluster}}}:loads"
    r.hset(loads, "p:hot", json.dumps({"to": None, "replicas": ["b", "c"]}))
    r.hset(loads, "p:moved", json.dumps({"to": "d", "replicas": []}))
    r.hset(loads, "p:bad", "{not json")
    r.hset(loads, "p:shape", json.dumps({"to": None}))
    r.hset(loads, "p:node", json.dumps({"to": None, "replicas": ["a b"]}))
    damaged = [
        ("bad", "p:bad: Expecting property name"),
        ("shape", 'p:shape: "replicas" is missing'),
        ("node", "p:node: replica \"a b\": node id contains ' '"),
    ]
    with Pantheon.connect(redis_url, cluster) as p:
        assert p.layout.loads == loads
        assert p.replicas("hot") == ["b", "c"]
        assert p.replicas("moved") == []
        assert p.replicas("cold") == []
        for key, reason in damaged:
            with pytest.raises(PantheonError) as e:
                p.replicas(key)
            assert str(e.value).startswith(f"read model {loads} is damaged: {reason}"), e.value

    async def aio() -> None:
        async with await AsyncPantheon.connect(redis_url, cluster) as a:
            assert await a.replicas("hot") == ["b", "c"]
            assert await a.replicas("cold") == []
            for key, reason in damaged:
                with pytest.raises(PantheonError, match=f"is damaged: {reason[:6]}"):
                    await a.replicas(key)

    asyncio.run(aio())
    r.close()


def test_node_loads_are_read_apart_from_the_records_and_a_damaged_one_is_named(
    redis_url: str, cluster: str
) -> None:
    r: Any = redis.Redis.from_url(redis_url, decode_responses=True)
    base = f"pantheon:{{{cluster}}}"
    record = {"node": "a", "state": "alive", "health": "healthy", "draining": False}
    record |= {"url": "http://127.0.0.1:9/a", "epoch": 1, "weight": 1, "fails": 0}
    record |= {"successes": 0, "last": "joined", "since": "1-0", "since_ms": 1}
    # A record written before loads lived apart still carries one: the hash wins.
    r.hset(f"{base}:nodes", "a", json.dumps(record | {"load": 5}))
    r.hset(f"{base}:nodes", "b", json.dumps(record | {"node": "b"}))
    r.hset(f"{base}:node_loads", "a", "12500")
    with Pantheon.connect(redis_url, cluster) as p:
        assert p.layout.node_loads == f"{base}:node_loads"
        assert [(n["node"], n["load"]) for n in p.nodes()] == [("a", 12_500), ("b", None)]
        a = p.node_health("a")
        assert a is not None and a["load"] == 12_500
        r.hset(f"{base}:node_loads", "b", "lots")
        with pytest.raises(PantheonError, match="node_loads: node b: bad load 'lots'"):
            p.nodes()
        with pytest.raises(PantheonError, match="bad load 'lots'"):
            p.node_health("b")

    async def aio() -> None:
        async with await AsyncPantheon.connect(redis_url, cluster) as a:
            health = await a.node_health("a")
            assert health is not None and health["load"] == 12_500
            with pytest.raises(PantheonError, match="bad load 'lots'"):
                await a.nodes()

    asyncio.run(aio())
    r.close()


# -- end to end ---------------------------------------------------------------------------


def loads_of(p: Pantheon) -> dict[str, Any]:
    return {n["node"]: n["load"] for n in p.nodes()}


def test_hot_key_replicas_and_node_loads_agree_with_the_cli(
    up: Cli, redis_url: str, http_nodes: Callable[[], HealthNode]
) -> None:
    nodes = {f"n{i}": http_nodes() for i in range(4)}
    with Pantheon.connect(redis_url, up.cluster) as p:
        # A node that never reported a load: `load` is None (the CLI leaves the field out).
        p.wait_applied(p.join("n0", nodes["n0"].url), 10)
        record = p.node_health("n0")
        assert record is not None and record["load"] is None
        assert "load" not in up.json("nodes")["nodes"][0]
        # Load placement is off by default; a raw policy entry turns it on (README).
        r: Any = redis.Redis.from_url(redis_url, decode_responses=True)
        policy = r.xadd(p.layout.log, {"type": "policy", "load_epsilon": "10"})
        r.close()
        p.wait_applied(policy, 10)
        for name, node in nodes.items():
            node.load = "100"
            if name != "n0":
                p.wait_applied(p.join(name, node.url), 10)
        wait_until("all alive", lambda: all(n["state"] == "alive" for n in p.nodes()))
        wait_until("every load reported", lambda: set(loads_of(p).values()) == {100_000})

        p.wait_applied(p.distribute(["hot"])[-1], 10)
        owner = p.key_node("hot")
        assert owner in nodes
        # The owner's load is mostly the hot key's. (With every node at 100 and the key at
        # 400, no replica fits the band: each holder would serve 200, above 105.) Rounds run
        # at `loads` entries, which the prober writes when a load moves by more than 5%, so
        # the owner's load alternates between 1000 and 900 until a round has run.
        deadline = time.monotonic() + 20
        reports = 0
        replicas: list[str] = []
        while not replicas:
            assert time.monotonic() < deadline, f"no replicas after {reports} reports"
            nodes[owner].load = "1000" if reports % 2 == 0 else "900"
            p.wait_applied(p.report_key_loads(owner, [("hot", 300_000)]), 10)
            reports += 1
            until = time.monotonic() + 1
            while not replicas and time.monotonic() < until:
                replicas = p.replicas("hot")
                time.sleep(0.05)
        nodes[owner].load = "1000"
        wait_until(
            "the owner's load settled",
            lambda: loads_of(p) == {n: 1_000_000 if n == owner else 100_000 for n in nodes},
        )
        replicas = p.replicas("hot")
        assert replicas and owner not in replicas and set(replicas) <= set(nodes)
        assert len(set(replicas)) == len(replicas)

        rust: dict[str, Any] = up.json("locate", "hot")
        assert rust["node"] == owner
        assert p.replicas("hot") == rust["replicas"]
        cli_records = up.node_records()
        assert [(n["node"], n["load"]) for n in p.nodes()] == [
            (n["node"], n["load"]) for n in cli_records
        ]
        assert p.nodes() == cli_records
        for record in cli_records:
            health = p.node_health(record["node"])
            assert health is not None and health["load"] == record["load"]

        async def aio() -> None:
            async with await AsyncPantheon.connect(redis_url, up.cluster) as a:
                assert await a.replicas("hot") == replicas
                assert await a.nodes() == p.nodes()
                record = await a.node_health(owner)
                assert record is not None and record["load"] == 1_000_000
                await a.wait_applied(await a.report_key_loads(owner, [("hot", 300_000)]), 10)

        asyncio.run(aio())
