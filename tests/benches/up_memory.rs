//! Issue 19: how much memory `pantheon up` takes per node, with no keys, and where it goes.
//!
//! Each run starts a `redis-server` for itself (never the machine's shared one) and the real
//! release `pantheon up` binary on it (a child process, one cluster), writes the run's policy,
//! reads the process's memory with the cluster empty, joins N nodes, waits until every one is
//! `alive` and the projector caught up, lets the prober probe them for a settle time (12 s by
//! default: 12 rounds at the 1 s interval, and longer than jemalloc's 10 s decay of freed
//! pages), and reads the memory again: `VmRSS`, `RssAnon` (heap and stacks, no binary pages),
//! `VmHWM` (peak), threads and open descriptors of the `up` process (the descriptors count the
//! prober's pooled keep-alive connections). RSS per node = (RSS(N) − RSS(0)) ÷ N, with RSS(0)
//! from the run of the same variant with no nodes.
//!
//! Node health endpoints are answered (200) by axum listeners in this process, on loopback.
//! Variants, to take the cost apart by measurement:
//!
//! * `ring2048`: the default placement (ring, 2,048 vnodes); more than 8,192 nodes would pass
//!   the 2^24-point cap, so its 10,000-node run is skipped;
//! * `ring2048-hosts`: the same with a listener (a host:port) per node, as in production (see
//!   `rendezvous-hosts`): the default `up` as deployed;
//! * `ring1024`: ring, 1,024 vnodes (as the `locate` and `load_cost` benches);
//! * `rendezvous`: no ring at all (its points are the difference with `ring1024`);
//! * `rendezvous-hosts`: rendezvous with a listener (a host:port) per node, as in production,
//!   where every node is its own host: the prober's HTTP pool keeps one idle keep-alive
//!   connection per host, so this costs one connection per node, where 8 shared listeners
//!   cost only as many as probes overlap (skipped when the descriptors it needs, two per node
//!   in this process, pass this process's limit);
//! * `ring1024-decay0`: `ring1024` with jemalloc returning freed pages at once
//!   (`_RJEM_MALLOC_CONF=dirty_decay_ms:0,muzzy_decay_ms:0`): what is left is live data and
//!   fragmentation, not freed pages kept for reuse.
//!
//! ```text
//! cargo bench -p pantheon-tests --bench up_memory
//! PANTHEON_BENCH_NODES=0,1000 PANTHEON_BENCH_VARIANTS=ring1024,rendezvous cargo bench -p pantheon-tests --bench up_memory
//! ```
//!
//! The binary is `target/release/pantheon` (`cargo build --release -p pantheon`, done by the
//! bench if needed; `PANTHEON_BIN` names another). Knobs: `PANTHEON_BENCH_NODES`
//! (`0,1000,5000,10000`), `PANTHEON_BENCH_VARIANTS` (all of the above),
//! `PANTHEON_BENCH_SETTLE` (seconds, 12), `PANTHEON_BENCH_UP_WRAPPER` (a command put in front
//! of `pantheon`, e.g. `heaptrack -o /tmp/up`: memory is then read from the wrapper's child
//! running `pantheon`, which is killed with SIGKILL at the measurement, so that the heap
//! profile's "leaked" allocations are the live heap of that moment; see docs/benchmarks.md for
//! a system-allocator build heaptrack can see). Without `--bench` (as in `cargo test
//! --benches`) it runs 0 and 50 nodes of two variants with a 2 s settle time, as a smoke test,
//! with the tests' own build of the CLI.
//!
//! `PANTHEON_BENCH_STEPS` picks the steps: `memory` (the above, the default), `snapshot`, or
//! both (`memory,snapshot`). **The `snapshot` step** measures the prober's timing while the
//! projector of the same `up` process writes big snapshots (issue 19: a 129 MB snapshot once
//! made the prober lag 2.56 s). It starts `up` on a Redis of its own with
//! `PANTHEON_PROJECTOR__SNAPSHOT_EVERY` low (50 entries) and `RUST_LOG=info`, its stderr copied
//! to a file (`PANTHEON_BENCH_UP_LOG`, else `pantheon-up-snapshot-<pid>.log` in the temporary
//! directory); joins 100 nodes (the default ring, 2,048 vnodes), answered by 8 listeners on a
//! runtime and a thread of their own in this process that record when each node's probe
//! arrives; waits until all are alive plus 3 s; assigns `PANTHEON_BENCH_KEYS` keys (5,000,000)
//! in `assign` entries of 10,000, as `scale.rs` distributes them, waits until they are applied,
//! appends `snapshot_every` entries that change nothing so that one more snapshot holds every
//! key, waits for it, and keeps probing for `PANTHEON_BENCH_TAIL` seconds (20). A snapshot's
//! write is timed from the projector's `wrote a snapshot` line (`bytes`, `chunks`, `chunks_ms`
//! = serializing and writing the chunks): from `chunks_ms` before this process read the line
//! to the line. It reports the gaps between consecutive probes of the same node (a healthy node
//! is probed every 1 s ± 10%) over the whole run, while the keys were folded, and overlapping
//! a snapshot write; the `prober_degraded` entries of the log and their `lag_ms`; `suspect` and
//! `died` events; the `up` process's CPU time and peak RSS. Without `--bench`: 200,000 keys,
//! `snapshot_every` 5, a 3 s tail (`PANTHEON_BENCH_SNAPSHOT_EVERY` sets it).
//!
//! ```text
//! PANTHEON_BENCH_STEPS=snapshot cargo bench -p pantheon-tests --bench up_memory
//! ```

