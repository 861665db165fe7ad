"""Placement: which member owns a key, byte for byte as docs/placement.md specifies and the
Rust reference (shared/domain/src/placement/) computes it.

Both strategies sort members by node id (byte order; node ids are ASCII) and start from
``key_hash(K) = xxh3_64(utf8(K))``.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import Union

from xxhash import xxh3_64_intdigest

STRATEGIES = ("ring", "rendezvous")
"""The placement strategies a cluster can use (policy ``strategy``)."""

DEFAULT_VNODES = 2048
"""Ring points per unit of weight unless the cluster's policy says otherwise."""


def key_hash(key: str) -> int:
    """xxh3-64 (seed 0) of the key's UTF-8 bytes."""
    return xxh3_64_intdigest(key.encode())


def point_hash(node: str, i: int) -> int:
    """Hash of point ``i`` of a node: ``xxh3_64(utf8(node) ++ 0x00 ++ u32_le(i))``."""
    return xxh3_64_intdigest(node.encode() + b"\0" + i.to_bytes(4, "little"))


def _sorted_members(members: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    # Sorted by id, duplicates dropped (the first of each id kept), as the Rust builders do.
    out: list[tuple[str, int]] = []
    for node, weight in sorted(members, key=lambda m: m[0].encode()):
        if out and out[-1][0] == node:
            continue
        out.append((node, weight))
    return out


class Ring:
    """Consistent hashing with ``vnodes x weight`` points per member. A key belongs to the
    member of the first point whose hash is >= the key's hash, wrapping past the top; points
    with equal hashes are ordered by node id."""

    def __init__(self, members: Iterable[tuple[str, int]], vnodes: int) -> None:
        self.members = _sorted_members(members)
        self.vnodes = vnodes
        points: list[tuple[int, int]] = []
        for index, (node, weight) in enumerate(self.members):
            prefix = node.encode() + b"\0"
            points.extend(
                (xxh3_64_intdigest(prefix + i.to_bytes(4, "little")), index)
                for i in range(vnodes * weight)
            )
        # Members are sorted by id, so ordering ties by member index orders them by node id.
        points.sort()
        self._hashes = [h for h, _ in points]
        # One more owner than points: a hash above the last point wraps to the first one,
        # and the lookup needs no bounds check.
        owners = [self.members[m][0] for _, m in points]
        self._owners = owners + owners[:1]

    def owner(self, key: str) -> str | None:
        if not self._hashes:
            return None
        return self._owners[bisect_left(self._hashes, xxh3_64_intdigest(key.encode()))]

    def __len__(self) -> int:
        return len(self._hashes)


class Rendezvous:
    """Weighted highest-random-weight hashing. A key's raw score on member ``n`` is
    ``xxh3_64_with_seed(u64_le(key_hash), xxh3_64(utf8(n)))``; with equal weights the largest
    raw score wins (integers), else the largest ``-w / ln(u)`` with
    ``u = ((s >> 11) + 0.5) / 2^53``. Ties go to the smaller node id."""

    def __init__(self, members: Iterable[tuple[str, int]]) -> None:
        self.members = _sorted_members(members)
        self._seeds = [(node, xxh3_64_intdigest(node.encode()), w) for node, w in self.members]
        weights = {w for _, w in self.members}
        self._equal = len(weights) <= 1

    def owner(self, key: str) -> str | None:
        kh = xxh3_64_intdigest(key.encode()).to_bytes(8, "little")
        best: str | None = None
        if self._equal:
            best_raw = -1
            for node, seed, _ in self._seeds:
                s = xxh3_64_intdigest(kh, seed)
                # Strictly greater: members are sorted, so ties stay with the smaller id.
                if s > best_raw:
                    best, best_raw = node, s
            return best
        best_score = -math.inf
        for node, seed, weight in self._seeds:
            u = ((xxh3_64_intdigest(kh, seed) >> 11) + 0.5) / 9007199254740992.0
            score = -weight / math.log(u)
            if best is None or score > best_score:
                best, best_score = node, score
        return best


Placement = Union[Ring, Rendezvous]
"""Either placement; both answer ``owner(key)``."""


def build(strategy: str, vnodes: int, members: Sequence[tuple[str, int]]) -> Placement:
    """The placement for a strategy (``ring`` or ``rendezvous``) over ``(node, weight)``
    members, in any order."""
    if strategy == "ring":
        return Ring(members, vnodes)
    if strategy == "rendezvous":
        return Rendezvous(members)
    raise ValueError(f"unknown placement strategy {strategy!r} (expected ring or rendezvous)")
