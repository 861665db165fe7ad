"""Benchmark of the Python client against its targets, on a redis-server of its own (a free
port, never 6379):

* ``locate``: median ns per key over 100,000 keys (10 nodes, ring, 2048 vnodes), next to a
  dict lookup of the same keys in the same run (target: at most 5 us per key);
* ``distribute`` of 1,000,000 keys: keys/s from Python next to the Rust client's keys/s in
  the same run, the Rust side driven through ``pantheon distribute --file <keys> --no-wait``
  (the CLI's write path is the Rust client's ``distribute``; its time includes starting the
  process and reading the file). Target: Python at least 0.5x Rust;
* agreement with the placement vectors (target: 100%).

Run from the repository root after ``cargo build --release -p pantheon``::

    python clients/python/bench/bench.py --pantheon-bin target/release/pantheon
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import redis

from pantheon_client import Pantheon, placement

HERE = Path(__file__).resolve().parent
VECTORS = HERE.parent / "tests" / "vectors" / "placement.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def start_redis(tmp: str) -> tuple[subprocess.Popen[bytes], str]:
    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit("redis-server is not installed")
    port = free_port()
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
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    return proc, f"redis://127.0.0.1:{port}"


def median_ns_per_key(fn: object, keys: list[str], rounds: int) -> float:
    """The median over ``rounds`` of one pass over all keys, in ns per key."""
    call = fn  # a callable taking a key
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for key in keys:
            call(key)  # type: ignore[operator]
        samples.append((time.perf_counter_ns() - start) / len(keys))
    return statistics.median(samples)


def bench_locate(url: str, rounds: int) -> tuple[float, float]:
    cluster = "bench-locate-" + uuid.uuid4().hex[:8]
    members = " ".join(f"node-{i}=1" for i in range(10))
    r = redis.Redis.from_url(url)
    # The ring read model as the projector writes it (shared/store/src/readmodel.rs).
    r.hset(
        f"pantheon:{{{cluster}}}:ring",
        mapping={"strategy": "ring", "vnodes": "2048", "members": members, "version": "1"},
    )
    keys = [f"user:{i}" for i in range(100_000)]
    with Pantheon.connect(url, cluster) as p:
        p.locate(keys[0])  # builds the ring once
        located = median_ns_per_key(p.locate, keys, rounds)
    table = {k: "node-0" for k in keys}
    looked_up = median_ns_per_key(table.__getitem__, keys, rounds)
    r.delete(f"pantheon:{{{cluster}}}:ring")
    r.close()
    return located, looked_up


def vector_agreement() -> tuple[int, int]:
    cases = json.loads(VECTORS.read_text())["cases"]
    agree = total = 0
    for case in cases:
        built = placement.build(case["strategy"], case["vnodes"], case["members"])
        for key, owner in case["keys"]:
            total += 1
            agree += built.owner(key) == owner
    return agree, total


def bench_distribute(
    url: str, pantheon_bin: str, count: int, rounds: int, tmp: str
) -> tuple[list[float], list[float]]:
    keys = [f"tenant:{i:07d}" for i in range(count)]
    keys_file = Path(tmp) / "keys.txt"
    keys_file.write_text("\n".join(keys) + "\n")
    r = redis.Redis.from_url(url)
    python_rates, rust_rates = [], []
    for _ in range(rounds):
        cluster = "bench-py-" + uuid.uuid4().hex[:8]
        with Pantheon.connect(url, cluster) as p:
            start = time.perf_counter()
            ids = p.distribute(keys)
            python_rates.append(count / (time.perf_counter() - start))
        assert len(ids) == -(-count // 10_000)
        r.delete(f"pantheon:{{{cluster}}}:log")

        cluster = "bench-rs-" + uuid.uuid4().hex[:8]
        start = time.perf_counter()
        subprocess.run(
            [
                pantheon_bin,
                "distribute",
                "--file",
                str(keys_file),
                "--no-wait",
                "--redis-url",
                url,
                "--cluster",
                cluster,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        rust_rates.append(count / (time.perf_counter() - start))
        assert r.xlen(f"pantheon:{{{cluster}}}:log") == len(ids)
        r.delete(f"pantheon:{{{cluster}}}:log")
    r.close()
    return python_rates, rust_rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pantheon-bin", default="target/release/pantheon")
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_redis(tmp)
        try:
            located, looked_up = bench_locate(url, args.rounds)
            print(
                f"locate: median {located:.0f} ns/key (target <= 5000); dict lookup of the "
                f"same keys {looked_up:.0f} ns/key; ratio {located / looked_up:.1f}x"
            )
            agree, total = vector_agreement()
            print(f"vectors: {agree}/{total} agree ({100 * agree / total:.3f}%, target 100%)")
            py, rs = bench_distribute(url, args.pantheon_bin, args.keys, args.rounds, tmp)
            py_m, rs_m = statistics.median(py), statistics.median(rs)
            print(
                f"distribute {args.keys:,} keys: Python median {py_m:,.0f} keys/s, Rust "
                f"(pantheon distribute --file --no-wait) median {rs_m:,.0f} keys/s; "
                f"Python/Rust = {py_m / rs_m:.2f} (target >= 0.5)"
            )
            print(
                "  rounds, keys/s: Python "
                + ", ".join(f"{x:,.0f}" for x in py)
                + "; Rust "
                + ", ".join(f"{x:,.0f}" for x in rs)
            )
        finally:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
