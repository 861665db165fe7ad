"""A connection to the master serving one cluster that follows failovers: a command that
fails on a dropped connection, ``MOVED``, ``READONLY`` or a demoted master resolves the
master again (backing off) and is retried, a bounded number of times."""

from __future__ import annotations

import random
import time
from typing import Callable, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import resolve
from .common import command, is_retryable, raw_replies
from .errors import Unavailable
from .redis_url import HostPort, RedisUrl

T = TypeVar("T")
_FIRST_BACKOFF_S = 0.05
_MAX_BACKOFF_S = 0.5


class Master:
    def __init__(self, url: RedisUrl, tls: resolve.Tls, cluster: str, retries: int) -> None:
        self.url = url
        self.tls = tls
        self.slot = resolve.slot_of_cluster(cluster)
        self.retries = retries
        self.known: list[HostPort] = list(url.hosts)
        self._client: redis.Redis | None = None

    def _data_client(self, addr: HostPort) -> redis.Redis:
        client = redis.Redis(
            host=addr.host,
            port=addr.port,
            retry=Retry(NoBackoff(), 0),
            **resolve.connection_kwargs(self.url, self.tls),
        )
        raw_replies(client)
        return client

    def _checked(self, addr: HostPort) -> redis.Redis:
        client = self._data_client(addr)
        try:
            resolve.check_role(command(client, "ROLE"), addr)
        except Exception:
            client.close()
            raise
        return client

    def _resolve(self) -> redis.Redis:
        url = self.url
        if url.kind == "server":
            return self._data_client(url.hosts[0])
        errors: list[str] = []
        if url.kind == "sentinel":
            assert url.master is not None
            for sentinel in url.hosts:
                try:
                    ask = redis.Redis(
                        host=sentinel.host,
                        port=sentinel.port,
                        retry=Retry(NoBackoff(), 0),
                        **resolve.connection_kwargs(
                            url, self.tls, data=False, timeout=resolve.ASK_TIMEOUT_S
                        ),
                    )
                    with ask:
                        reply = command(ask, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", url.master)
                    return self._checked(resolve.sentinel_answer(reply, sentinel, url.master))
                except (redis.RedisError, Unavailable) as e:
                    errors.append(f"sentinel {sentinel}: {e}")
            raise resolve.combine(errors)
        for node in list(self.known):
            try:
                with self._data_client(node) as ask:
                    reply = command(ask, "CLUSTER SLOTS")
                owner, nodes = resolve.slot_owner(reply, self.slot, node)
                self.known.extend(n for n in nodes if n not in self.known)
                return self._checked(owner)
            except (redis.RedisError, Unavailable) as e:
                errors.append(f"{node}: {e}")
        raise resolve.combine(errors)

    def client(self) -> redis.Redis:
        if self._client is None:
            self._client = self._resolve()
        return self._client

    def forget(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def call(self, fn: Callable[[redis.Redis], T], retries: int | None = None) -> T:
        """``fn(master)``, retried after failures another master may not have."""
        attempts = self.retries if retries is None else retries
        backoff = _FIRST_BACKOFF_S
        attempt = 0
        while True:
            try:
                return fn(self.client())
            except (redis.RedisError, Unavailable) as e:
                if attempt >= attempts or not (isinstance(e, Unavailable) or is_retryable(e)):
                    raise
                attempt += 1
                self.forget()
                time.sleep(backoff * (0.5 + random.random() / 2))
                backoff = min(backoff * 2, _MAX_BACKOFF_S)

    def close(self) -> None:
        self.forget()
