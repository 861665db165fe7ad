//! Issue 13 ("Many clusters, one fleet"): what serving many Pantheon clusters from few `up`
//! processes costs, and how fast a dead process's clusters are led again. Real `pantheon up
//! --clusters ...` release binaries, a real Redis started for the run (never the machine's
//! shared one), real HTTP health endpoints (one axum server answering every node's path),
//! loopback only.
//!
//! Steps (`PANTHEON_BENCH_STEPS`, default all):
//! 1. **big** — 1,000 clusters × 10 nodes (10,000 nodes, probed every second by default) in
//!    one `up` process: its CPU (cores) and RSS once every cluster is applied and probed,
//!    over a 30 s window; Redis's CPU and memory; probes per second (health server hits);
//!    loopback bytes per second.
//! 2. **three** — 30 clusters × 10 nodes shared by three `up` processes: their total CPU over
//!    30 s; then kill -9 of one and the time until every cluster applied a write again
//!    (default lease TTL 5 s).
//! 3. **capacity** — Redis memory per node, per key and per log entry (deltas of
//!    `used_memory`), for docs/capacity.md.
//!
//! ```text
//! cargo bench -p pantheon-tests --bench fleet
//! ```
//!
//! Without `--bench` (as in `cargo test --benches`) it runs at 1/20 scale with 5 s windows.

// A benchmark harness: a failed setup step should stop it with its reason.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use pantheon_domain::entry::{Command, LogEntry};
use pantheon_domain::{EntryId, NodeId};
use pantheon_store::Layout;
use pantheon_test_support::TestRedis;
use pantheon_test_support::process::{
    ChildGuard, cpu_time, load_average, memory_mib, release_binary,
};
use redis::aio::MultiplexedConnection;
use support::server::used_memory;

struct Scale {
    clusters: usize,
    nodes: usize,
    window: Duration,
    three_clusters: usize,
}

fn scale() -> Scale {
    if std::env::args().any(|a| a == "--bench") {
        Scale {
            clusters: 1000,
            nodes: 10,
            window: Duration::from_secs(30),
            three_clusters: 30,
        }
    } else {
        Scale {
            clusters: 50,
            nodes: 10,
            window: Duration::from_secs(5),
            three_clusters: 6,
        }
    }
}

fn step(name: &str) -> bool {
    std::env::var("PANTHEON_BENCH_STEPS").map_or(true, |s| s.split(',').any(|x| x.trim() == name))
}

