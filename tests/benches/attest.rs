//! Issue 18: what proving service entries costs the projector (docs/adr/0011).
//!
//! Two clusters on one `redis-server` started for the run (never the machine's shared Redis),
//! each with N nodes (10,000 by default) that joined and answered, then the same workload of P
//! probe results (default 100,000: every node fails once, then answers twice, in rounds: each
//! result changes its health, so every one is folded and committed):
//!
//! * **attested**: the probes appended through the service's attested append (the script the
//!   prober uses, in runs of up to 256 per attested range), read back by the projector with
//!   the log (one `XREAD` of both streams);
//! * **unproven**: the same probes appended with a plain `XADD` to a cluster whose
//!   `legacy_until` lies after them, so the projector trusts them without reading any proof:
//!   the cost of the fold without authentication.
//!
//! The workload is appended before the projector of that cluster starts; the projector (the
//! real `pantheon-projector` binary, a child process) then folds the joins, and the CPU time it
//! uses (utime + stime from `/proc`) is read when its checkpoint has reached the last join and
//! again when it reached the last probe. The two clusters are run in turns, R rounds each (2),
//! and the ratio is of the summed CPU.
//!
//! ```text
//! cargo bench -p pantheon-tests --bench attest
//! ```
//!
//! Knobs: `PANTHEON_BENCH_NODES` (10,000), `PANTHEON_BENCH_PROBES` (100,000),
//! `PANTHEON_BENCH_ROUNDS` (2). Without `--bench` (as in `cargo test --benches`) it runs 200
//! nodes and 2,000 probes once, as a smoke test. Results: docs/benchmarks.md.

use std::process::{Command as Process, Stdio};
use std::time::Duration;

use pantheon_domain::entry::{Command, LogEntry, ProbeResult};
use pantheon_domain::policy::PolicyChange;
use pantheon_domain::{EntryId, NodeId, Strategy};
use pantheon_store::Layout;
use pantheon_test_support::TestRedis;
use pantheon_test_support::process::{ChildGuard, cpu_time};
use redis::aio::MultiplexedConnection;
use tokio::time::Instant;

const SERVICE: &str = env!("CARGO_BIN_EXE_pantheon-projector-under-test");
const WAIT: Duration = Duration::from_secs(600);
const PER_PIPE: usize = 1_000;

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn node(i: usize) -> NodeId {
    NodeId::new(&format!("n{i}")).expect("node id")
}

fn probe(i: usize, ok: bool) -> LogEntry {
    LogEntry::new(Command::Probe(ProbeResult {
        node: node(i),
        epoch: i as u64 + 1,
        ok,
        status: ok.then_some(200),
        latency_ms: 1,
        error: None,
        prober: Some("bench-prober".into()),
    }))
}

/// Appends `entries` in pipelines: attested (as the prober does) or plain; the last id.
async fn append(
    con: &mut MultiplexedConnection,
    layout: &Layout,
    entries: &[LogEntry],
    attested: bool,
) -> EntryId {
    for chunk in entries.chunks(PER_PIPE) {
        if attested {
            pantheon_store::log::append_many_service(con, layout, chunk)
                .await
                .expect("attested append");
        } else {
            let mut pipe = redis::pipe();
            for e in chunk {
                pipe.add_command(pantheon_store::log::xadd(layout, e))
                    .ignore();
            }
            pipe.query_async::<()>(con).await.expect("XADD");
        }
    }
    let last: Vec<pantheon_store::RawEntry> =
        pantheon_store::log::before(con, layout, EntryId::new(u64::MAX, u64::MAX), 1)
            .await
            .expect("last entry");
    last[0].id
}

async fn applied(con: &mut MultiplexedConnection, layout: &Layout) -> Option<EntryId> {
    let raw: Option<String> = redis::cmd("HGET")
        .arg(layout.checkpoint())
        .arg("last_id")
        .query_async(con)
        .await
        .expect("HGET");
    raw.and_then(|s| s.parse().ok())
}

