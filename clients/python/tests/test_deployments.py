"""``redis+sentinel://`` and ``redis+cluster://`` URLs against real servers started here: a
Sentinel watching a master, and a one-node Redis Cluster serving every slot. The client finds
the master serving the cluster's slot and writes to it."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import free_port, wait_until

from pantheon_client import Pantheon, Unavailable


def start(args: list[str], cwd: str) -> subprocess.Popen[bytes]:
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    return subprocess.Popen([server, *args], cwd=cwd, stdout=subprocess.DEVNULL)


def answers(port: int) -> bool:
    try:
        with redis.Redis(port=port, socket_timeout=1) as r:
            return bool(r.ping())
    except redis.ConnectionError:
        return False


@pytest.fixture
def servers() -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        yield tmp, procs
        for proc in procs:
            proc.kill()
            proc.wait(timeout=10)


def cluster_ports() -> tuple[int, int]:
    """A free port and a free cluster bus port for a Redis Cluster node."""
    while True:
        port, bus = free_port(), free_port()
        if port != bus:
            return port, bus


def log_length(port: int, cluster: str) -> int:
    r: Any = redis.Redis(port=port)
    n = int(r.xlen(f"pantheon:{{{cluster}}}:log"))
    r.close()
    return n


def test_a_sentinel_url_finds_the_master(
    servers: tuple[str, list[subprocess.Popen[bytes]]], cluster: str
) -> None:
    tmp, procs = servers
    data, sentinel = free_port(), free_port()
    procs.append(start(["--port", str(data), "--bind", "127.0.0.1", "--save", ""], tmp))
    wait_until("the master to answer", lambda: answers(data))
    conf = Path(tmp) / "sentinel.conf"
    conf.write_text(f"port {sentinel}\nbind 127.0.0.1\nsentinel monitor pm 127.0.0.1 {data} 1\n")
    procs.append(start([str(conf), "--sentinel"], tmp))
    wait_until("the sentinel to answer", lambda: answers(sentinel))

    with Pantheon.connect(f"redis+sentinel://127.0.0.1:{sentinel}/pm", cluster) as p:
        p.distribute(["a", "b"])
        p.leave("n1")
    assert log_length(data, cluster) == 2

    with pytest.raises(Unavailable, match="does not know a master named 'other'"):
        Pantheon.connect(f"redis+sentinel://127.0.0.1:{sentinel}/other", cluster)


def test_a_cluster_url_finds_the_master_of_the_slot(
    servers: tuple[str, list[subprocess.Popen[bytes]]], cluster: str
) -> None:
    tmp, procs = servers
    port, bus = cluster_ports()
    procs.append(
        start(
            [
                *("--port", str(port), "--bind", "127.0.0.1", "--save", ""),
                *("--cluster-port", str(bus)),
                *("--cluster-enabled", "yes", "--cluster-config-file", f"{tmp}/nodes.conf"),
            ],
            tmp,
        )
    )
    wait_until("the cluster node to answer", lambda: answers(port))
    r: Any = redis.Redis(port=port)
    r.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
    wait_until(
        "the cluster to be ok",
        lambda: "cluster_state:ok" in str(r.execute_command("CLUSTER", "INFO")),
    )
    r.close()

    with Pantheon.connect(f"redis+cluster://127.0.0.1:{port}", cluster) as p:
        ids = p.distribute([f"k{i}" for i in range(20_001)])
        assert len(ids) == 3
        assert p.nodes() == []
    assert log_length(port, cluster) == 3


def test_nothing_listening_is_a_clear_error(cluster: str) -> None:
    port = free_port()
    with pytest.raises(Unavailable, match=f"redis://127.0.0.1:{port}: .*refused"):
        Pantheon.connect(f"redis://127.0.0.1:{port}", cluster, write_retries=0)
    with pytest.raises(Unavailable, match=f"no master found: 127.0.0.1:{port}"):
        Pantheon.connect(f"redis+cluster://127.0.0.1:{port}", cluster, write_retries=0)