// A benchmark harness: a failed setup step should stop it with its reason.
#![allow(clippy::unwrap_used)]

#[path = "up_memory/snapshot.rs"]
mod snapshot;
mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::Uri;
use axum::routing::get;
use pantheon_domain::entry::{Command, LogEntry};
use pantheon_domain::policy::PolicyChange;
use pantheon_domain::{EntryId, Strategy};
use pantheon_store::stream::Bound;
use pantheon_store::{Layout, readmodel};
use pantheon_test_support::TestRedis;
use pantheon_test_support::process::{
    ChildGuard, cpu_time, load_average, memory_mib, proc_status, release_binary, status_number,
};
use redis::aio::MultiplexedConnection;
use support::append::{joins, xadd, xadd_pipelined};
use support::last_applied;
use support::stream::connect_to;
use tokio::net::TcpListener;

/// The tests' own build of the CLI (the smoke run).
const CLI_UNDER_TEST: &str = env!("CARGO_BIN_EXE_pantheon-cli-under-test");
const CLUSTER: &str = "upmem";
/// Listeners shared by all nodes (every variant but `rendezvous-hosts`).
const SHARED_LISTENERS: usize = 8;
const JOINS_PER_PIPE: usize = 500;
/// The longest any one wait may take.
const WAIT: Duration = Duration::from_secs(300);
/// Descriptors this process keeps for itself (Redis, the runtime, the shared listeners).
const FD_RESERVE: usize = 512;
/// The ring's cap (`shared/domain/src/limits.rs`): joins beyond it are refused.
const MAX_RING_POINTS: usize = 1 << 24;
const DECAY0: &str = "dirty_decay_ms:0,muzzy_decay_ms:0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hosts {
    /// `SHARED_LISTENERS` listeners, node `n` on listener `n mod 8`.
    Shared,
    /// One listener per node.
    PerNode,
}

#[derive(Debug, Clone)]
struct Variant {
    name: &'static str,
    strategy: Strategy,
    vnodes: u32,
    hosts: Hosts,
    /// Extra environment of the `up` process.
    env: &'static [(&'static str, &'static str)],
}

fn variants() -> Vec<Variant> {
    let v = |name, strategy, vnodes, hosts, env| Variant {
        name,
        strategy,
        vnodes,
        hosts,
        env,
    };
    vec![
        v("ring2048", Strategy::Ring, 2048, Hosts::Shared, &[]),
        v("ring2048-hosts", Strategy::Ring, 2048, Hosts::PerNode, &[]),
        v("ring1024", Strategy::Ring, 1024, Hosts::Shared, &[]),
        v("rendezvous", Strategy::Rendezvous, 1024, Hosts::Shared, &[]),
        v(
            "rendezvous-hosts",
            Strategy::Rendezvous,
            1024,
            Hosts::PerNode,
            &[],
        ),
        v(
            "ring1024-decay0",
            Strategy::Ring,
            1024,
            Hosts::Shared,
            &[("_RJEM_MALLOC_CONF", DECAY0)],
        ),
    ]
}

