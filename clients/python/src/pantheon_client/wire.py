"""Log entries as the Rust client writes them (shared/client/src/write.rs): the fields of
``LogEntry::encode`` in its order (``v``, ``type``, ``cmd``, then the command's fields), checked
with the projector's rules first, so bad input fails here with the projector's message and
nothing is sent.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence

from .errors import InvalidInput
from .health_url import address_url, clip, debug, url_field
from .load import MAX_KEY_LOADS, check_milli, format_load, parse_load

SCHEMA_VERSION = "1"
MAX_NODE_ID_BYTES = 128
MAX_KEY_BYTES = 1024
MAX_BATCH_KEYS = 10_000
MAX_WEIGHT = 100
_NODE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-:@")

Fields = list[tuple[str, str]]


def new_cmd() -> str:
    """A unique command id: a retried append carrying it is applied once."""
    return "py-" + secrets.token_hex(16)


def check_node(node: str) -> str:
    """A node id: 1 to 128 bytes of ASCII letters, digits and ``. _ - : @``."""
    if not node:
        raise InvalidInput("bad node id: node id is empty")
    n = len(node.encode())
    if n > 2048:
        raise InvalidInput(f'field "node" is {n} bytes, longer than the limit of 2048')
    if n > MAX_NODE_ID_BYTES:
        raise InvalidInput(
            f"bad node id: node id is {n} bytes, longer than the limit of {MAX_NODE_ID_BYTES}"
        )
    for c in node:
        if c not in _NODE_CHARS:
            shown = "'\\''" if c == "'" else f"'{c}'"
            raise InvalidInput(
                f"bad node id: node id contains {shown}; allowed are ASCII letters, digits "
                "and . _ - : @"
            )
    return node


def check_weight(weight: int) -> str:
    if isinstance(weight, bool) or not isinstance(weight, int):
        raise InvalidInput(f'field "weight" must be a number, got {debug(clip(str(weight)))}')
    if not 1 <= weight <= MAX_WEIGHT:
        raise InvalidInput(f'field "weight" is {weight}, outside 1..={MAX_WEIGHT}')
    return str(weight)


def _head(kind: str) -> Fields:
    return [("v", SCHEMA_VERSION), ("type", kind), ("cmd", new_cmd())]


def join(
    node: str,
    *,
    url: str | None = None,
    address: str | None = None,
    port: int | None = None,
    path: str | None = None,
    weight: int | None = None,
) -> Fields:
    """A ``join``: either ``url``, or ``address`` (scheme and host) + ``port`` + ``path``."""
    check_node(node)
    if url is not None and (address is not None or port is not None or path is not None):
        raise InvalidInput('give either "url" or "address"/"port"/"path", not both')
    if url is not None:
        health = url_field(url)
    elif address is not None:
        if port is None:
            raise InvalidInput('missing field "port"')
        health = address_url(address, port, path or "")
    else:
        raise InvalidInput('missing field "url"')
    fields = [*_head("join"), ("node", node), ("url", health)]
    if weight is not None:
        fields.append(("weight", check_weight(weight)))
    return fields


def node_command(kind: str, node: str) -> Fields:
    """``leave``, ``drain`` or ``undrain``."""
    return [*_head(kind), ("node", check_node(node))]


def set_weight(node: str, weight: int) -> Fields:
    return [*_head("weight"), ("node", check_node(node)), ("weight", check_weight(weight))]


def check_keys(keys: Sequence[str]) -> list[bytes]:
    """Every key as UTF-8 bytes, each 1 to 1,024 bytes. Done in bulk (list comprehension,
    ``min``/``max``): a million keys are checked in a fraction of a second."""
    try:
        raw = [k.encode() for k in keys]
    except AttributeError:
        bad = next(k for k in keys if not isinstance(k, str))
        raise InvalidInput(f"a key must be a str, got {type(bad).__name__}") from None
    except UnicodeEncodeError:
        raise InvalidInput('field "key" is not valid UTF-8') from None
    lengths = list(map(len, raw))
    if lengths and min(lengths) == 0:
        raise InvalidInput("key is empty")
    if lengths and max(lengths) > MAX_KEY_BYTES:
        n = next(n for n in lengths if n > MAX_KEY_BYTES)
        raise InvalidInput(f'field "key" is {n} bytes, longer than the limit of {MAX_KEY_BYTES}')
    return raw


def key_loads(node: str, keys: Iterable[tuple[str, int]]) -> Fields:
    """A ``key_loads`` entry as Rust's ``report_key_loads`` writes it: ``node``, then a
    ``key``/``load`` pair per key, heaviest first (ties by key), at most 64 (the heaviest),
    each load as ``format_load`` writes it after a round trip through the decoder's
    ``parse_load``. An empty list says none of ``node``'s keys is hot any more."""
    check_node(node)
    pairs = list(keys)
    for pair in pairs:
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise InvalidInput(f"a key load must be a (key, thousandths) pair, got {pair!r}")
        key, load = pair
        if not isinstance(key, str):
            raise InvalidInput(f"a key must be a str, got {type(key).__name__}")
        check_milli(load)
    pairs.sort(key=lambda kl: (-kl[1], kl[0]))
    fields = [*_head("key_loads"), ("node", node)]
    for key, load in pairs[:MAX_KEY_LOADS]:
        check_keys([key])
        # As the decoder reads it (which refuses a load above 1e12 units).
        fields.append(("key", key))
        fields.append(("load", format_load(parse_load(format_load(load)))))
    return fields


def batches(keys: Sequence[bytes]) -> Iterable[Sequence[bytes]]:
    """Key batches of at most 10,000 (one ``assign`` entry each)."""
    for start in range(0, len(keys), MAX_BATCH_KEYS):
        yield keys[start : start + MAX_BATCH_KEYS]


def _bulk(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


def pack_xadd(stream: str, fields: Fields) -> bytes:
    """``XADD <stream> * <fields>`` as one RESP command."""
    parts = [b"XADD", stream.encode(), b"*"]
    for k, v in fields:
        parts.append(k.encode())
        parts.append(v.encode())
    return b"*%d\r\n" % len(parts) + b"".join(_bulk(p) for p in parts)


_KEY_HEADERS = [b"$3\r\nkey\r\n$%d\r\n" % n for n in range(MAX_KEY_BYTES + 1)]
"""The RESP bytes before a key of each length: the field name ``key`` and the value's length."""


def pack_key_batch(stream: str, kind: str, keys: Sequence[bytes]) -> bytes:
    """``XADD <stream> * v 1 type <kind> cmd <id> key k1 key k2 ...`` as one RESP command,
    built with slice assignments and one join instead of a Python call per key (a batch has
    10,000 keys)."""
    head = [b"XADD", stream.encode(), b"*"]
    for k, v in _head(kind):
        head.append(k.encode())
        head.append(v.encode())
    n = len(keys)
    parts: list[bytes] = [b""] * (3 * n)
    parts[0::3] = [_KEY_HEADERS[length] for length in map(len, keys)]
    parts[1::3] = keys
    parts[2::3] = [b"\r\n"] * n
    return b"*%d\r\n" % (len(head) + 2 * n) + b"".join(_bulk(p) for p in head) + b"".join(parts)
