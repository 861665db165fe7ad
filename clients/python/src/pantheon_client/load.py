"""Loads as load-aware placement reads them (docs/adr/0018; shared/domain/src/load.rs):
decimal text in the cluster's unit per second, kept as integers of thousandths.

``parse_load`` takes what Rust's ``str::parse::<f64>`` takes (after Rust's ``trim``) and
refuses what Rust's ``parse_load`` refuses, with its messages; ``format_load`` writes the text
Rust's ``format_load`` writes.
"""

from __future__ import annotations

import math
import re

from .errors import InvalidInput
from .health_url import clip, debug

MAX_LOAD = 1e12
"""The largest load a report may give, in the reporter's unit."""
MAX_KEY_LOADS = 64
"""Keys one ``key_loads`` entry may carry (``report_key_loads`` keeps the heaviest)."""
MAX_MILLI = 2**64 - 1
"""Loads in thousandths are Rust ``u64``s."""

# Rust's `char::is_whitespace` (Unicode White_Space), which `str::trim` strips. Python's
# `str.strip()` strips more (U+001C..U+001F), so the set is spelled out.
_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
# The grammar of Rust's `f64::from_str` (ASCII digits only, no `_`, `inf`/`infinity`/`nan`
# in any case); Python's `float()` also takes `1_000` and non-ASCII digits, which Rust refuses.
_RUST_FLOAT = re.compile(
    r"[+-]?(?:inf|infinity|nan|(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:e[+-]?[0-9]+)?)",
    re.IGNORECASE | re.ASCII,
)


def parse_load(text: str) -> int:
    """A load as text (a decimal number of the cluster's unit per second) in thousandths,
    rounded half away from zero (``"12.5"`` → ``12500``). Raises :class:`InvalidInput` with
    Rust's reason for text that is not a number, negative, not finite or above 1e12."""
    if not isinstance(text, str):
        raise InvalidInput(f"a load must be a str, got {type(text).__name__}")
    text = text.strip(_WHITESPACE)
    shown = debug(clip(text))
    if _RUST_FLOAT.fullmatch(text) is None:
        raise InvalidInput(f"load {shown} is not a number")
    value = float(text)
    if not math.isfinite(value):
        raise InvalidInput(f"load {shown} is not finite")
    if value < 0.0:
        raise InvalidInput(f"load {shown} is negative")
    if value > MAX_LOAD:
        raise InvalidInput(f"load {shown} is above the limit of 1e12")
    # Rust: `(value * 1000.0).round() as u64`: one IEEE multiplication, then halves away from
    # zero (Python's `round` would round them to even). `scaled - whole` is exact here.
    scaled = value * 1000.0
    whole = math.floor(scaled)
    return whole + 1 if scaled - whole >= 0.5 else whole


def check_milli(milli: int) -> int:
    """A load in thousandths: an ``int`` in Rust's ``u64`` range."""
    if isinstance(milli, bool) or not isinstance(milli, int):
        raise InvalidInput(f"a load must be an int of thousandths, got {type(milli).__name__}")
    if not 0 <= milli <= MAX_MILLI:
        raise InvalidInput(f"load {milli} is outside 0..={MAX_MILLI} thousandths")
    return milli


def format_load(thousandths: int) -> str:
    """Thousandths as the decimal text :func:`parse_load` reads (``12500`` → ``"12.5"``,
    ``3000`` → ``"3"``). Raises :class:`InvalidInput` for a value that is not an ``int``
    from 0 to 2**64 - 1."""
    whole, frac = divmod(check_milli(thousandths), 1000)
    if frac == 0:
        return str(whole)
    return f"{whole}.{frac:03d}".rstrip("0")
