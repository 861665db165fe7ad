"""The Python placement agrees with the Rust one on every vector of
``vectors/placement.json`` (generated and checked by tests/integration/placement_vectors.rs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pantheon_client import placement
from pantheon_client.ring import RingSnapshot

VECTORS = Path(__file__).parent / "vectors" / "placement.json"


def load() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads(VECTORS.read_text())["cases"]
    return cases


def test_the_vectors_cover_both_strategies_and_100000_keys() -> None:
    cases = load()
    assert sum(len(c["keys"]) for c in cases) == 100_000
    assert {c["strategy"] for c in cases} == {"ring", "rendezvous"}
    assert any(len({w for _, w in c["members"]}) > 1 for c in cases if c["strategy"] == "ring")
    assert any(not c["members"] for c in cases)


@pytest.mark.parametrize("case", load(), ids=lambda c: str(c["name"]))
def test_python_places_every_vector_key_like_rust(case: dict[str, Any]) -> None:
    members = [(node, weight) for node, weight in case["members"]]
    # Members in reverse order: the result must not depend on it.
    built = placement.build(case["strategy"], case["vnodes"], list(reversed(members)))
    snapshot = RingSnapshot(1, case["strategy"], case["vnodes"], members)
    wrong = [
        (key, owner, built.owner(key))
        for key, owner in case["keys"]
        if built.owner(key) != owner or snapshot.owner(key) != owner
    ]
    assert not wrong, f"{len(wrong)} of {len(case['keys'])} keys disagree, e.g. {wrong[:3]}"


def test_point_and_key_hashes_follow_the_documented_bytes() -> None:
    # docs/placement.md: point(n, i) = xxh3_64(utf8(n) ++ [0x00] ++ u32_le(i)).
    from xxhash import xxh3_64_intdigest

    assert placement.point_hash("node-1", 7) == xxh3_64_intdigest(b"node-1\x00\x07\x00\x00\x00")
    assert placement.key_hash("user:1") == xxh3_64_intdigest(b"user:1")


def test_an_unknown_strategy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown placement strategy 'maglev'"):
        placement.build("maglev", 1, [("a", 1)])