async fn wait_applied(con: &mut MultiplexedConnection, layout: &Layout, id: EntryId) {
    let deadline = Instant::now() + WAIT;
    while applied(con, layout).await.is_none_or(|a| a < id) {
        assert!(
            Instant::now() < deadline,
            "{id} not applied within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn projector(redis_url: &str, cluster: &str) -> (ChildGuard, u32) {
    let mut cmd = Process::new(SERVICE);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PANTHEON_") {
            cmd.env_remove(k);
        }
    }
    let child = cmd
        .env("PANTHEON_REDIS_URL", redis_url)
        .env("PANTHEON_CLUSTER", cluster)
        .env("PANTHEON_PROJECTOR__INSTANCE", "bench-projector")
        .env("PANTHEON_PROJECTOR__PROBER_WATCHDOG_MS", "0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn pantheon-projector");
    let pid = child.id();
    (ChildGuard(child), pid)
}

/// One cluster's run: set-up, workload, projector; the projector's CPU for the probes.
async fn run(
    redis: &TestRedis,
    cluster: &str,
    nodes: usize,
    probes: usize,
    attested: bool,
) -> Duration {
    let mut con = redis.connection().await;
    let layout = Layout::new("pantheon", cluster);
    if !attested {
        // Everything in this log is trusted as written before attestation: no proof is read.
        let () = redis::cmd("HSET")
            .arg(layout.meta())
            .arg("legacy_until")
            .arg(EntryId::new(u64::MAX / 2, 0).to_string())
            .query_async(&mut con)
            .await
            .expect("HSET legacy_until");
    }
    let policy = LogEntry::new(Command::Policy(PolicyChange {
        strategy: Some(Strategy::Rendezvous),
        vnodes: Some(160),
        ..PolicyChange::default()
    }));
    let mut setup = vec![policy];
    setup.extend((0..nodes).map(|i| {
        LogEntry::new(Command::Join {
            node: node(i),
            url: format!("http://127.0.0.1:9/n{i}"),
            weight: None,
            handoff: false,
        })
    }));
    append(&mut con, &layout, &setup, false).await;
    let ready: Vec<LogEntry> = (0..nodes).map(|i| probe(i, true)).collect();
    let last_setup = append(&mut con, &layout, &ready, attested).await;
    // Fail once, answer twice (rise 2): every result changes the node's health.
    let workload: Vec<LogEntry> = (0..probes)
        .map(|j| {
            let (round, i) = (j / nodes, j % nodes);
            probe(i, round % 3 != 0)
        })
        .collect();
    let last = append(&mut con, &layout, &workload, attested).await;
    let (guard, pid) = projector(&redis.url, cluster);
    wait_applied(&mut con, &layout, last_setup).await;
    let before = cpu_time(pid);
    let started = Instant::now();
    wait_applied(&mut con, &layout, last).await;
    let cpu = cpu_time(pid).saturating_sub(before);
    println!(
        "  {:<9} {nodes} nodes, {probes} probes: projector CPU {:>7.2} s over {:>6.2} s wall",
        if attested { "attested" } else { "unproven" },
        cpu.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    drop(guard);
    cpu
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let nodes = knob("PANTHEON_BENCH_NODES", if full { 10_000 } else { 200 });
    let probes = knob("PANTHEON_BENCH_PROBES", if full { 100_000 } else { 2_000 });
    let rounds = knob("PANTHEON_BENCH_ROUNDS", if full { 2 } else { 1 });
    let redis = TestRedis::start().await;
    println!("attestation cost: {nodes} nodes, {probes} probe results, {rounds} rounds");
    let (mut plain, mut proven) = (Duration::ZERO, Duration::ZERO);
    for r in 0..rounds {
        plain += run(&redis, &format!("unproven-{r}"), nodes, probes, false).await;
        proven += run(&redis, &format!("attested-{r}"), nodes, probes, true).await;
    }
    println!(
        "projector CPU attested / unproven: {:.3} ({:.2} s / {:.2} s)",
        proven.as_secs_f64() / plain.as_secs_f64().max(0.001),
        proven.as_secs_f64(),
        plain.as_secs_f64()
    );
}
