"""Entries written by the Python client are the Rust client's, field for field and byte for
byte (only the random ``cmd`` value differs), and bad input fails here with the message the
projector would give. The Rust side is the real ``pantheon`` CLI writing to the same Redis."""

from __future__ import annotations

import re
from typing import Any

import pytest
import redis
from conftest import Cli

from pantheon_client import InvalidInput, Pantheon
from pantheon_client.common import raw_replies


def raw_entries(url: str, cluster: str) -> list[list[tuple[bytes, bytes]]]:
    # XRANGE keeps repeated fields (`key`), so read the flat reply.
    r: Any = redis.Redis.from_url(url)
    raw_replies(r)
    reply: Any = r.execute_command("XRANGE", f"pantheon:{{{cluster}}}:log", "-", "+")
    r.close()
    return [[(f[i], f[i + 1]) for i in range(0, len(f), 2)] for _, f in reply]


def without_cmd(fields: list[tuple[bytes, bytes]], prefix: bytes) -> list[tuple[bytes, bytes]]:
    out = []
    for k, v in fields:
        if k == b"cmd":
            assert re.fullmatch(prefix + rb"-[0-9a-f]{32}", v), v
            v = b"<cmd>"
        out.append((k, v))
    return out


def case_id(value: object) -> str:
    return " ".join(value)[:40] if isinstance(value, list) else ""


WRITES: list[tuple[list[str], Any]] = [
    (
        ["join", "n1", "--address", "http://127.0.0.1", "--port", "8080", "--path", "health"],
        lambda p: p.join("n1", address="http://127.0.0.1", port=8080, path="health"),
    ),
    (
        ["join", "n2", "--address", "https://Example.COM/", "--port", "443", "--path", "/x/y"],
        lambda p: p.join("n2", address="https://Example.COM/", port=443, path="/x/y"),
    ),
    (
        ["join", "n3", "--url", "HTTP://LocalHost:80/Health?X=1#frag", "--weight", "7"],
        lambda p: p.join("n3", "HTTP://LocalHost:80/Health?X=1#frag", weight=7),
    ),
    (
        ["join", "n4", "--url", "http://127.1:8080/a/./b/../c/%2e%2E/d"],
        lambda p: p.join("n4", "http://127.1:8080/a/./b/../c/%2e%2E/d"),
    ),
    (
        ["join", "n5", "--url", 'http://0x7f.0.0.1:9/p{x}"<>`?q=\'a\'"#f`g"é'],
        lambda p: p.join("n5", 'http://0x7f.0.0.1:9/p{x}"<>`?q=\'a\'"#f`g"é'),
    ),
    (
        ["join", "n6", "--url", "http://[::FFFF:1.2.3.4]:1/é"],
        lambda p: p.join("n6", "http://[::FFFF:1.2.3.4]:1/é"),
    ),
    (
        ["join", "n7", "--url", "http://[2001:DB8:0:0:1:0:0:1]"],
        lambda p: p.join("n7", "http://[2001:DB8:0:0:1:0:0:1]"),
    ),
    (
        ["join", "n8", "--url", "https://h.example:8443"],
        lambda p: p.join("n8", "https://h.example:8443"),
    ),
    (
        ["join", "n9", "--url", "http://h:1/a^b|c[d]e'f;g=h@i!$&()*+,:~%41%zz/?^|[]`{}#^|[]{}'"],
        lambda p: p.join("n9", "http://h:1/a^b|c[d]e'f;g=h@i!$&()*+,:~%41%zz/?^|[]`{}#^|[]{}'"),
    ),
    (["leave", "n1"], lambda p: p.leave("n1")),
    (["drain", "a@b:c.d_e-f"], lambda p: p.drain("a@b:c.d_e-f")),
    (["undrain", "n2"], lambda p: p.undrain("n2")),
    (["weight", "n3", "100"], lambda p: p.set_weight("n3", 100)),
    (
        ["distribute", "user:1", "clé ✓", 'q"\\'],
        lambda p: p.distribute(["user:1", "clé ✓", 'q"\\']),
    ),
]


@pytest.mark.parametrize(("args", "write"), WRITES, ids=case_id)
def test_python_writes_the_entry_the_rust_client_writes(
    redis_url: str, cluster: str, cli: Cli, args: list[str], write: Any
) -> None:
    cli.run(*args, "--no-wait")
    with Pantheon.connect(redis_url, cluster) as p:
        write(p)
    rust, python = raw_entries(redis_url, cluster)
    assert without_cmd(python, b"py") == without_cmd(rust, b"rs")


def test_distribute_sends_batches_of_10000_keys(redis_url: str, cluster: str) -> None:
    keys = [f"k{i}" for i in range(25_001)]
    with Pantheon.connect(redis_url, cluster) as p:
        ids = p.distribute(keys)
        assert p.distribute([]) == []
    entries = raw_entries(redis_url, cluster)
    assert len(ids) == len(entries) == 3
    sizes = [sum(1 for k, _ in e if k == b"key") for e in entries]
    assert sizes == [10_000, 10_000, 5_001]
    sent = [v.decode() for e in entries for k, v in e if k == b"key"]
    assert sent == keys


BAD: list[tuple[list[str], Any]] = [
    (["leave", "a b"], lambda p: p.leave("a b")),
    (["leave", "x" * 129], lambda p: p.leave("x" * 129)),
    (["weight", "n1", "0"], lambda p: p.set_weight("n1", 0)),
    (["join", "n1", "--url", "ftp://h/x"], lambda p: p.join("n1", "ftp://h/x")),
    (["join", "n1", "--url", "http://u:pw@h/x"], lambda p: p.join("n1", "http://u:pw@h/x")),
    (["join", "n1", "--url", "http:///h"], lambda p: p.join("n1", "http:///h")),
    (["join", "n1", "--url", "http://h:99999/"], lambda p: p.join("n1", "http://h:99999/")),
    (["join", "n1", "--url", "http://h_^/"], lambda p: p.join("n1", "http://h_^/")),
    (["join", "n1", "--url", "http://1.2.3.256/"], lambda p: p.join("n1", "http://1.2.3.256/")),
    (
        ["join", "n1", "--address", "http://h/x", "--port", "1", "--path", "p"],
        lambda p: p.join("n1", address="http://h/x", port=1, path="p"),
    ),
    (
        ["join", "n1", "--address", "http://h:80", "--port", "1", "--path", "p"],
        lambda p: p.join("n1", address="http://h:80", port=1, path="p"),
    ),
    (
        ["join", "n1", "--address", "10.0.0.5", "--port", "1", "--path", "p"],
        lambda p: p.join("n1", address="10.0.0.5", port=1, path="p"),
    ),
    (["distribute", "k", "x" * 1025], lambda p: p.distribute(["k", "x" * 1025])),
]


@pytest.mark.parametrize(("args", "write"), BAD, ids=case_id)
def test_bad_input_fails_with_the_rust_message_and_writes_nothing(
    redis_url: str, cluster: str, cli: Cli, args: list[str], write: Any
) -> None:
    rust = cli.run(*args, "--no-wait", check=False)
    assert rust.returncode != 0
    with Pantheon.connect(redis_url, cluster) as p, pytest.raises(InvalidInput) as e:
        write(p)
    assert e.value.reason in rust.stderr, (e.value.reason, rust.stderr)
    assert raw_entries(redis_url, cluster) == []
