"""``rediss://`` against a real redis-server that speaks only TLS, with certificates made here
by ``openssl``: the CA file is trusted, a server the client cannot verify is refused, and a
server that requires client certificates takes the client's ``cert_file``/``key_file``."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from conftest import free_port, wait_until

from pantheon_client import Pantheon, Tls, Unavailable


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def certificate(dir: Path, name: str, san: str) -> None:
    """``name.crt``/``name.key`` signed by the CA in ``dir``."""
    (dir / f"{name}.ext").write_text(f"subjectAltName={san}\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=dir)  # fmt: skip
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "1",
            "-extfile", f"{name}.ext", cwd=dir)  # fmt: skip


@pytest.fixture(scope="module")
def certs() -> Iterator[Path]:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is not installed (apt-get install openssl)")
    with tempfile.TemporaryDirectory() as tmp:
        dir = Path(tmp)
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
                "-out", "ca.crt", "-days", "1", "-subj", "/CN=test-ca", cwd=dir)  # fmt: skip
        certificate(dir, "server", "IP:127.0.0.1")
        certificate(dir, "client", "DNS:client")
        yield dir


def tls_server(
    certs: Path, tmp: str, require_client_cert: bool
) -> tuple[int, subprocess.Popen[bytes]]:
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [server, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(certs / "server.crt"), "--tls-key-file", str(certs / "server.key"),
         "--tls-ca-cert-file", str(certs / "ca.crt"),
         "--tls-auth-clients", "yes" if require_client_cert else "no",
         "--save", "", "--appendonly", "no", "--dir", tmp],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    raw = redis.Redis(
        host="127.0.0.1",
        port=port,
        ssl=True,
        ssl_ca_certs=str(certs / "ca.crt"),
        ssl_certfile=str(certs / "client.crt"),
        ssl_keyfile=str(certs / "client.key"),
        socket_timeout=1,
    )

    def answers() -> bool:
        try:
            return bool(raw.ping())
        except (redis.ConnectionError, ssl.SSLError):
            return False

    wait_until("the TLS redis-server to answer", answers)
    raw.close()
    return port, proc


@pytest.fixture
def tls_redis(certs: Path) -> Iterator[int]:
    with tempfile.TemporaryDirectory() as tmp:
        port, proc = tls_server(certs, tmp, require_client_cert=False)
        try:
            yield port
        finally:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def mutual_tls_redis(certs: Path) -> Iterator[int]:
    with tempfile.TemporaryDirectory() as tmp:
        port, proc = tls_server(certs, tmp, require_client_cert=True)
        try:
            yield port
        finally:
            proc.kill()
            proc.wait(timeout=10)


def test_a_trusted_ca_file_connects_and_writes_reach_the_log(
    certs: Path, tls_redis: int, cluster: str
) -> None:
    url = f"rediss://127.0.0.1:{tls_redis}"
    with Pantheon.connect(url, cluster, tls=Tls(ca_file=str(certs / "ca.crt"))) as p:
        entry = p.join("node-1", url="http://127.0.0.1:9/health")
        assert p.nodes() == []
    raw = redis.Redis(
        host="127.0.0.1", port=tls_redis, ssl=True, ssl_ca_certs=str(certs / "ca.crt")
    )
    logged: list[tuple[bytes, dict[bytes, bytes]]] = raw.xrange(f"pantheon:{{{cluster}}}:log")  # type: ignore[assignment]
    assert [i.decode() for i, _ in logged] == [str(entry)]


def test_a_server_the_client_cannot_verify_is_refused_with_a_reason(
    tls_redis: int, cluster: str
) -> None:
    with pytest.raises(Unavailable) as e:
        Pantheon.connect(f"rediss://127.0.0.1:{tls_redis}", cluster)
    assert str(tls_redis) in str(e.value)


def test_client_certificates_are_presented_when_the_server_requires_them(
    certs: Path, mutual_tls_redis: int, cluster: str
) -> None:
    url = f"rediss://127.0.0.1:{mutual_tls_redis}"
    mutual = Tls(
        ca_file=str(certs / "ca.crt"),
        cert_file=str(certs / "client.crt"),
        key_file=str(certs / "client.key"),
    )
    with Pantheon.connect(url, cluster, tls=mutual) as p:
        assert p.nodes() == []
    with pytest.raises(Unavailable):
        Pantheon.connect(url, cluster, tls=Tls(ca_file=str(certs / "ca.crt")))


def test_the_asyncio_client_refuses_an_unverifiable_server_the_same_way(
    tls_redis: int, cluster: str
) -> None:
    from pantheon_client import aio

    async def connect() -> None:
        await aio.Pantheon.connect(f"rediss://127.0.0.1:{tls_redis}", cluster)

    with pytest.raises(Unavailable) as e:
        asyncio.run(connect())
    assert str(tls_redis) in str(e.value)
