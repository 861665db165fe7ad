"""Health URLs as the projector checks and stores them (``check_health_url`` and
``check_address`` in shared/domain/src/entry.rs, which parse with the WHATWG URL rules of the
Rust ``url`` crate). A join carries the URL in its normalised form, so the entry this client
writes is the one the Rust client writes.

Hosts are taken in ASCII: a host with non-ASCII letters or percent-escapes (which Rust would
convert with IDNA) is refused here with a clear message; write it in punycode.
"""

from __future__ import annotations

import ipaddress

from .errors import InvalidInput

MAX_FIELD_BYTES = 2048
_DEFAULT_PORTS = {"http": 80, "https": 443}
_FORBIDDEN_HOST = set(" #%/:<>?@[\\]^|")
_PATH_ENCODE = set(' "#<>?`{}')
_QUERY_ENCODE = set(" \"#<>'")
_FRAGMENT_ENCODE = set(' "<>`')


def debug(s: str) -> str:
    """A string quoted the way Rust's ``{:?}`` quotes it (for identical messages)."""
    out = ['"']
    for c in s:
        if c in '"\\':
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif c == "\r":
            out.append("\\r")
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{{{ord(c):x}}}")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def clip(s: str) -> str:
    """Untrusted text shortened for messages: at most 64 bytes, then an ellipsis."""
    raw = s.encode()
    if len(raw) <= 64:
        return s
    return raw[:64].decode(errors="ignore") + "…"


class _ParseError(Exception):
    """A WHATWG parse failure, with the ``url`` crate's message."""


def _bad(url: str, reason: str) -> InvalidInput:
    return InvalidInput(f"bad health URL {debug(clip(url))}: {reason}")


def _written_as_parsed(raw: str) -> None:
    """Refuses what a URL parser would silently repair, so the URL probed is the URL
    written."""
    if any(c.isspace() or ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in raw):
        raise _bad(raw, "whitespace or control characters are not allowed in a URL")
    if "\\" in raw:
        raise _bad(raw, "backslashes are not allowed in a URL")
    _scheme, sep, rest = raw.partition("://")
    if not sep:
        raise _bad(raw, "needs a scheme and a host, like http://10.0.0.5:8080/health")
    if not rest or rest.startswith("/"):
        raise _bad(raw, "no host after the scheme's //")


def _encode(text: str, encode: set[str]) -> str:
    out: list[str] = []
    for c in text:
        if c in encode or ord(c) > 0x7E:
            out.extend(f"%{b:02X}" for b in c.encode())
        else:
            out.append(c)
    return "".join(out)


def _ipv4_number(part: str) -> int:
    if part[:2].lower() == "0x":
        digits = part[2:]
        return int(digits, 16) if digits else 0
    if len(part) > 1 and part.startswith("0"):
        return int(part[1:], 8)
    return int(part, 10)


def _ends_in_number(host: str) -> bool:
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    last = parts[-1]
    if last and last.isascii() and last.isdigit():
        return True
    return last[:2].lower() == "0x" and all(c in "0123456789abcdefABCDEF" for c in last[2:])


def _ipv4(host: str) -> str:
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    if len(parts) > 4 or any(p == "" for p in parts):
        raise _ParseError("invalid IPv4 address")
    try:
        numbers = [_ipv4_number(p) for p in parts]
    except ValueError:
        raise _ParseError("invalid IPv4 address") from None
    if any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(numbers)):
        raise _ParseError("invalid IPv4 address")
    value = numbers[-1]
    for i, n in enumerate(numbers[:-1]):
        value += n * 256 ** (3 - i)
    return ".".join(str((value >> s) & 255) for s in (24, 16, 8, 0))


def _ipv6(text: str) -> str:
    try:
        packed = ipaddress.IPv6Address(text).packed if "%" not in text else b""
    except ValueError:
        packed = b""
    if len(packed) != 16:
        raise _ParseError("invalid IPv6 address")
    pieces = [int.from_bytes(packed[i : i + 2], "big") for i in range(0, 16, 2)]
    # Compress the first longest run of two or more zero pieces (WHATWG serialisation).
    best_start, best_len, i = -1, 1, 0
    while i < 8:
        if pieces[i] == 0:
            j = i
            while j < 8 and pieces[j] == 0:
                j += 1
            if j - i > best_len:
                best_start, best_len = i, j - i
            i = j
        else:
            i += 1
    if best_start < 0:
        return ":".join(f"{p:x}" for p in pieces)
    head = ":".join(f"{p:x}" for p in pieces[:best_start])
    tail = ":".join(f"{p:x}" for p in pieces[best_start + best_len :])
    return f"[{head}::{tail}]"


def _host(text: str) -> str:
    if text.startswith("["):
        if not text.endswith("]"):
            raise _ParseError("invalid IPv6 address")
        serialised = _ipv6(text[1:-1])
        return serialised if serialised.startswith("[") else f"[{serialised}]"
    if not text:
        raise _ParseError("empty host")
    if not text.isascii() or "%" in text:
        raise _ParseError(
            "the Python client takes hosts in ASCII without percent-escapes (write an "
            "international name in punycode)"
        )
    host = text.lower()
    if any(c in _FORBIDDEN_HOST or ord(c) < 0x20 or ord(c) == 0x7F for c in host):
        # The url crate's IDNA step refuses URL-forbidden code points with this message.
        raise _ParseError("invalid international domain name")
    if _ends_in_number(host):
        return _ipv4(host)
    return host