fn knob(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Memory per node, no keys (the default).
    Memory,
    /// The prober's timing while the projector writes big snapshots.
    Snapshot,
}

#[derive(Debug)]
struct Plan {
    full: bool,
    steps: Vec<Step>,
    nodes: Vec<usize>,
    variants: Vec<Variant>,
    settle: Duration,
    wrapper: Vec<String>,
    snapshot: SnapshotPlan,
}

/// The `snapshot` step's knobs.
#[derive(Debug, Clone, Copy)]
struct SnapshotPlan {
    keys: usize,
    /// The projector's `snapshot_every` (applied entries between snapshots).
    every: u64,
    /// How long the nodes stay probed after the last snapshot.
    tail: Duration,
}

impl Plan {
    fn from_env() -> Plan {
        let full = std::env::args().any(|a| a == "--bench");
        let steps = knob("PANTHEON_BENCH_STEPS").map_or_else(
            || vec![Step::Memory],
            |v| {
                v.split(',')
                    .map(|s| match s.trim() {
                        "memory" => Step::Memory,
                        "snapshot" => Step::Snapshot,
                        other => panic!(
                            "PANTHEON_BENCH_STEPS: unknown {other:?}; known: memory, snapshot"
                        ),
                    })
                    .collect()
            },
        );
        let number = |name: &str, full_default: u64, smoke_default: u64| -> u64 {
            knob(name).map_or(if full { full_default } else { smoke_default }, |v| {
                v.trim()
                    .replace('_', "")
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}: a number"))
            })
        };
        let snapshot = SnapshotPlan {
            keys: number("PANTHEON_BENCH_KEYS", 5_000_000, 200_000) as usize,
            every: number("PANTHEON_BENCH_SNAPSHOT_EVERY", 50, 5).max(1),
            tail: Duration::from_secs(number("PANTHEON_BENCH_TAIL", 20, 3)),
        };
        let nodes: Vec<usize> = knob("PANTHEON_BENCH_NODES")
            .map(|v| {
                v.split(',')
                    .map(|n| n.trim().parse().expect("PANTHEON_BENCH_NODES: 0,1000,5000"))
                    .collect()
            })
            .unwrap_or_else(|| {
                if full {
                    vec![0, 1_000, 5_000, 10_000]
                } else {
                    vec![0, 50]
                }
            });
        let all = variants();
        let variants = match knob("PANTHEON_BENCH_VARIANTS") {
            Some(v) => v
                .split(',')
                .map(|name| {
                    all.iter()
                        .find(|x| x.name == name.trim())
                        .unwrap_or_else(|| {
                            panic!(
                                "PANTHEON_BENCH_VARIANTS: unknown {name:?}; known: {}",
                                all.iter().map(|x| x.name).collect::<Vec<_>>().join(", ")
                            )
                        })
                        .clone()
                })
                .collect(),
            None if full => all,
            None => all
                .into_iter()
                .filter(|x| x.name == "ring1024" || x.name == "rendezvous-hosts")
                .collect(),
        };
        let settle = knob("PANTHEON_BENCH_SETTLE")
            .map(|v| Duration::from_secs(v.parse().expect("PANTHEON_BENCH_SETTLE: seconds")))
            .unwrap_or(Duration::from_secs(if full { 12 } else { 2 }));
        let wrapper = knob("PANTHEON_BENCH_UP_WRAPPER")
            .map(|w| w.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        Plan {
            full,
            steps,
            nodes,
            variants,
            settle,
            wrapper,
            snapshot,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The node side.

async fn health(State(hits): State<Arc<AtomicU64>>) -> &'static str {
    hits.fetch_add(1, Ordering::Relaxed);
    "ok"
}

/// `count` axum listeners on 127.0.0.1 answering 200 on every path; their addresses.
async fn listeners(count: usize, hits: &Arc<AtomicU64>) -> Vec<String> {
    serve(
        count,
        Router::new().fallback(get(health)).with_state(hits.clone()),
    )
    .await
}

/// `count` listeners on 127.0.0.1 serving `app` on this runtime; their addresses.
async fn serve(count: usize, app: Router) -> Vec<String> {
    let mut addrs = Vec::with_capacity(count);
    for _ in 0..count {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        addrs.push(listener.local_addr().expect("local addr").to_string());
        let app = app.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
    }
    addrs
}

/// This process's limit on open descriptors (`/proc/self/limits`).
fn fd_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        .unwrap_or(1024)
}

// ---------------------------------------------------------------------------------------------
// The `up` process and its memory.

/// `PANTHEON_BIN`, else the release `pantheon` of this bench's target directory, built if
/// needed, whatever profile the bench itself was built in (`--profile dev` runs from
/// `<target>/debug/deps`, where `release_binary` would find the debug build).
fn release_pantheon() -> Option<PathBuf> {
    if knob("PANTHEON_BIN").is_some() {
        return release_binary("pantheon", "pantheon", "PANTHEON_BIN");
    }
    // <target>/<profile>/deps/up_memory-<hash>
    let exe = std::env::current_exe().ok()?;
    let target = exe.ancestors().nth(3)?.to_path_buf();
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("building: cargo build --release -p pantheon");
    let built = Process::new(cargo)
        .args(["build", "--release", "-p", "pantheon"])
        .current_dir(workspace)
        .env("CARGO_TARGET_DIR", &target)
        .status();
    if !built.is_ok_and(|s| s.success()) {
        eprintln!("could not build pantheon (set PANTHEON_BIN to a binary to use that instead)");
        return None;
    }
    let path = target.join("release").join("pantheon");
    path.exists().then_some(path)
}

fn up(
    bin: &PathBuf,
    wrapper: &[String],
    url: &str,
    env: &[(&str, &str)],
    stderr: Stdio,
) -> ChildGuard {
    let mut cmd = match wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = Process::new(first);
            c.args(rest).arg(bin);
            c
        }
        None => Process::new(bin),
    };
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("PANTHEON_") || k.starts_with("_RJEM_") || k.starts_with("MALLOC_") {
            cmd.env_remove(&*k);
        }
    }
    cmd.args([
        "--redis-url",
        url,
        "--cluster",
        CLUSTER,
        "up",
        "--no-local-redis",
    ])
    .env("PANTHEON_PROJECTOR__INSTANCE", "bench-up")
    .env("PANTHEON_PROBER__ID", "bench-up")
    .env("RUST_LOG", "warn")
    // No ./pantheon.toml of the bench's working directory.
    .current_dir(std::env::temp_dir())
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(stderr);
    for (k, v) in env {
        cmd.env(k, v);
    }
    ChildGuard(
        cmd.spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display())),
    )
}

