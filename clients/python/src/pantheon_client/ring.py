"""The cached ring definition behind ``locate``: the ``ring`` hash (strategy, vnodes,
members with weights, version) with its placement built, refreshed as the Rust client does:
the version is checked (one ``HGET``) at most once per refresh interval, and the definition
is fetched and the placement rebuilt only when the version changed."""

from __future__ import annotations

from . import placement
from .common import decode_map, parse_members, parse_tokens, text
from .errors import PantheonError


class RingSnapshot:
    """One version of the ring definition, with its placement built."""

    __slots__ = ("members", "owner", "strategy", "tokens", "version", "vnodes")

    def __init__(
        self,
        version: int,
        strategy: str,
        vnodes: int,
        members: list[tuple[str, int]],
        tokens: dict[str, int] | None = None,
    ):
        self.version = version
        """The ring version (0 before the projector first wrote a ring)."""
        self.strategy = strategy
        self.vnodes = vnodes
        built = placement.build(strategy, vnodes, members)
        self.members = built.members
        """The nodes that own keys (alive or suspect, not draining), sorted by id."""
        self.owner = built.owner
        """``owner(key)``: the owner of a key in this version, or ``None``."""
        self.tokens = tokens or {}
        """Each member's ownership token (empty in a ring written before tokens)."""

    def owner_with_token(self, key: str) -> tuple[str, int | None] | None:
        """The owner of ``key`` and the key's ownership token: a newer owner of a key always
        holds a larger one (refuse a request whose token is smaller than yours). ``None``
        when no node can own keys."""
        owner = self.owner(key)
        return None if owner is None else (owner, self.tokens.get(owner))

    def __repr__(self) -> str:
        return (
            f"RingSnapshot(version={self.version}, strategy={self.strategy!r}, "
            f"vnodes={self.vnodes}, members={self.members!r})"
        )


def parse_version(raw: object) -> int:
    if raw is None:
        return 0
    try:
        return int(text(raw))
    except ValueError:
        raise PantheonError(f"the ring hash has a bad version {raw!r}") from None


def snapshot(flat: object) -> RingSnapshot:
    """A snapshot from an ``HGETALL`` of the ring hash (the policy's defaults for absent
    fields)."""
    fields = decode_map(flat)
    try:
        version = int(fields.get("version", "0"))
        vnodes = int(fields.get("vnodes", str(placement.DEFAULT_VNODES)))
    except ValueError as e:
        raise PantheonError(f"the ring hash is damaged: {e}") from None
    strategy = fields.get("strategy", "ring")
    if strategy not in placement.STRATEGIES:
        raise PantheonError(f"the ring hash names an unknown strategy {strategy!r}")
    return RingSnapshot(
        version,
        strategy,
        vnodes,
        parse_members(fields.get("members", "")),
        parse_tokens(fields.get("tokens", "")),
    )
