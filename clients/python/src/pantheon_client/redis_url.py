"""Redis URLs, with the grammar of the Rust client (shared/store/src/url.rs)::

    redis://[user[:password]@]host[:port][/db]                  one server
    rediss://...                                                the same over TLS
    redis+sentinel://[user[:password]@]host:port[,host:port...]/<master-name>[/db]
    redis+cluster://[user[:password]@]host:port[,host:port...]  Redis Cluster (db 0 only)
    rediss+sentinel://..., rediss+cluster://...                 the same over TLS

User and password are the data nodes' (percent-encoded). Sentinels are asked without
credentials unless ``?sentinel_password=...`` (and optionally ``sentinel_username=...``)
says otherwise. No message ever contains a password.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

from .errors import ConfigError

DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379

_SCHEMES = {
    "redis": (False, "server"),
    "rediss": (True, "server"),
    "redis+sentinel": (False, "sentinel"),
    "rediss+sentinel": (True, "sentinel"),
    "redis+cluster": (False, "cluster"),
    "rediss+cluster": (True, "cluster"),
}
_USE = "use redis://, rediss://, redis+sentinel://, redis+cluster:// (or their rediss+ forms)"


class UrlError(ConfigError):
    """A Redis URL that cannot be used; the message never holds the password."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"bad redis url: {reason}")


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @staticmethod
    def parse(text: str, default_port: int) -> HostPort:
        def bad(why: str) -> UrlError:
            return UrlError(f"bad host {text!r}: {why}")

        port_text: str | None
        if text.startswith("["):
            host, sep, after = text[1:].partition("]")
            if not sep:
                raise bad("missing ]")
            if after.startswith(":"):
                port_text = after[1:]
            elif not after:
                port_text = None
            else:
                raise bad("unexpected text after ]")
        else:
            host, sep, port_text = text.rpartition(":")
            if not sep:
                host, port_text = text, None
        if not host:
            raise bad("no host")
        if any(c in host for c in "/@?# "):
            raise bad("not a host name")
        if port_text is None:
            port = default_port
        else:
            if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) <= 65535:
                raise bad("the port must be 1 to 65535")
            port = int(port_text)
        return HostPort(host, port)


@dataclass(frozen=True)
class RedisUrl:
    """A parsed Redis URL. ``str()`` and ``repr()`` mask every password."""

    tls: bool
    kind: str
    """``server``, ``sentinel`` or ``cluster``."""
    hosts: tuple[HostPort, ...]
    master: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        scheme = ("rediss" if self.tls else "redis") + (
            "" if self.kind == "server" else "+" + self.kind
        )
        auth = ""
        if self.password is not None:
            auth = f"{self.username or ''}:****@"
        elif self.username is not None:
            auth = f"{self.username}@"
        text = f"{scheme}://{auth}{','.join(str(h) for h in self.hosts)}"
        if self.kind == "sentinel":
            text += f"/{self.master}"
        if self.db and self.kind != "cluster":
            text += f"/{self.db}"
        if self.sentinel_password is not None:
            text += "?sentinel_password=****"
        return text

    def __repr__(self) -> str:
        return f"RedisUrl({self})"


def _decode(text: str, what: str) -> str:
    try:
        return unquote_to_bytes(text).decode()
    except UnicodeDecodeError:
        raise UrlError(f"the {what} is not valid UTF-8 after percent-decoding") from None


def _non_empty(s: str) -> str | None:
    return s or None


def mask(url: str) -> str:
    """The URL with ``****`` for a password in its userinfo, for messages."""
    start = url.find("://")
    if start < 0:
        return url
    start += 3
    rest = url[start:]
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority = rest[:end]
    at = authority.rfind("@")
    if at >= 0 and ":" in authority[:at]:
        authority = authority[: authority.index(":")] + ":****" + authority[at:]
    return url[:start] + authority + rest[end:]


def parse(text: str) -> RedisUrl:
    """Parses one of the URL forms in the module docs, or raises :class:`UrlError` saying
    what is wrong."""
    text = text.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise UrlError(f"{mask(text)} has no scheme; {_USE}")
    form = _SCHEMES.get(scheme.lower())
    if form is None:
        raise UrlError(f"unknown scheme {scheme.lower()!r}; {_USE}")
    tls, kind = form
    rest, has_query, query = rest.partition("?")
    slash = rest.find("/")
    authority, path = (rest, "") if slash < 0 else (rest[:slash], rest[slash + 1 :])
    userinfo: str | None
    userinfo, at, hosts_text = authority.rpartition("@")
    if not at:
        userinfo, hosts_text = None, authority
    username = password = None
    if userinfo is not None:
        user, colon, secret = userinfo.partition(":")
        username = _non_empty(_decode(user, "user"))
        if colon:
            password = _non_empty(_decode(secret, "password"))
    default_port = DEFAULT_SENTINEL_PORT if kind == "sentinel" else DEFAULT_PORT
    hosts = tuple(HostPort.parse(h, default_port) for h in hosts_text.split(","))
    segments = [s for s in path.split("/") if s]

    def parse_db(s: str) -> int:
        if not (s.isascii() and s.isdigit()):
            raise UrlError(f"database {s!r} is not a number ≥ 0")
        return int(s)

    master: str | None = None
    db = 0
    if kind == "server":
        if len(hosts) != 1:
            raise UrlError(
                "redis:// names one server; use redis+sentinel:// or redis+cluster:// for several"
            )
        if len(segments) == 1:
            db = parse_db(segments[0])
        elif segments:
            raise UrlError(f"unexpected path /{path}")
    elif kind == "sentinel":
        if len(segments) not in (1, 2):
            raise UrlError("a sentinel URL ends with /<master-name> (then optionally /<db>)")
        master = _decode(segments[0], "master name")
        if len(segments) == 2:
            db = parse_db(segments[1])
    elif segments not in ([], ["0"]):
        raise UrlError("Redis Cluster has only database 0: drop the path")
    sentinel_username = sentinel_password = None
    for pair in query.split("&") if has_query else []:
        if not pair:
            continue
        key, _, value = pair.partition("=")
        if kind == "sentinel" and key == "sentinel_username":
            sentinel_username = _non_empty(_decode(value, "sentinel_username"))
        elif kind == "sentinel" and key == "sentinel_password":
            sentinel_password = _non_empty(_decode(value, "sentinel_password"))
        else:
            raise UrlError(
                f"unknown parameter {key!r} (a sentinel URL takes sentinel_username and "
                "sentinel_password; other URLs take none)"
            )
    return RedisUrl(
        tls=tls,
        kind=kind,
        hosts=hosts,
        master=master,
        db=db,
        username=username,
        password=password,
        sentinel_username=sentinel_username,
        sentinel_password=sentinel_password,
    )