/// The process running `bin`: `pid` itself, or without a wrapper, the first of its
/// descendants whose executable is `bin` (a wrapper such as heaptrack runs helpers beside it).
fn measured(pid: u32, bin: &PathBuf) -> u32 {
    let want = std::fs::canonicalize(bin).ok();
    let mut queue = vec![pid];
    while !queue.is_empty() {
        let p = queue.remove(0);
        if std::fs::read_link(format!("/proc/{p}/exe")).ok() == want {
            return p;
        }
        let children =
            std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")).unwrap_or_default();
        queue.extend(
            children
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok()),
        );
    }
    pid
}

#[derive(Debug, Clone, Copy, Default)]
struct Memory {
    rss_mib: f64,
    hwm_mib: f64,
    anon_mib: f64,
    threads: usize,
    fds: usize,
}

fn memory(pid: u32) -> Memory {
    let status = proc_status(pid);
    let (rss_mib, hwm_mib) = memory_mib(pid);
    Memory {
        rss_mib,
        hwm_mib,
        anon_mib: status_number(&status, "RssAnon:") / 1024.0,
        threads: status_number(&status, "Threads:") as usize,
        fds: std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count),
    }
}

// ---------------------------------------------------------------------------------------------
// Redis helpers.

async fn wait_applied(con: &mut MultiplexedConnection, layout: &Layout, id: EntryId, what: &str) {
    wait_applied_within(con, layout, id, what, WAIT).await;
}