/// One axum server answering 200 on every path; counts the requests.
async fn health_server() -> (u16, Arc<AtomicU64>) {
    let hits = Arc::new(AtomicU64::new(0));
    let counter = hits.clone();
    let app = Router::new().fallback(get(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        async { "ok" }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (port, hits)
}

fn names(n: usize, p: &str) -> Vec<String> {
    (0..n).map(|i| format!("{p}{i}")).collect()
}

/// Joins `nodes` nodes in each cluster (pipelined XADDs); returns each cluster's last id.
async fn join_all(
    con: &mut MultiplexedConnection,
    clusters: &[String],
    nodes: usize,
    port: u16,
) -> Vec<EntryId> {
    let mut last = Vec::new();
    for c in clusters {
        let layout = Layout::new("pantheon", c);
        let mut pipe = redis::pipe();
        for n in 0..nodes {
            let entry = LogEntry::new(Command::Join {
                node: NodeId::new(&format!("n{n}")).unwrap(),
                url: format!("http://127.0.0.1:{port}/{c}/n{n}/health"),
                weight: None,
                handoff: false,
            });
            pipe.add_command(pantheon_store::log::xadd(&layout, &entry));
        }
        let ids: Vec<String> = pipe.query_async(con).await.unwrap();
        last.push(ids.last().unwrap().parse().unwrap());
    }
    last
}

/// Waits until every cluster's checkpoint reached its id (bounded).
async fn wait_applied(con: &mut MultiplexedConnection, clusters: &[String], ids: &[EntryId]) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let mut pipe = redis::pipe();
        for c in clusters {
            pipe.cmd("HGET")
                .arg(Layout::new("pantheon", c).checkpoint())
                .arg("last_id");
        }
        let got: Vec<Option<String>> = pipe.query_async(con).await.unwrap();
        let behind = got
            .iter()
            .zip(ids)
            .filter(|(g, id)| {
                g.as_deref()
                    .and_then(|g| g.parse::<EntryId>().ok())
                    .is_none_or(|g| g < **id)
            })
            .count();
        if behind == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{behind} clusters not applied in 300 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn loopback_bytes() -> u64 {
    let dev = std::fs::read_to_string("/proc/net/dev").unwrap_or_default();
    dev.lines()
        .find(|l| l.trim_start().starts_with("lo:"))
        .and_then(|l| l.split(':').nth(1)?.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn up(bin: &std::path::Path, url: &str, clusters: &[String], id: &str) -> ChildGuard {
    let mut cmd = std::process::Command::new(bin);
    support::services::without_pantheon_env(&mut cmd);
    let child = cmd
        .args(["up", "--no-local-redis", "--redis-url", url, "--clusters"])
        .arg(clusters.join(","))
        .env("PANTHEON_PROJECTOR__INSTANCE", id)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn pantheon up");
    ChildGuard(child)
}

/// CPU seconds used by `pids` (and Redis) over `window`, as cores.
async fn measure(pids: &[u32], redis_pid: u32, window: Duration) -> (f64, f64) {
    let before: Duration = pids.iter().map(|p| cpu_time(*p)).sum();
    let redis_before = cpu_time(redis_pid);
    tokio::time::sleep(window).await;
    let after: Duration = pids.iter().map(|p| cpu_time(*p)).sum();
    let redis_after = cpu_time(redis_pid);
    (
        (after - before).as_secs_f64() / window.as_secs_f64(),
        (redis_after - redis_before).as_secs_f64() / window.as_secs_f64(),
    )
}

#[tokio::main]
async fn main() {
    let s = scale();
    let Some(bin) = release_binary("pantheon", "pantheon", "PANTHEON_BIN") else {
        return;
    };
    println!(
        "machine: {} cores; load average at start {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    let (port, hits) = health_server().await;
    let mut results: BTreeMap<&str, String> = BTreeMap::new();

    if step("big") {
        let redis = TestRedis::start().await;
        let mut con = redis.connection().await;
        let redis_pid = redis.server_pid().await;
        let clusters = names(s.clusters, "c");
        let mem0 = used_memory(&mut con).await;
        let ids = join_all(&mut con, &clusters, s.nodes, port).await;
        let started = Instant::now();
        let process = up(&bin, &redis.url, &clusters, "up-big");
        wait_applied(&mut con, &clusters, &ids).await;
        println!(
            "big: {} clusters × {} nodes applied {:?} after start",
            s.clusters,
            s.nodes,
            started.elapsed()
        );
        // Let every prober register and settle into its cadence.
        tokio::time::sleep(s.window / 3).await;
        let hits0 = hits.load(Ordering::Relaxed);
        let lo0 = loopback_bytes();
        let (cores, redis_cores) = measure(&[process.pid()], redis_pid, s.window).await;
        let probes = (hits.load(Ordering::Relaxed) - hits0) as f64 / s.window.as_secs_f64();
        let lo = (loopback_bytes() - lo0) as f64 / s.window.as_secs_f64();
        let rss = memory_mib(process.pid()).0;
        let mem = used_memory(&mut con).await;
        let line = format!(
            "{} clusters × {} nodes, one `up`: **{cores:.2} cores**, RSS **{rss:.0} MiB**; \
             redis-server {redis_cores:.2} cores, used_memory {:.1} MiB ({:.0} B per node incl. \
             log, events, read models); {probes:.0} probes/s ({:.1} µs of `up` CPU per probe); \
             loopback {:.1} MB/s ({:.0} B per probe, Redis traffic included); load {}",
            s.clusters,
            s.nodes,
            (mem - mem0) as f64 / 1048576.0,
            (mem - mem0) as f64 / (s.clusters * s.nodes) as f64,
            cores * 1e6 / probes.max(1.0),
            lo / 1e6,
            lo / probes.max(1.0),
            load_average()
        );
        println!("big: {line}");
        results.insert("big", line);
        drop(process);
    }

    if step("three") {
        let redis = TestRedis::start().await;
        let mut con = redis.connection().await;
        let redis_pid = redis.server_pid().await;
        let clusters = names(s.three_clusters, "t");
        let ids = join_all(&mut con, &clusters, s.nodes, port).await;
        let mut processes: Vec<ChildGuard> = ["up-1", "up-2", "up-3"]
            .iter()
            .map(|id| up(&bin, &redis.url, &clusters, id))
            .collect();
        wait_applied(&mut con, &clusters, &ids).await;
        tokio::time::sleep(s.window / 3).await;
        let pids: Vec<u32> = processes.iter().map(ChildGuard::pid).collect();
        let (cores, redis_cores) = measure(&pids, redis_pid, s.window).await;
        let line = format!(
            "{} clusters × {} nodes, three `up`: **{cores:.3} cores in total** ({:.1} % of one \
             core); redis-server {redis_cores:.3} cores; load {}",
            s.three_clusters,
            s.nodes,
            cores * 100.0,
            load_average()
        );
        println!("three: {line}");
        results.insert("three", line);

        // kill -9 one process; every cluster applies a write again.
        let mut victim = processes.remove(0);
        let killed = Instant::now();
        victim.0.kill().unwrap();
        let _ = victim.0.wait();
        let mut last = Vec::new();
        for c in &clusters {
            let layout = Layout::new("pantheon", c);
            let entry = LogEntry::new(Command::Leave {
                node: NodeId::new("n0").unwrap(),
            });
            let id: String = pantheon_store::log::xadd(&layout, &entry)
                .query_async(&mut con)
                .await
                .unwrap();
            last.push(id.parse().unwrap());
        }
        wait_applied(&mut con, &clusters, &last).await;
        let line = format!(
            "kill -9 of one of three `up` processes → all {} clusters applied a write again after \
             **{:.2} s** (lease TTL 5 s, fleet registration TTL = lease TTL)",
            s.three_clusters,
            killed.elapsed().as_secs_f64()
        );
        println!("failover: {line}");
        results.insert("failover", line);
    }

    if step("capacity") {
        let redis = TestRedis::start().await;
        let mut con = redis.connection().await;
        let layout = Layout::new("pantheon", "cap");
        // Keys: 100,000 assigned keys through the log and the projector.
        let cluster = vec!["cap".to_owned()];
        let joined = join_all(&mut con, &cluster, 10, port).await;
        let process = up(&bin, &redis.url, &cluster, "up-cap");
        wait_applied(&mut con, &cluster, &joined).await;
        let m0 = used_memory(&mut con).await;
        let mut last = EntryId::ZERO;
        for b in 0..10 {
            let keys: Vec<String> = (0..10_000).map(|i| format!("user:{b}:{i}")).collect();
            let id: String =
                pantheon_store::log::xadd(&layout, &LogEntry::new(Command::Assign { keys }))
                    .query_async(&mut con)
                    .await
                    .unwrap();
            last = id.parse().unwrap();
        }
        wait_applied(&mut con, &cluster, &[last]).await;
        let m1 = used_memory(&mut con).await;
        drop(process);
        // Log entries alone: 10,000 probe-sized entries in a stream nobody reads.
        let scratch = format!("{}:scratch", layout.log());
        let m2 = used_memory(&mut con).await;
        for _ in 0..10 {
            let mut pipe = redis::pipe();
            for _ in 0..1000 {
                pipe.cmd("XADD").arg(&scratch).arg("*").arg(&[
                    ("type", "probe"),
                    ("node", "web-1"),
                    ("epoch", "3"),
                    ("ok", "0"),
                    ("latency", "12"),
                    ("error", "refused"),
                    ("prober", "up-1"),
                ]);
            }
            let _: Vec<String> = pipe.query_async(&mut con).await.unwrap();
        }
        let m3 = used_memory(&mut con).await;
        let line = format!(
            "Redis memory: {:.0} B per assigned key (keymap, per-node set, `assign` entry in the \
             log, events); {:.0} B per probe-sized log entry",
            (m1 - m0) as f64 / 100_000.0,
            (m3 - m2) as f64 / 10_000.0
        );
        println!("capacity: {line}");
        results.insert("capacity", line);
    }

    println!("\n### Results\n");
    for (k, v) in &results {
        println!("- **{k}**: {v}");
    }
}
