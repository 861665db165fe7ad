//! Issue 21's feed targets, measured with the real projector and prober binaries (child
//! processes) against a `redis-server` started for the run (never the machine's shared one):
//!
//! 1. **Commit → callback latency** (`latency`): N `pantheon_worker::Worker`s in this process
//!    (N = 100, then 1,000), each following its own node's feed; one shared axum server here
//!    answers every node's health URL (`Health::external`), probed by the real prober at its
//!    default cadence. After a warm-up (100 keys per worker distributed, not counted), a fixed
//!    sequence of changes, one per 2 s slot: assign 1,000 new keys, drain a node, undrain it,
//!    set another node's weight to 3, back to 1 (repeated). The latency of each callback is
//!    its wall time (taken when `on_acquire`/`on_release` is called) minus the millisecond time
//!    of the feed entry it delivers: Redis assigns that id inside the projector's commit
//!    script, so it is the commit's own time, on the same machine clock. Callbacks are matched
//!    to feed entries per node, in order, by op and first key. Then the workers stop following
//!    (the shared health server keeps their nodes alive) and the same kinds of changes run
//!    again in the same slots: Redis CPU (`INFO cpu`, `used_cpu_sys + used_cpu_user`) per
//!    change with and without followers, and idle Redis CPU per second with each.
//! 2. **Feed bytes of one death** (`bytes`): 100 nodes, 1,000,000 keys assigned through the
//!    real projector, then one node dies (three failed probes). The feed entries the death
//!    wrote are read back with `XRANGE`: the sum of their field and value lengths against
//!    2 × (keys moved × mean key length), and the feeds' `MEMORY USAGE` before and after.
//!
//! ```text
//! cargo bench -p pantheon-tests --bench feeds
//! PANTHEON_BENCH_STEPS=bytes cargo bench -p pantheon-tests --bench feeds
//! ```
//!
//! `PANTHEON_BENCH_STEPS` (comma-separated: `latency`, `bytes`) runs only those steps.
//! `PANTHEON_BENCH_WORKERS` (comma-separated counts, default `100,1000`) sets the numbers of
//! workers. Without `--bench` (as in `cargo test --benches`) it runs at a small scale as a
//! smoke test. Results and the machine are in `docs/benchmarks.md`, "Feeds and workers".

// A benchmark harness: a failed setup step should stop it with its reason.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pantheon_client::Pantheon;
use pantheon_domain::entry::{Command, LogEntry, ProbeResult};
use pantheon_domain::policy::PolicyChange;
use pantheon_domain::{EntryId, NodeId};
use pantheon_store::feed::FeedEntry;
use pantheon_store::stream;
use pantheon_store::{Layout, RawEntry};
use pantheon_test_support::TestRedis;
use pantheon_test_support::process::{cpu_time, load_average};
use pantheon_worker::{AppError, Health, Ownership, Worker};
use redis::aio::MultiplexedConnection;
use support::append::{send_xadds, xadd_pipes};
use support::server::{info, info_field};
use support::services::{health_server, service};
use support::stream::connect_to;
use support::{answer_all, last_applied};

const PROJECTOR_BIN: &str = env!("CARGO_BIN_EXE_pantheon-projector-under-test");
const PROBER_BIN: &str = env!("CARGO_BIN_EXE_pantheon-prober-under-test");

/// Keys distributed per worker in the warm-up.
const KEYS_PER_WORKER: usize = 100;
/// New keys assigned by one `assign` change.
const NEW_KEYS: usize = 1_000;
/// The longest wait for a round's callbacks, for a join, for nodes to turn alive.
const ROUND_WAIT: Duration = Duration::from_secs(30);
const SETUP_WAIT: Duration = Duration::from_secs(180);
/// Redis's idle CPU is measured over this long, with and without followers.
const IDLE_WINDOW: Duration = Duration::from_secs(4);

#[derive(Debug, Clone)]
struct Scale {
    full: bool,
    workers: Vec<usize>,
    /// Changes per phase (a multiple of the 5 kinds).
    changes: usize,
    /// Each change gets a slot this long (so both phases take the same time).
    slot: Duration,
    death_nodes: usize,
    death_keys: usize,
}

