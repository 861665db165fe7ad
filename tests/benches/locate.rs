//! Issue 19's `locate` target (≤ 5 ms at 10,000 nodes): what one `pantheon locate KEY` costs
//! in a cluster of 10,000 alive nodes (1,024 vnodes each: 10,240,000 ring points, under the
//! 16,777,216-point limit), with the real projector binary (a child process) and a
//! `redis-server` started for the run (never the machine's shared one).
//!
//! Measured in one run, side by side:
//! - `pantheon locate KEY --json` as a process, for an assigned key (answered from the key
//!   map) and for a key only the ring places (the CLI builds the ring);
//! - `redis-cli HGET <keymap> KEY` as a process: the floor of any one-shot command (process
//!   start, connect, one round trip), for the ratio;
//! - in this process, through the client library: `key_node_with_token` (one round trip),
//!   building the ring once (`refresh_ring`), and `locate` from the cached ring.
//!
//! ```text
//! cargo bench -p pantheon-tests --bench locate
//! PANTHEON_BENCH_NODES=3000 cargo bench -p pantheon-tests --bench locate
//! ```
//!
//! Without `--bench` (as in `cargo test --benches`) it runs with 200 nodes as a smoke test.

// A benchmark harness: a failed setup step should stop it with its reason.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use pantheon_client::Pantheon;
use pantheon_domain::entry::{Command, LogEntry};
use pantheon_domain::policy::PolicyChange;
use pantheon_domain::{EntryId, NodeId};
use pantheon_store::Layout;
use pantheon_test_support::TestRedis;
use pantheon_test_support::process::load_average;
use support::services::service;

const PROJECTOR_BIN: &str = env!("CARGO_BIN_EXE_pantheon-projector-under-test");
const CLI_BIN: &str = env!("CARGO_BIN_EXE_pantheon-cli-under-test");
const CLUSTER: &str = "locate";
const VNODES: u32 = 1024;
/// Runs of each one-shot command.
const RUNS: usize = 30;
const WAIT: Duration = Duration::from_secs(600);

fn nodes() -> usize {
    if let Ok(v) = std::env::var("PANTHEON_BENCH_NODES") {
        return v.parse().expect("a number of nodes");
    }
    if std::env::args().any(|a| a == "--bench") {
        10_000
    } else {
        200
    }
}

fn node(i: usize) -> NodeId {
    NodeId::new(&format!("node-{i:05}")).unwrap()
}

