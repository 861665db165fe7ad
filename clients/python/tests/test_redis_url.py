"""Redis URLs parse like the Rust client's (the cases of shared/store/src/url.rs), and bad
ones say why without the password."""

from __future__ import annotations

import pytest

from pantheon_client import Pantheon, UrlError, parse_redis_url
from pantheon_client.redis_url import HostPort


def test_single_server_forms() -> None:
    u = parse_redis_url("redis://127.0.0.1:6380/2")
    assert (u.kind, u.hosts, u.tls, u.db, u.password) == (
        "server",
        (HostPort("127.0.0.1", 6380),),
        False,
        2,
        None,
    )
    u = parse_redis_url("rediss://app:p%40ss@redis.example")
    assert u.tls and u.hosts == (HostPort("redis.example", 6379),)
    assert (u.username, u.password) == ("app", "p@ss")
    u = parse_redis_url("redis://:secret@[::1]:7000")
    assert u.hosts == (HostPort("::1", 7000),) and u.password == "secret"


def test_sentinel_and_cluster_forms() -> None:
    u = parse_redis_url("redis+sentinel://s1:26379,s2,s3:5000/mymaster/1?sentinel_password=x")
    assert u.kind == "sentinel" and u.master == "mymaster"
    assert u.hosts == (HostPort("s1", 26379), HostPort("s2", 26379), HostPort("s3", 5000))
    assert (u.db, u.sentinel_password) == (1, "x")
    u = parse_redis_url("rediss+cluster://u:pw@a:7000,b:7001")
    assert u.tls and u.kind == "cluster"
    assert u.hosts == (HostPort("a", 7000), HostPort("b", 7001))


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("127.0.0.1:6379", "no scheme"),
        ("http://x", "unknown scheme"),
        ("redis://a:1,b:2", "one server"),
        ("redis+sentinel://s1", "/<master-name>"),
        ("redis+cluster://a:1/3", "only database 0"),
        ("redis://h:0", "1 to 65535"),
        ("redis://h:99999", "1 to 65535"),
        ("redis://h/x", "not a number"),
        ("redis://h?protocol=resp3", "unknown parameter"),
        ("redis://:S3cret@/0", "no host"),
        ("redis://h:S3cret@", "no host"),
    ],
)
def test_bad_urls_say_why_and_hide_the_password(url: str, says: str) -> None:
    with pytest.raises(UrlError) as e:
        parse_redis_url(url)
    assert says in str(e.value)
    assert "S3cret" not in str(e.value)
    assert str(e.value).startswith("bad redis url: ")


@pytest.mark.parametrize(
    "url",
    [
        "redis://:S3cretPW@127.0.0.1:1/3",
        "rediss://user:S3cretPW@h:2",
        "redis+sentinel://user:S3cretPW@s1:1,s2:2/m?sentinel_password=S3cretPW",
        "redis+cluster://user:S3cretPW@a:1,b:2",
    ],
)
def test_str_and_repr_mask_every_password_and_round_trip(url: str) -> None:
    u = parse_redis_url(url)
    shown = f"{u} {u!r}"
    assert "S3cretPW" not in shown and "****" in shown
    back = parse_redis_url(str(u))
    assert (back.kind, back.hosts, back.master, back.db) == (u.kind, u.hosts, u.master, u.db)


def test_connect_refuses_a_bad_url_before_any_network() -> None:
    with pytest.raises(UrlError, match="unknown scheme 'http'"):
        Pantheon.connect("http://127.0.0.1:1", "prod")


def test_connect_refuses_bad_cluster_names() -> None:
    with pytest.raises(ValueError, match=r"contains '\{'"):
        Pantheon.connect("redis://127.0.0.1:1", "a{b}")