fn scale() -> Scale {
    let full = std::env::args().any(|a| a == "--bench");
    let workers = std::env::var("PANTHEON_BENCH_WORKERS")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect());
    if full {
        Scale {
            full,
            workers: workers.unwrap_or_else(|| vec![100, 1000]),
            changes: 20,
            slot: Duration::from_secs(2),
            death_nodes: 100,
            death_keys: 1_000_000,
        }
    } else {
        Scale {
            full,
            workers: workers.unwrap_or_else(|| vec![20]),
            changes: 5,
            slot: Duration::from_secs(1),
            death_nodes: 10,
            death_keys: 20_000,
        }
    }
}

fn step(name: &str) -> bool {
    std::env::var("PANTHEON_BENCH_STEPS").map_or(true, |s| s.split(',').any(|x| x.trim() == name))
}

fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn node_name(i: usize) -> String {
    format!("w{i}")
}

fn node(i: usize) -> NodeId {
    NodeId::new(&node_name(i)).unwrap()
}

/// `used_cpu_sys + used_cpu_user` of the Redis server, in seconds.
async fn redis_cpu(con: &mut MultiplexedConnection) -> f64 {
    let cpu = info(con, "cpu").await;
    let f = |n| {
        info_field(&cpu, n)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    f("used_cpu_sys") + f("used_cpu_user")
}

/// Waits until the projector applied `id` (bounded).
async fn wait_applied(con: &mut MultiplexedConnection, layout: &Layout, id: EntryId) {
    let deadline = Instant::now() + SETUP_WAIT;
    while last_applied(con, layout).await.is_none_or(|last| last < id) {
        assert!(
            Instant::now() < deadline,
            "{id} not applied in {SETUP_WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `XRANGE key (after +` (all of it without `after`): the entries, parsed.
async fn xrange(
    con: &mut MultiplexedConnection,
    key: &str,
    after: Option<EntryId>,
) -> Vec<RawEntry> {
    let from = after.map_or("-".to_owned(), |id| format!("({id}"));
    let v: redis::Value = redis::cmd("XRANGE")
        .arg(key)
        .arg(from)
        .arg("+")
        .query_async(con)
        .await
        .unwrap();
    stream::parse_entries(v).unwrap()
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

// ---------------------------------------------------------------------------------------------
// 1. Commit → callback latency.

/// One callback, as the worker called it.
#[derive(Debug, Clone)]
struct Call {
    node: usize,
    acquire: bool,
    first: String,
    at_us: u64,
}

/// The application: records each callback's wall time, nothing else.
#[derive(Debug, Clone)]
struct Recorder {
    node: usize,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Recorder {
    fn record(&self, acquire: bool, keys: &[String]) {
        let at_us = wall_us();
        self.calls.lock().unwrap().push(Call {
            node: self.node,
            acquire,
            first: keys.first().cloned().unwrap_or_default(),
            at_us,
        });
    }
}

impl Ownership for Recorder {
    async fn on_acquire(
        &self,
        keys: &[String],
        _token: u64,
        _from: Option<&NodeId>,
    ) -> Result<(), AppError> {
        self.record(true, keys);
        Ok(())
    }

    async fn on_release(
        &self,
        keys: &[String],
        _token: u64,
        _to: Option<&NodeId>,
    ) -> Result<(), AppError> {
        self.record(false, keys);
        Ok(())
    }
}

/// The kinds of change, in the order they repeat.
const KINDS: [&str; 5] = ["assign", "drain", "undrain", "weight 3", "weight 1"];

/// Total entries of the first `n` nodes' feeds.
async fn feed_entries(con: &mut MultiplexedConnection, layout: &Layout, n: usize) -> u64 {
    let mut pipe = redis::pipe();
    for i in 0..n {
        pipe.cmd("XLEN").arg(layout.node_feed(&node(i)));
    }
    let lens: Vec<u64> = pipe.query_async(con).await.unwrap();
    lens.iter().sum()
}

/// Makes change number `r` (kind `KINDS[r % 5]`); the log entries it appended.
async fn change(client: &Pantheon, r: usize, n: usize, tag: &str) -> Vec<EntryId> {
    let cycle = r / KINDS.len();
    // A different node each cycle: the drained one, and the one whose weight changes.
    let drained = node_name((cycle * 37 + 1) % n);
    let weighted = node_name((cycle * 53 + n / 2) % n);
    match r % KINDS.len() {
        0 => client
            .distribute((0..NEW_KEYS).map(|j| format!("{tag}{r}:{j}")))
            .await
            .unwrap(),
        1 => vec![client.drain(&drained).await.unwrap()],
        2 => vec![client.undrain(&drained).await.unwrap()],
        3 => vec![client.set_weight(&weighted, 3).await.unwrap()],
        _ => vec![client.set_weight(&weighted, 1).await.unwrap()],
    }
}

#[derive(Debug, Default)]
struct Phase {
    changes: usize,
    feed_entries: u64,
    redis_cpu: f64,
    elapsed: Duration,
    /// Rounds whose callbacks did not all come within `ROUND_WAIT`.
    late_rounds: usize,
}

/// Runs `s.changes` changes, one per slot; with `calls`, waits in each slot until the
/// callbacks of every feed entry it wrote arrived. Returns the causes of each change.
#[allow(clippy::too_many_arguments)] // the phase's set-up, passed down as it is
async fn run_changes(
    s: &Scale,
    con: &mut MultiplexedConnection,
    layout: &Layout,
    client: &Pantheon,
    n: usize,
    tag: &str,
    calls: Option<(&Mutex<Vec<Call>>, &mut usize)>,
    causes: &mut BTreeMap<EntryId, &'static str>,
) -> Phase {
    let mut phase = Phase::default();
    let mut calls = calls;
    let started = Instant::now();
    let cpu0 = redis_cpu(con).await;
    for r in 0..s.changes {
        let slot = Instant::now();
        let before = feed_entries(con, layout, n).await;
        let ids = change(client, r, n, tag).await;
        for id in &ids {
            causes.insert(*id, KINDS[r % KINDS.len()]);
        }
        wait_applied(con, layout, *ids.last().unwrap()).await;
        let wrote = feed_entries(con, layout, n).await - before;
        phase.feed_entries += wrote;
        if let Some((calls, expected)) = calls.as_mut() {
            **expected += wrote as usize;
            let deadline = Instant::now() + ROUND_WAIT;
            while calls.lock().unwrap().len() < **expected {
                if Instant::now() > deadline {
                    phase.late_rounds += 1;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        phase.changes += 1;
        let used = slot.elapsed();
        if used < s.slot {
            tokio::time::sleep(s.slot - used).await;
        } else {
            eprintln!(
                "change {r} ({}) took {used:?}, longer than its slot",
                KINDS[r % 5]
            );
        }
    }
    phase.redis_cpu = redis_cpu(con).await - cpu0;
    phase.elapsed = started.elapsed();
    phase
}

/// Redis CPU seconds per second over an idle window.
async fn idle_cpu(con: &mut MultiplexedConnection) -> f64 {
    let cpu0 = redis_cpu(con).await;
    let t = Instant::now();
    tokio::time::sleep(IDLE_WINDOW).await;
    (redis_cpu(con).await - cpu0) / t.elapsed().as_secs_f64()
}

#[derive(Debug, Default)]
struct Latency {
    workers: usize,
    setup: Duration,
    warmup: Vec<f64>,
    /// Kind → latencies in ms.
    by_kind: BTreeMap<&'static str, Vec<f64>>,
    unmatched: usize,
    with: Phase,
    without: Phase,
    idle_with: f64,
    idle_without: f64,
    bench_cpu: Duration,
    projector_cpu: Duration,
    prober_cpu: Duration,
}

/// Matches each node's callbacks with its feed entries, in order, by op and first key; the
/// latencies (ms) by the kind of change that caused the entry.
async fn match_calls(
    con: &mut MultiplexedConnection,
    layout: &Layout,
    n: usize,
    calls: &[Call],
    causes: &BTreeMap<EntryId, &'static str>,
    out: &mut Latency,
) {
    let mut per_node: Vec<Vec<&Call>> = vec![Vec::new(); n];
    for c in calls {
        per_node[c.node].push(c);
    }
    for (i, mine) in per_node.iter().enumerate() {
        let feed = xrange(con, &layout.node_feed(&node(i)), None).await;
        let mut at = 0;
        for c in mine {
            let op = if c.acquire { "acquire" } else { "release" };
            let found = feed[at..].iter().position(|e| {
                e.get("op") == Some(op)
                    && FeedEntry::decode(e)
                        .ok()
                        .and_then(|f| f.keys.into_iter().next())
                        .as_deref()
                        == Some(c.first.as_str())
            });
            let Some(found) = found else {
                out.unmatched += 1;
                continue;
            };
            let entry = &feed[at + found];
            at += found + 1;
            let latency = c.at_us as f64 / 1e3 - entry.id.ms as f64;
            let cause: Option<EntryId> = entry.get("cause").and_then(|c| c.parse().ok());
            // A planned move hands off: the keys move at the worker's `released` entry, after
            // the change that asked for it, so its entries count for the latest change before.
            match cause.and_then(|c| causes.range(..=c).next_back().map(|(_, k)| k)) {
                Some(kind) => out.by_kind.entry(kind).or_default().push(latency),
                None => out.warmup.push(latency),
            }
        }
    }
}

async fn latency(s: &Scale, n: usize, health_port: u16) -> Latency {
    let mut out = Latency {
        workers: n,
        ..Latency::default()
    };
    let started = Instant::now();
    let redis = TestRedis::start().await;
    let cluster = redis.namespace().to_owned();
    let layout = Layout::new("pantheon", &cluster);
    let mut con = connect_to(&redis.url).await;
    let projector = service(
        PROJECTOR_BIN,
        &redis.url,
        &cluster,
        &[("PANTHEON_PROJECTOR__INSTANCE", "bench")],
    );
    let prober = service(
        PROBER_BIN,
        &redis.url,
        &cluster,
        &[("PANTHEON_PROBER__ID", "bench-prober")],
    );
    let client = Pantheon::connect(&redis.url, &cluster).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let calls: Arc<Mutex<Vec<Call>>> = Arc::default();

    // Every worker starts (joins and waits for the join to apply) at once.
    let starts = (0..n).map(|i| {
        let builder = Worker::builder(
            client.clone(),
            &node_name(i),
            dir.path().join(format!("{i}.json")),
        )
        .health(Health::external(&format!(
            "http://127.0.0.1:{health_port}/{cluster}/{i}/health"
        )))
        .join_timeout(SETUP_WAIT);
        let app = Recorder {
            node: i,
            calls: calls.clone(),
        };
        async move { builder.start(app).await }
    });
    let workers: Vec<Worker> = futures_util::future::join_all(starts)
        .await
        .into_iter()
        .map(|w| w.unwrap())
        .collect();
    let deadline = Instant::now() + SETUP_WAIT;
    loop {
        let alive = client
            .nodes()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.state == "alive")
            .count();
        if alive == n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{alive} of {n} nodes alive after {SETUP_WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Warm-up: every worker gets its first keys (and its feed a first entry to wait after).
    let keys: Vec<String> = (0..n * KEYS_PER_WORKER)
        .map(|i| format!("key:{i}"))
        .collect();
    let ids = client.distribute(keys).await.unwrap();
    wait_applied(&mut con, &layout, *ids.last().unwrap()).await;
    let mut expected = feed_entries(&mut con, &layout, n).await as usize;
    let deadline = Instant::now() + ROUND_WAIT;
    while calls.lock().unwrap().len() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the prober and the workers settle into their steady state.
    tokio::time::sleep(Duration::from_secs(2)).await;
    out.setup = started.elapsed();
    eprintln!("{n} workers: set up in {:?}", out.setup);

    let mut causes = BTreeMap::new();
    out.idle_with = idle_cpu(&mut con).await;
    let cpu0 = (
        cpu_time(std::process::id()),
        cpu_time(projector.pid()),
        cpu_time(prober.pid()),
    );
    out.with = run_changes(
        s,
        &mut con,
        &layout,
        &client,
        n,
        "a",
        Some((calls.as_ref(), &mut expected)),
        &mut causes,
    )
    .await;
    out.bench_cpu = cpu_time(std::process::id()) - cpu0.0;
    out.projector_cpu = cpu_time(projector.pid()) - cpu0.1;
    out.prober_cpu = cpu_time(prober.pid()) - cpu0.2;
    let recorded = calls.lock().unwrap().clone();
    match_calls(&mut con, &layout, n, &recorded, &causes, &mut out).await;

    // The same changes with nobody following: the workers stop (their nodes stay alive).
    futures_util::future::join_all(workers.into_iter().map(Worker::shutdown)).await;
    // Nobody answers hand-offs now: every move is immediate, as the keys moved above.
    let no_handoffs = LogEntry::new(Command::Policy(PolicyChange {
        handoff_timeout: Some(0),
        ..PolicyChange::default()
    }));
    let id: String = pantheon_store::log::xadd(&layout, &no_handoffs)
        .query_async(&mut con)
        .await
        .unwrap();
    wait_applied(&mut con, &layout, id.parse().unwrap()).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    out.idle_without = idle_cpu(&mut con).await;
    out.without = run_changes(s, &mut con, &layout, &client, n, "b", None, &mut causes).await;
    drop(prober);
    drop(projector);
    out
}

fn latency_report(runs: &[Latency], s: &Scale) {
    println!(
        "\n### Commit → callback latency ({} changes per run, one per {:?} slot)\n",
        s.changes, s.slot
    );
    println!(
        "| workers | callbacks | p50 | p99 | max | target p99 ≤ 100 ms at 1,000 | Redis CPU per change, followers / none | ratio | Redis idle CPU, followers / none |"
    );
    println!("|---:|---:|---:|---:|---:|---|---:|---:|---:|");
    for r in runs {
        let mut all: Vec<f64> = r.by_kind.values().flatten().copied().collect();
        all.sort_by(f64::total_cmp);
        let per_with = r.with.redis_cpu / r.with.changes.max(1) as f64;
        let per_without = r.without.redis_cpu / r.without.changes.max(1) as f64;
        let p99 = pct(&all, 99.0);
        let target = if r.workers >= 1000 {
            if p99 <= 100.0 { "met" } else { "**missed**" }
        } else {
            "—"
        };
        println!(
            "| {} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {target} | {:.1} ms / {:.1} ms | {:.2}× | {:.1}% / {:.1}% of a core |",
            r.workers,
            all.len(),
            pct(&all, 50.0),
            p99,
            all.last().copied().unwrap_or(f64::NAN),
            per_with * 1e3,
            per_without * 1e3,
            per_with / per_without.max(1e-9),
            r.idle_with * 100.0,
            r.idle_without * 100.0,
        );
    }
    println!("\nBy kind of change (callbacks, p50 / p99 / max in ms):\n");
    for r in runs {
        let mut parts = Vec::new();
        for kind in KINDS {
            let mut v = r.by_kind.get(kind).cloned().unwrap_or_default();
            v.sort_by(f64::total_cmp);
            parts.push(format!(
                "{kind}: {} cb, {:.1} / {:.1} / {:.1}",
                v.len(),
                pct(&v, 50.0),
                pct(&v, 99.0),
                v.last().copied().unwrap_or(f64::NAN)
            ));
        }
        println!("- {} workers: {}", r.workers, parts.join("; "));
    }
    println!();
    for r in runs {
        let mut warm = r.warmup.clone();
        warm.sort_by(f64::total_cmp);
        let changes = r.with.changes.max(1) as f64;
        println!(
            "- {} workers: set-up {:.1} s; warm-up distribution (not counted) {} callbacks, p50 {:.1} ms, p99 {:.1} ms; \
             feed entries per change {:.0} (followers) / {:.0} (none); unmatched callbacks {}; rounds with late callbacks {}; \
             phase wall {:.1} s / {:.1} s; Redis CPU per phase {:.3} s / {:.3} s; \
             per change with followers: bench process (workers + health server) {:.1} ms CPU, projector {:.1} ms, prober {:.1} ms",
            r.workers,
            r.setup.as_secs_f64(),
            warm.len(),
            pct(&warm, 50.0),
            pct(&warm, 99.0),
            r.with.feed_entries as f64 / changes,
            r.without.feed_entries as f64 / r.without.changes.max(1) as f64,
            r.unmatched,
            r.with.late_rounds,
            r.with.elapsed.as_secs_f64(),
            r.without.elapsed.as_secs_f64(),
            r.with.redis_cpu,
            r.without.redis_cpu,
            r.bench_cpu.as_secs_f64() * 1e3 / changes,
            r.projector_cpu.as_secs_f64() * 1e3 / changes,
            r.prober_cpu.as_secs_f64() * 1e3 / changes,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Feed bytes of one death.

fn death_node(i: usize) -> NodeId {
    NodeId::new(&format!("node-{i}")).unwrap()
}

/// `MEMORY USAGE` (all samples) of each key, summed.
async fn memory_usage(con: &mut MultiplexedConnection, keys: &[String]) -> u64 {
    let mut pipe = redis::pipe();
    for k in keys {
        pipe.cmd("MEMORY").arg("USAGE").arg(k).arg("SAMPLES").arg(0);
    }
    let got: Vec<Option<u64>> = pipe.query_async(con).await.unwrap();
    got.into_iter().flatten().sum()
}

/// Bytes of an entry's fields and values (what the XADD wrote after the id).
fn entry_bytes(e: &RawEntry) -> usize {
    e.fields.iter().map(|(k, v)| k.len() + v.len()).sum()
}

#[derive(Debug, Default)]
struct Bytes {
    nodes: usize,
    keys: usize,
    entries: usize,
    feeds: usize,
    written: usize,
    /// Bytes of the key list fields (name and value).
    key_field: usize,
    /// Entries whose keys were front-coded (`pkeys`) rather than a JSON array.
    prefixed: usize,
    moved: usize,
    acquired: usize,
    key_chars: usize,
    memory_before: u64,
    memory_after: u64,
    commit: Duration,
}

async fn feed_bytes(s: &Scale) -> Bytes {
    let nodes = s.death_nodes;
    let mut out = Bytes {
        nodes,
        keys: s.death_keys,
        ..Bytes::default()
    };
    let redis = TestRedis::start().await;
    let cluster = redis.namespace().to_owned();
    let layout = Layout::new("pantheon", &cluster);
    let log = layout.log();
    let mut con = connect_to(&redis.url).await;
    let joins: Vec<_> = (1..=nodes)
        .map(|i| {
            LogEntry::new(Command::Join {
                node: death_node(i),
                url: format!("http://127.0.0.1:9/{i}/health"),
                weight: None,
                handoff: false,
            })
            .encode()
        })
        .collect();
    send_xadds(&mut con, &xadd_pipes(&log, &joins, 100)).await;
    let last_join = answer_all(
        &mut con,
        &layout,
        (1..=nodes).map(|i| (death_node(i), i as u64)),
    )
    .await;
    let projector = service(
        PROJECTOR_BIN,
        &redis.url,
        &cluster,
        &[("PANTHEON_PROJECTOR__INSTANCE", "bench-bytes")],
    );
    wait_applied(&mut con, &layout, last_join).await;
    let assigns: Vec<_> = (0..s.death_keys)
        .map(|i| format!("user:{i}"))
        .collect::<Vec<_>>()
        .chunks(10_000)
        .map(|c| LogEntry::new(Command::Assign { keys: c.to_vec() }).encode())
        .collect();
    let ids = send_xadds(&mut con, &xadd_pipes(&log, &assigns, 10)).await;
    drop(assigns);
    wait_applied(&mut con, &layout, *ids.last().unwrap()).await;

    let feeds: Vec<String> = (1..=nodes)
        .map(|i| layout.node_feed(&death_node(i)))
        .collect();
    let mut newest = Vec::new();
    for f in &feeds {
        let last = xrange(&mut con, f, None).await.last().map(|e| e.id);
        newest.push(last);
    }
    out.memory_before = memory_usage(&mut con, &feeds).await;

    // node-1 dies: three failed probes, appended as the prober would.
    let probes: Vec<LogEntry> = (0..3)
        .map(|_| {
            LogEntry::new(Command::Probe(ProbeResult {
                node: death_node(1),
                epoch: 1,
                ok: false,
                status: None,
                latency_ms: 500,
                error: None,
                prober: Some("bench-prober".into()),
            }))
        })
        .collect();
    let started = Instant::now();
    pantheon_store::log::append_many_service(&mut con, &layout, &probes)
        .await
        .unwrap();
    let last = support::last_id(&mut con, &layout).await;
    wait_applied(&mut con, &layout, last).await;
    out.commit = started.elapsed();
    drop(projector);

    for (i, f) in feeds.iter().enumerate() {
        let written = xrange(&mut con, f, newest[i]).await;
        if !written.is_empty() {
            out.feeds += 1;
        }
        for e in &written {
            out.entries += 1;
            out.written += entry_bytes(e);
            let (field, list) = if let Some(p) = e.get("pkeys") {
                out.prefixed += 1;
                ("pkeys", p)
            } else {
                ("keys", e.get("keys").unwrap_or("[]"))
            };
            out.key_field += field.len() + list.len();
            let keys = FeedEntry::decode(e).unwrap().keys;
            if i == 0 && e.get("op") == Some("release") {
                out.moved += keys.len();
                out.key_chars += keys.iter().map(String::len).sum::<usize>();
            } else if e.get("op") == Some("acquire") {
                out.acquired += keys.len();
            }
        }
    }
    out.memory_after = memory_usage(&mut con, &feeds).await;
    assert!(out.moved > 0, "the death moved keys");
    out
}

fn bytes_report(b: &Bytes) {
    let mean = b.key_chars as f64 / b.moved.max(1) as f64;
    let bound = 2.0 * b.moved as f64 * mean;
    let excess = b.written as f64 - bound;
    let other = b.written as f64 - b.key_field as f64;
    println!(
        "\n### Feed bytes of one death ({} nodes, {} keys)\n",
        b.nodes, b.keys
    );
    println!(
        "| keys moved | mean key length | 2 × keys moved × mean length | bytes written to the feeds (fields + values) | ratio | excess per node ({} nodes) | feeds' MEMORY USAGE growth |",
        b.nodes
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {mean:.2} B | {:.0} B | {} B in {} entries on {} feeds | {:.3}× | {:.0} B | {} B |",
        b.moved,
        bound,
        b.written,
        b.entries,
        b.feeds,
        b.written as f64 / bound.max(1.0),
        excess / b.nodes as f64,
        b.memory_after as i64 - b.memory_before as i64,
    );
    println!(
        "\nOf the bytes written: the key lists {} B ({:.2} B per key written; {} of {} entries \
         front-coded), the other fields (op, token, cause, peer and the field names) \
         {other:.0} B ({:.0} B per entry). Acquired by the other nodes: {} keys. Death applied \
         {:.0} ms after the probes were appended.",
        b.key_field,
        b.key_field as f64 / (2.0 * b.moved.max(1) as f64),
        b.prefixed,
        b.entries,
        other / b.entries.max(1) as f64,
        b.acquired,
        b.commit.as_secs_f64() * 1e3,
    );
}

fn main() {
    let s = scale();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "machine: {} cores; load average at start {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    if !s.full {
        println!("smoke run at a small scale (use `cargo bench` for the real numbers)");
    }
    runtime.block_on(async {
        let started = Instant::now();
        if step("latency") {
            let port = health_server().await;
            let mut runs = Vec::new();
            for &n in &s.workers {
                runs.push(latency(&s, n, port).await);
                eprintln!("{n} workers done after {:?}", started.elapsed());
            }
            latency_report(&runs, &s);
        }
        if step("bytes") {
            let b = feed_bytes(&s).await;
            eprintln!("feed bytes done after {:?}", started.elapsed());
            bytes_report(&b);
        }
        println!(
            "\nload average at the end {}; whole run {:.0} s",
            load_average(),
            started.elapsed().as_secs_f64()
        );
    });
}