async fn wait_applied(con: &mut redis::aio::MultiplexedConnection, layout: &Layout, id: EntryId) {
    let started = Instant::now();
    while support::last_applied(con, layout).await < Some(id) {
        assert!(started.elapsed() < WAIT, "{id} not applied within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wall time of `runs` runs of a command; each must succeed and print `expect`.
fn time_runs(
    what: &str,
    runs: usize,
    mut cmd: impl FnMut() -> Process,
    expect: &str,
) -> Vec<Duration> {
    (0..runs)
        .map(|_| {
            let started = Instant::now();
            let out = cmd().stdin(Stdio::null()).output().unwrap();
            let took = started.elapsed();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains(expect),
                "{what}: {out:?}"
            );
            took
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.2} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    }
}

fn row(what: &str, mut runs: Vec<Duration>, floor: Option<Duration>) -> Duration {
    runs.sort();
    let p50 = percentile(&runs, 0.5);
    let ratio = floor.map_or(String::from("1.00×"), |f| {
        format!("{:.2}×", p50.as_secs_f64() / f.as_secs_f64())
    });
    println!(
        "| {what} | {} | {} | {} | {ratio} |",
        runs.len(),
        ms(p50),
        ms(percentile(&runs, 0.99))
    );
    p50
}

#[tokio::main]
async fn main() {
    let n = nodes();
    println!(
        "machine: {} cores; load average at start {}; {n} nodes × {VNODES} vnodes",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    let redis = TestRedis::start().await;
    let mut con = redis.connection().await;
    let layout = Layout::new("pantheon", CLUSTER);
    let _projector = service(PROJECTOR_BIN, &redis.url, CLUSTER, &[]);

    let setup = Instant::now();
    let mut entries = vec![LogEntry::new(Command::Policy(PolicyChange {
        vnodes: Some(VNODES),
        ..PolicyChange::default()
    }))];
    entries.extend((0..n).map(|i| {
        LogEntry::new(Command::Join {
            node: node(i),
            url: format!("http://127.0.0.1:9/n{i}/health"),
            weight: None,
            handoff: false,
        })
    }));
    for chunk in entries.chunks(1_000) {
        let mut pipe = redis::pipe();
        for e in chunk {
            pipe.add_command(pantheon_store::log::xadd(&layout, e));
        }
        let _: Vec<String> = pipe.query_async(&mut con).await.unwrap();
    }
    let last =
        support::answer_all(&mut con, &layout, (0..n).map(|i| (node(i), i as u64 + 1))).await;
    wait_applied(&mut con, &layout, last).await;
    let assigned = "tenant:assigned";
    let id: String = pantheon_store::log::xadd(
        &layout,
        &LogEntry::new(Command::Assign {
            keys: vec![assigned.to_owned()],
        }),
    )
    .query_async(&mut con)
    .await
    .unwrap();
    wait_applied(&mut con, &layout, id.parse().unwrap()).await;
    println!(
        "set-up (join, answer, assign): {:.1} s",
        setup.elapsed().as_secs_f64()
    );

    let env = |cmd: &mut Process| {
        support::services::without_pantheon_env(cmd);
        cmd.env("PANTHEON_REDIS_URL", &redis.url)
            .env("PANTHEON_CLUSTER", CLUSTER)
            .stderr(Stdio::null());
    };
    let port = redis
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    let keymap = layout.keymap();
    let floor_runs = time_runs(
        "redis-cli HGET",
        RUNS,
        || {
            let mut c = Process::new("redis-cli");
            c.args(["-p", &port, "HGET", &keymap, assigned]);
            c
        },
        "node-",
    );
    let locate = |key: &'static str| {
        move || {
            let mut c = Process::new(CLI_BIN);
            env(&mut c);
            c.args(["locate", key, "--json"]);
            c
        }
    };
    let cli_assigned = time_runs(
        "locate (assigned)",
        RUNS,
        locate(assigned),
        "\"assigned\": true",
    );
    let ring_runs = if n >= 5_000 { 3 } else { RUNS };
    let cli_ring = time_runs(
        "locate (ring)",
        ring_runs,
        locate("tenant:not-assigned"),
        "\"assigned\": false",
    );

    let client = Pantheon::connect(&redis.url, CLUSTER).await.unwrap();
    let lib_round_trip: Vec<Duration> = {
        let mut out = Vec::new();
        for _ in 0..1_000 {
            let started = Instant::now();
            let got = client.key_node_with_token(assigned).await.unwrap();
            out.push(started.elapsed());
            assert!(got.is_some());
        }
        out
    };
    let started = Instant::now();
    let ring = client.refresh_ring().await.unwrap();
    let ring_build = started.elapsed();
    let lib_cached: Vec<Duration> = (0..10_000)
        .map(|i| {
            let key = format!("tenant:{i}");
            let started = Instant::now();
            let owner = ring.owner(&key);
            let took = started.elapsed();
            assert!(owner.is_some());
            took
        })
        .collect();

    println!("\n| `locate`, {n} nodes | runs | p50 | p99 | p50 ÷ `redis-cli HGET` |");
    println!("|---|---:|---:|---:|---:|");
    let floor = row("`redis-cli HGET` (process; the floor)", floor_runs, None);
    row(
        "`pantheon locate` of an assigned key (process)",
        cli_assigned,
        Some(floor),
    );
    row(
        "`pantheon locate` of a key only the ring places (process)",
        cli_ring,
        Some(floor),
    );
    row(
        "client `key_node_with_token` (one round trip)",
        lib_round_trip,
        Some(floor),
    );
    println!(
        "| client `refresh_ring` (build the ring once: {} members × {} vnodes) | 1 | {} | | |",
        ring.members().len(),
        ring.vnodes(),
        ms(ring_build)
    );
    row(
        "client `ring.owner(key)` (cached ring)",
        lib_cached,
        Some(floor),
    );
    println!("\nload average at the end {}", load_average());
}
