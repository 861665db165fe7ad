"""Finding the master that serves one Pantheon cluster, as shared/store/src/resolve.rs does.

Every key of a cluster shares the hash tag ``{cluster}``, so one master serves all of it:

* one server: the URL's host;
* Sentinel: ``SENTINEL GET-MASTER-ADDR-BY-NAME`` on each Sentinel in turn, then ``ROLE`` on
  the answer (a Sentinel may still name a demoted master for a moment);
* Redis Cluster: ``CLUSTER SLOTS`` on each known node in turn, the master of the slot of
  ``{cluster}``, then ``ROLE`` on it.

This module holds the pure part (what to ask, how to read the answers) and the connection
settings; :mod:`pantheon_client.client` and :mod:`pantheon_client.aio` do the asking.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.crc import key_slot

from .common import text
from .errors import Unavailable
from .redis_url import HostPort, RedisUrl

ASK_TIMEOUT_S = 2.0
"""Timeout of the short questions asked while resolving."""
SOCKET_TIMEOUT_S = 10.0
"""Longest wait for any reply (blocking reads block for at most a few seconds)."""


@dataclass(frozen=True)
class Tls:
    """PEM files for ``rediss`` URLs (without a CA file the system trust store is used)."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


def slot_of_cluster(cluster: str) -> int:
    return int(key_slot(("{" + cluster + "}").encode()))


def connection_kwargs(
    url: RedisUrl, tls: Tls, *, data: bool = True, timeout: float = SOCKET_TIMEOUT_S
) -> dict[str, Any]:
    """Keyword arguments of ``redis.Redis`` for a data node (``data``) or a Sentinel.
    redis-py's own retries are switched off by the callers: the connection retries once
    the master has been resolved again, with its own bounded backoff."""
    kwargs: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": ASK_TIMEOUT_S,
    }
    if data:
        kwargs.update(db=url.db, username=url.username, password=url.password)
    else:
        kwargs.update(username=url.sentinel_username, password=url.sentinel_password)
    if url.tls:
        kwargs.update(ssl=True, ssl_ca_certs=tls.ca_file)
        if tls.cert_file and tls.key_file:
            kwargs.update(ssl_certfile=tls.cert_file, ssl_keyfile=tls.key_file)
    return kwargs


def sentinel_answer(reply: Any, sentinel: HostPort, master: str) -> HostPort:
    if not reply:
        raise Unavailable(f"sentinel {sentinel} does not know a master named {master!r}")
    return HostPort(text(reply[0]), int(reply[1]))


def slot_owner(reply: Any, slot: int, asked: HostPort) -> tuple[HostPort, list[HostPort]]:
    """The master of ``slot`` in a ``CLUSTER SLOTS`` reply, and every node it names."""
    owner: HostPort | None = None
    nodes: list[HostPort] = []
    for entry in reply or []:
        start, end, *holders = entry
        for holder in holders:
            host = text(holder[0]) or asked.host
            nodes.append(HostPort(host, int(holder[1])))
        if int(start) <= slot <= int(end) and holders:
            owner = HostPort(text(holders[0][0]) or asked.host, int(holders[0][1]))
    if owner is None:
        raise Unavailable(f"node {asked} says no master serves slot {slot}")
    return owner, nodes


def check_role(reply: Any, addr: HostPort) -> None:
    role = text(reply[0]) if reply else "?"
    if role != "master":
        raise Unavailable(f"{addr} is a {role}, not a master (a failover may be under way)")


def combine(errors: list[str]) -> Unavailable:
    return Unavailable("no master found: " + "; ".join(errors))
