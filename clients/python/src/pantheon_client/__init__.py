"""Python client of Pantheon: which healthy node owns key K, and why.

Writes append entries to a cluster's log exactly as the Rust client does, ``locate``
computes owners locally with the Rust placement, reads come from the read models the
projector commits, ``subscribe`` follows the events stream through a consumer group, and
``watch`` follows one node's ownership feed.
The asyncio client is :mod:`pantheon_client.aio`, with the same names.
"""

from .client import Pantheon
from .errors import ConfigError, InvalidInput, PantheonError, Rejected, Unavailable
from .events import Event, SubscribeOptions
from .feed import WatchLine
from .load import MAX_KEY_LOADS, format_load, parse_load
from .redis_url import RedisUrl, UrlError
from .redis_url import parse as parse_redis_url
from .resolve import Tls
from .ring import RingSnapshot
from .subscribe import Subscription
from .watch import Watch

__all__ = [
    "MAX_KEY_LOADS",
    "ConfigError",
    "Event",
    "InvalidInput",
    "Pantheon",
    "PantheonError",
    "RedisUrl",
    "Rejected",
    "RingSnapshot",
    "SubscribeOptions",
    "Subscription",
    "Tls",
    "Unavailable",
    "UrlError",
    "Watch",
    "WatchLine",
    "format_load",
    "parse_load",
    "parse_redis_url",
]
