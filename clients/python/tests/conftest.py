"""Real servers for the tests: a redis-server started on a free port (never 6379) for the
session, a real ``pantheon up`` per test that needs a projector, and real HTTP nodes.

The ``pantheon`` binary is ``$PANTHEON_TEST_BIN``, else ``target/debug/pantheon`` of this
repository (``cargo build -p pantheon``). (``PANTHEON_TEST_*`` variables are the test
harnesses'; pantheon itself ignores them and refuses other ``PANTHEON_*`` names that are not
settings.) Every wait has a deadline, so no test hangs.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import pytest
import redis

REPO = Path(__file__).resolve().parents[3]
WAIT_S = 20.0
"""Longest any test waits for a server, the projector or a node's state."""


def wait_until(what: str, check: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    assert port != 6379
    return port


def pantheon_bin() -> Path:
    path = Path(os.environ.get("PANTHEON_TEST_BIN") or REPO / "target" / "debug" / "pantheon")
    if not path.is_file():
        pytest.fail(
            f"no pantheon binary at {path}: build it with `cargo build -p pantheon` or set "
            "PANTHEON_TEST_BIN"
        )
    return path


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A redis-server of its own on a free port of 127.0.0.1, without persistence."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [
                server,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                tmp,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            client = redis.Redis(port=port, socket_timeout=1)

            def answers() -> bool:
                try:
                    return bool(client.ping())
                except redis.ConnectionError:
                    return False

            wait_until("redis-server to answer", answers)
            client.close()
            yield f"redis://127.0.0.1:{port}"
        finally:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def cluster() -> str:
    """A cluster name no other test uses."""
    return "py-" + uuid.uuid4().hex[:12]


class Cli:
    """The real ``pantheon`` CLI against one cluster."""

    def __init__(self, url: str, cluster: str) -> None:
        self.url = url
        self.cluster = cluster
        self.bin = pantheon_bin()

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [str(self.bin), *args, "--redis-url", self.url, "--cluster", self.cluster],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert "panicked" not in out.stderr, out.stderr
        if check and out.returncode != 0:
            raise AssertionError(f"pantheon {args} exited {out.returncode}: {out.stderr}")
        return out

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json").stdout)

    def node_records(self) -> list[dict[str, Any]]:
        """``pantheon nodes --json``'s nodes as the clients' ``nodes()`` gives them: the CLI
        leaves ``load`` out for a node that never reported one, the clients give ``None``."""
        return [{"load": None, **n} for n in self.json("nodes")["nodes"]]


@pytest.fixture
def cli(redis_url: str, cluster: str) -> Cli:
    return Cli(redis_url, cluster)


@pytest.fixture
def up(cli: Cli, tmp_path: Path) -> Iterator[Cli]:
    """``pantheon up`` (projector and prober) for the test's cluster, with quick probes."""
    env = dict(os.environ)
    env.update(
        PANTHEON_PROBER__INTERVAL_MS="200",
        PANTHEON_PROBER__SUSPECT_INTERVAL_MS="100",
        PANTHEON_PROBER__DEAD_INTERVAL_MS="200",
        PANTHEON_PROBER__TIMEOUT_MS="300",
        PANTHEON_PROBER__GRACE_MS="300",
        PANTHEON_PROJECTOR__BLOCK_MS="100",
        PANTHEON_LOCAL_REDIS__START="false",
        RUST_LOG="info",
    )
    log = tmp_path / "up.log"
    with open(log, "w") as sink:
        proc = subprocess.Popen(
            [str(cli.bin), "up", "--redis-url", cli.url, "--cluster", cli.cluster],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    try:
        wait_until(
            "pantheon up to start its projector",
            lambda: "pantheon up: projector" in log.read_text() or proc.poll() is not None,
        )
        assert proc.poll() is None, f"pantheon up exited: {log.read_text()}"
        yield cli
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


class HealthNode:
    """A real HTTP node answering ``GET /health`` with 200 (or 503 once failing), with an
    ``X-Pantheon-Load: <load>`` header while ``load`` is set (ADR 0018)."""

    def __init__(self) -> None:
        node = self
        self.healthy = True
        self.load: str | None = None

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status = 200 if node.healthy and self.path == "/health" else 503
                self.send_response(status)
                load = node.load
                if load is not None:
                    self.send_header("X-Pantheon-Load", load)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port: int = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/health"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def http_nodes() -> Iterator[Callable[[], HealthNode]]:
    started: list[HealthNode] = []

    def start() -> HealthNode:
        node = HealthNode()
        started.append(node)
        return node

    yield start
    for node in started:
        node.stop()