def _path(path: str) -> str:
    segments: list[str] = []
    parts = path[1:].split("/") if path else [""]
    for n, seg in enumerate(parts):
        last = n == len(parts) - 1
        low = seg.lower()
        if low in ("..", ".%2e", "%2e.", "%2e%2e"):
            if segments:
                segments.pop()
            if last:
                segments.append("")
        elif low in (".", "%2e"):
            if last:
                segments.append("")
        else:
            segments.append(_encode(seg, _PATH_ENCODE))
    return "/" + "/".join(segments)


class _Parsed:
    def __init__(self, raw: str) -> None:
        scheme, _, rest = raw.partition("://")
        if not scheme[:1].isalpha() or not all(
            c.isascii() and (c.isalnum() or c in "+-.") for c in scheme
        ):
            raise _ParseError("relative URL without a base")
        self.scheme = scheme.lower()
        if self.scheme not in _DEFAULT_PORTS:
            return
        end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
        authority, rest = rest[:end], rest[end:]
        userinfo, at, hostport = authority.rpartition("@")
        self.credentials = bool(at) and userinfo not in ("", ":")
        if at and not hostport:
            raise _ParseError("empty host")
        if hostport.startswith("["):
            close = hostport.find("]")
            host_text, port_text = hostport[: close + 1], hostport[close + 1 :]
            if port_text and not port_text.startswith(":"):
                raise _ParseError("invalid IPv6 address")
        else:
            colon = hostport.find(":")
            host_text, port_text = (
                (hostport, "") if colon < 0 else (hostport[:colon], hostport[colon:])
            )
        self.host = _host(host_text)
        self.port: int | None = None
        if port_text[1:]:
            digits = port_text[1:]
            if not (digits.isascii() and digits.isdigit()) or int(digits) > 65535:
                raise _ParseError("invalid port number")
            if int(digits) != _DEFAULT_PORTS[self.scheme]:
                self.port = int(digits)
        rest, hash_sep, fragment = rest.partition("#")
        path, query_sep, query = rest.partition("?")
        self.path = _path(path)
        self.query = _encode(query, _QUERY_ENCODE) if query_sep else None
        self.fragment = _encode(fragment, _FRAGMENT_ENCODE) if hash_sep else None

    def serialise(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        text = f"{self.scheme}://{self.host}{port}{self.path}"
        if self.query is not None:
            text += "?" + self.query
        if self.fragment is not None:
            text += "#" + self.fragment
        return text


def _parse(raw: str) -> _Parsed:
    try:
        return _Parsed(raw)
    except _ParseError as e:
        raise _bad(raw, str(e)) from None


def _check_length(field: str, value: str) -> None:
    n = len(value.encode())
    if n > MAX_FIELD_BYTES:
        raise InvalidInput(
            f"field {debug(field)} is {n} bytes, longer than the limit of {MAX_FIELD_BYTES}"
        )


def check_health_url(raw: str) -> str:
    """The health URL as the projector stores it, or :class:`InvalidInput` with its reason."""
    _written_as_parsed(raw)
    url = _parse(raw)
    if url.scheme not in _DEFAULT_PORTS:
        raise InvalidInput(f"health URL scheme {debug(clip(url.scheme))} is not http or https")
    if url.credentials:
        raise _bad(
            url.serialise(),
            "credentials (user:password@) are not allowed in a health URL: they would be "
            "stored and shown in read models, events and logs; use an endpoint that needs none",
        )
    return url.serialise()


def url_field(url: str) -> str:
    """A join's ``url`` field, checked and normalised."""
    _check_length("url", url)
    return check_health_url(url)


def address_url(address: str, port: int, path: str) -> str:
    """A join in the Go library's shape (``address`` with a scheme, ``port``, ``path``) as the
    URL the projector builds from it."""
    _check_length("address", address)
    _check_length("path", path)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port <= 65535:
        raise InvalidInput(f"bad port {debug(clip(str(port)))} (expected 1..=65535)")
    if "://" not in address:
        raise _bad(address, "address needs a scheme, like http://10.0.0.5")
    _written_as_parsed(address)
    parsed = _parse(address)
    if parsed.scheme in _DEFAULT_PORTS:
        if parsed.credentials:
            raise _bad(parsed.serialise(), "an address takes no credentials (user:password@)")
        if parsed.port is not None:
            raise _bad(address, "an address takes no port: give it with `port`")
        if parsed.path != "/":
            raise _bad(address, "an address takes no path: give it with `path`")
        if parsed.query is not None or parsed.fragment is not None:
            raise _bad(address, "an address takes no query or fragment")
    return check_health_url(f"{address.rstrip('/')}:{port}/{path.lstrip('/')}")