async fn wait_applied_within(
    con: &mut MultiplexedConnection,
    layout: &Layout,
    id: EntryId,
    what: &str,
    limit: Duration,
) {
    let started = Instant::now();
    while last_applied(con, layout).await.is_none_or(|l| l < id) {
        assert!(
            started.elapsed() < limit,
            "{what}: not applied within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `n` nodes are `alive` (at most `WAIT` after `started`), saying every 15 s
/// how far it got.
async fn wait_alive(
    con: &mut MultiplexedConnection,
    layout: &Layout,
    n: usize,
    started: Instant,
    what: &str,
) {
    let mut said = Instant::now();
    loop {
        let (alive, text) = states(con, layout).await;
        if alive == n {
            return;
        }
        assert!(
            started.elapsed() < WAIT,
            "{what}: only {alive} of {n} nodes alive after {WAIT:?} ({text})"
        );
        if said.elapsed() > Duration::from_secs(15) {
            said = Instant::now();
            eprintln!("    {what}: {text}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Joins node `node-<i>` at `urls[i]` for every `i`, in pipelines, and waits until the
/// projector applied them; `last` when there is none.
async fn join_all(
    con: &mut MultiplexedConnection,
    layout: &Layout,
    urls: &[String],
    mut last: EntryId,
) {
    if !urls.is_empty() {
        let joins = joins(urls, |i| format!("node-{i:05}"));
        last = xadd_pipelined(con, &layout.log(), &joins, JOINS_PER_PIPE).await;
    }
    wait_applied(con, layout, last, "the joins").await;
    let records: usize = redis::cmd("HLEN")
        .arg(layout.nodes())
        .query_async(con)
        .await
        .unwrap();
    assert_eq!(
        records,
        urls.len(),
        "joins refused (see the `rejected` stream)"
    );
}

async fn states(con: &mut MultiplexedConnection, layout: &Layout) -> (usize, String) {
    let records = readmodel::nodes(con, layout).await.expect("node records");
    let mut by: Vec<(String, usize)> = Vec::new();
    for r in &records {
        match by.iter_mut().find(|(k, _)| *k == r.state) {
            Some((_, n)) => *n += 1,
            None => by.push((r.state.clone(), 1)),
        }
    }
    let alive = by.iter().find(|(k, _)| k == "alive").map_or(0, |(_, n)| *n);
    let text = by
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    (alive, text)
}

// ---------------------------------------------------------------------------------------------
// One run: one variant, one N.

#[derive(Debug, Clone)]
struct Run {
    variant: &'static str,
    nodes: usize,
    /// The same process with the cluster empty (policy applied), then after the settle time.
    empty: Memory,
    full: Memory,
    /// Probes answered per second during the settle time.
    probes_per_s: f64,
    /// From the first join until every node was alive.
    alive_after: Duration,
}

async fn run_one(
    bin: &PathBuf,
    plan: &Plan,
    variant: &Variant,
    n: usize,
    urls: &[String],
    hits: &AtomicU64,
) -> Run {
    let redis = TestRedis::start().await;
    let layout = Layout::new("pantheon", CLUSTER);
    let mut con = connect_to(&redis.url).await;
    let process = up(
        bin,
        &plan.wrapper,
        &redis.url,
        variant.env,
        Stdio::inherit(),
    );
    let policy = LogEntry::new(Command::Policy(PolicyChange {
        strategy: Some(variant.strategy),
        vnodes: Some(variant.vnodes),
        ..PolicyChange::default()
    }));
    let id = xadd(&mut con, &layout.log(), &policy).await;
    wait_applied(&mut con, &layout, id, "the policy").await;
    // The prober registers and reads the (empty) nodes every 100 ms: give it a moment.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = measured(process.pid(), bin);
    let empty = memory(pid);

    let started = Instant::now();
    join_all(&mut con, &layout, &urls[..n], id).await;
    wait_alive(&mut con, &layout, n, started, variant.name).await;
    let alive_after = started.elapsed();
    let end = support::last_id(&mut con, &layout).await;
    wait_applied(&mut con, &layout, end, "the probes").await;
    let hits0 = hits.load(Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(plan.settle).await;
    let probes_per_s = (hits.load(Ordering::Relaxed) - hits0) as f64 / t0.elapsed().as_secs_f64();
    let full = memory(pid);
    let (alive, text) = states(&mut con, &layout).await;
    assert_eq!(
        alive, n,
        "{}: nodes left alive while settling: {text}",
        variant.name
    );
    if !plan.wrapper.is_empty() {
        // A heap profiler's "leaked" allocations are then what was live at this moment (a
        // graceful stop would free the state first); the wrapper writes its file and exits.
        let _ = Process::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    drop(process);
    Run {
        variant: variant.name,
        nodes: n,
        empty,
        full,
        probes_per_s,
        alive_after,
    }
}

// ---------------------------------------------------------------------------------------------
// Report.

fn per_node_kib(rss: f64, base: f64, n: usize) -> String {
    if n == 0 {
        "–".into()
    } else {
        format!("{:.1} KiB", (rss - base) * 1024.0 / n as f64)
    }
}

fn report(runs: &[Run], plan: &Plan) {
    println!();
    println!(
        "### Memory of `up` per node (no keys; settle {} s after every node was alive)",
        plan.settle.as_secs()
    );
    for variant in &plan.variants {
        let rows: Vec<&Run> = runs.iter().filter(|r| r.variant == variant.name).collect();
        if rows.is_empty() {
            continue;
        }
        let base = rows.iter().find(|r| r.nodes == 0).map(|r| r.full);
        println!();
        println!(
            "#### {} ({:?}, {} vnodes, {}{})",
            variant.name,
            variant.strategy,
            variant.vnodes,
            match variant.hosts {
                Hosts::Shared => format!("{SHARED_LISTENERS} shared health listeners"),
                Hosts::PerNode => "a health listener per node".into(),
            },
            variant
                .env
                .iter()
                .map(|(k, v)| format!(", {k}={v}"))
                .collect::<String>()
        );
        println!();
        println!(
            "| N | RSS | per node (RSS − RSS(0)) ÷ N | RssAnon | per node (anon) | peak (VmHWM) | \
             same process before the joins: RSS → per node | threads | open fds | probes/s | \
             all alive after |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in rows {
            let (rss0, anon0) = base.map_or((f64::NAN, f64::NAN), |b| (b.rss_mib, b.anon_mib));
            println!(
                "| {} | {:.1} MiB | **{}** | {:.1} MiB | {} | {:.1} MiB | {:.1} MiB → {} | {} | {} | \
                 {:.0} | {:.1} s |",
                r.nodes,
                r.full.rss_mib,
                per_node_kib(r.full.rss_mib, rss0, r.nodes),
                r.full.anon_mib,
                per_node_kib(r.full.anon_mib, anon0, r.nodes),
                r.full.hwm_mib,
                r.empty.rss_mib,
                per_node_kib(r.full.rss_mib, r.empty.rss_mib, r.nodes),
                r.full.threads,
                r.full.fds,
                r.probes_per_s,
                r.alive_after.as_secs_f64()
            );
        }
    }
}

/// The memory step: every variant at every N.
async fn memory_runs(bin: &PathBuf, plan: &Plan) -> Vec<Run> {
    let hits = Arc::new(AtomicU64::new(0));
    let max_n = plan.nodes.iter().copied().max().unwrap_or(0);
    let shared = listeners(SHARED_LISTENERS, &hits).await;
    let shared_urls: Vec<String> = (0..max_n)
        .map(|n| format!("http://{}/health/{n}", shared[n % shared.len()]))
        .collect();
    // Two descriptors per node here (the listener, the prober's connection to it).
    let per_node_max = fd_limit().saturating_sub(FD_RESERVE) / 2;
    let per_node_count = if plan.variants.iter().any(|v| v.hosts == Hosts::PerNode) {
        plan.nodes
            .iter()
            .copied()
            .filter(|n| *n <= per_node_max)
            .max()
            .unwrap_or(0)
    } else {
        0
    };
    let per_node_urls: Vec<String> = listeners(per_node_count, &hits)
        .await
        .into_iter()
        .map(|a| format!("http://{a}/health"))
        .collect();
    let mut runs = Vec::new();
    for variant in &plan.variants {
        for &n in &plan.nodes {
            let urls = match variant.hosts {
                Hosts::Shared => &shared_urls,
                Hosts::PerNode if n > per_node_urls.len() => {
                    eprintln!(
                        "  {} at {n} nodes: skipped (a listener per node needs {} \
                         descriptors here; the limit allows {per_node_max} nodes)",
                        variant.name,
                        2 * n + FD_RESERVE
                    );
                    continue;
                }
                Hosts::PerNode => &per_node_urls,
            };
            if variant.strategy == Strategy::Ring && n * variant.vnodes as usize > MAX_RING_POINTS {
                eprintln!(
                    "  {} at {n} nodes: skipped ({} ring points pass the 2^24 cap: joins \
                     would be refused)",
                    variant.name,
                    n * variant.vnodes as usize
                );
                continue;
            }
            let r = run_one(bin, plan, variant, n, urls, &hits).await;
            eprintln!(
                "  {} at {n} nodes: RSS {:.1} MiB (anon {:.1}, peak {:.1}; {:.1} MiB before \
                 the joins), {} fds, {:.0} probes/s, alive after {:.1} s",
                variant.name,
                r.full.rss_mib,
                r.full.anon_mib,
                r.full.hwm_mib,
                r.empty.rss_mib,
                r.full.fds,
                r.probes_per_s,
                r.alive_after.as_secs_f64()
            );
            runs.push(r);
        }
    }
    runs
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1048576.0);
    format!("{cores} cores, {mem_gib:.1} GiB")
}

fn main() {
    let plan = Plan::from_env();
    if !plan.full {
        println!("smoke run (use `cargo bench` for the real numbers)");
    }
    if knob(pantheon_test_support::URL_ENV).is_some() {
        eprintln!(
            "warning: {} is set: measuring on that (possibly shared) Redis",
            pantheon_test_support::URL_ENV
        );
    }
    let bin = if plan.full {
        match release_pantheon() {
            Some(bin) => bin,
            None => return,
        }
    } else {
        knob("PANTHEON_BIN").map_or_else(|| CLI_UNDER_TEST.into(), PathBuf::from)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let load_start = load_average();
    let started = Instant::now();
    let (runs, snapshot) = runtime.block_on(async {
        let runs = if plan.steps.contains(&Step::Memory) {
            memory_runs(&bin, &plan).await
        } else {
            Vec::new()
        };
        let snapshot = if plan.steps.contains(&Step::Snapshot) {
            Some(snapshot::run_snapshot(&bin, &plan).await)
        } else {
            None
        };
        (runs, snapshot)
    });
    let load_end = load_average();
    // <target>/<profile dir>/deps/up_memory-<hash>
    let profile = std::env::current_exe()
        .ok()
        .and_then(|exe| {
            Some(
                exe.ancestors()
                    .nth(2)?
                    .file_name()?
                    .to_string_lossy()
                    .into_owned(),
            )
        })
        .unwrap_or_default();
    let knobs: Vec<String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("PANTHEON_BENCH_") || k == "PANTHEON_BIN")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!();
    println!("### Run");
    println!();
    println!("- machine: {}", machine());
    println!("- binary: `{}`", bin.display());
    println!(
        "- command: `{}{}`",
        if knobs.is_empty() {
            String::new()
        } else {
            format!("{} ", knobs.join(" "))
        },
        if !plan.full {
            "cargo test -p pantheon-tests --bench up_memory"
        } else if profile == "debug" {
            "cargo bench --profile dev -p pantheon-tests --bench up_memory"
        } else {
            "cargo bench -p pantheon-tests --bench up_memory"
        }
    );
    println!("- load average at start: {load_start}; at the end: {load_end}");
    println!("- total time {:.0} s", started.elapsed().as_secs_f64());
    if plan.steps.contains(&Step::Memory) {
        report(&runs, &plan);
    }
    if let Some(run) = &snapshot {
        snapshot::report_snapshot(run, &plan.snapshot);
    }
}
