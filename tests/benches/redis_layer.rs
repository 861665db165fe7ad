//! Issue 9 ("Run on the Redis that production uses"): what the Redis layer
//! (`pantheon_store::{handle, resolve, deployment, log}`) costs, and how fast Pantheon follows
//! a failover, against real servers started for the run (never the machine's shared Redis):
//!
//! 1. **Single server.** 1,000,000 keys through the client's `distribute` (100 calls of
//!    10,000 keys, one `assign` entry each), from the first call until the projector's
//!    checkpoint reaches the last entry. Side by side, on fresh servers in the same round:
//!    raw pipelined `XADD`s of the same 100 entries (plain `redis` multiplexed connection, 10
//!    entries per pipeline, built before the clock starts) with the same projector, and the
//!    projector bench's raw `HSET` + `SADD` baselines (no log, no projector).
//! 2. **Redis Cluster** (3 masters + 3 replicas, fresh per run): the same distribution with
//!    durability 1 (`WAIT 1` after each `XADD`, the default there) and 0, and raw pipelined
//!    `XADD`s straight to the slot's master.
//! 3. **Failover.** A writer appends one small entry (`distribute` of one key) every ~10 ms
//!    through the client; the master is killed with SIGKILL (Redis Cluster: `kill_master_of`
//!    / `wait_promoted`; Sentinel: `kill_master` / `wait_new_master`). Measured: when the
//!    first write after the kill is acknowledged and when it is applied (the checkpoint,
//!    polled every 5 ms by an observer that reconnects at once), relative to the promotion;
//!    for durability 1 the killed node is restarted right after the promotion (on Sentinel
//!    once the sentinel has ended the failover: see `TestSentinel::restart`), so the
//!    new master gets a replica, and the time until its replication link is up is reported.
//!    Every failover runs on a fresh deployment; an attempt whose deployment misbehaves (a
//!    harness wait panics) is reported with its reason and replaced, at most twice per
//!    configuration.
//!
//! ```text
//! cargo bench -p pantheon-tests --bench redis_layer
//! ```
//!
//! Knobs: `PANTHEON_BENCH_STEPS=single,cluster,failover` runs a subset;
//! `PANTHEON_BENCH_ROUNDS` (default 3) distribution rounds; `PANTHEON_BENCH_TRIALS` (default
//! 3) failovers per configuration. Without `--bench` (as in `cargo test --benches`) it runs
//! at 1/50 scale with one round and two failovers, as a smoke test. Results and the machine
//! they were taken on are in `docs/benchmarks.md`.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pantheon_client::{ClientError, JoinOp, Pantheon};
use pantheon_domain::entry::Command;
use pantheon_domain::{EntryId, LogEntry, NodeId, State};
use pantheon_projector::ProjectorConfig;
use pantheon_store::deployment::DEFAULT_WAIT_TIMEOUT;
use pantheon_store::{Deployment, Durability, Layout, readmodel};
use pantheon_test_support::TestRedis;
use pantheon_test_support::baseline;
use pantheon_test_support::process::{cpu_time, load_average};
use pantheon_test_support::redis_cluster::TestCluster;
use pantheon_test_support::sentinel::TestSentinel;
use redis::aio::MultiplexedConnection;
use support::append::{send_xadds, xadd_pipes};
use support::server::{info, info_field};
use support::stream::connect_to;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

// Measure with the allocator the services ship with.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const NODES: usize = 10;
const KEYS_PER_ENTRY: usize = 10_000;
/// Raw writer: `assign` entries per XADD pipeline (as in the projector bench).
const ENTRIES_PER_PIPE: usize = 10;
/// Baseline (a): single-key commands per pipeline (as in the projector bench).
const BASELINE_PIPE_COMMANDS: usize = 10_000;
/// Bound on any one distribution reaching the checkpoint.
const APPLY_WAIT: Duration = Duration::from_secs(240);
/// The single-server rate recorded before the Redis layer took deployments: the median of
/// three runs of the projector bench's assign step (raw pipelined XADDs + projector) at
/// commit edff505 (554,399 / 519,167 / 507,974 keys/s; docs/benchmarks.md, "Projector").
const RECORDED_SINGLE: f64 = 519_167.0;

/// Failover: the writer's pause between writes.
const WRITE_EVERY: Duration = Duration::from_millis(10);
/// Failover: bounds on the writer (count and time), and on one write.
const MAX_WRITES: usize = 6_000;
const WRITER_FOR: Duration = Duration::from_secs(120);
const WRITE_TIMEOUT: Duration = Duration::from_secs(15);
/// Failover: the observer's checkpoint poll and the ROLE / link pollers' period.
const OBSERVE_EVERY: Duration = Duration::from_millis(5);
const ROLE_EVERY: Duration = Duration::from_millis(10);
/// Failover: bound on each wait of the harness (promotion, restart, first applied write).
const FAILOVER_WAIT: Duration = Duration::from_secs(30);
/// Failover: writes before the kill.
const WARM_UP: Duration = Duration::from_secs(1);
/// Failover: how long the writer goes on after the first write after the kill is applied.
const COOL_DOWN: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
struct Scale {
    keys: usize,
    rounds: usize,
    trials: usize,
    full: bool,
}

// ---------------------------------------------------------------------------------------------
// Small helpers.

/// A short-lived connection to `addr` (`host:port`) with bounded connect and reply times.
async fn quick(addr: &str) -> Option<MultiplexedConnection> {
    let client = redis::Client::open(format!("redis://{addr}")).ok()?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(Some(Duration::from_millis(500)));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .ok()
}

async fn server_pid(addr: &str) -> u32 {
    let mut con = connect_to(&format!("redis://{addr}")).await;
    let info = info(&mut con, "server").await;
    info_field(&info, "process_id")
        .and_then(|p| p.parse().ok())
        .expect("process_id in INFO server")
}

fn node(i: usize) -> NodeId {
    NodeId::new(&format!("node-{i}")).expect("node id")
}

fn join(i: usize) -> Vec<(&'static str, String)> {
    LogEntry::new(Command::Join {
        node: node(i),
        url: format!("http://127.0.0.1:{}/health", 9000 + i),
        weight: None,
        handoff: false,
    })
    .encode()
}

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user:{i}")).collect()
}

/// Polls the checkpoint every 2 ms (plain connection to the master) until it reaches `id`.
async fn wait_checkpoint(con: &mut MultiplexedConnection, layout: &Layout, id: EntryId) {
    let deadline = Instant::now() + APPLY_WAIT;
    loop {
        let last = tokio::time::timeout(
            Duration::from_secs(10),
            readmodel::load_checkpoint(con, layout),
        )
        .await
        .expect("checkpoint read within 10 s")
        .expect("checkpoint")
        .and_then(|c| c.last_id);
        if last.is_some_and(|last| last >= id) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "entry {id} not applied within {APPLY_WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A projector task; dropping it (also when a trial panics) stops the task.
struct Projector {
    token: CancellationToken,
    handle: Option<JoinHandle<()>>,
}

impl Drop for Projector {
    fn drop(&mut self) {
        self.token.cancel();
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }
}

/// The projector in this process with its default settings (as the services run it).
fn projector(url: &str, cluster: &str) -> Projector {
    let mut config = ProjectorConfig::new(Deployment::from_url(url).expect("url"), cluster);
    config.instance = "bench".into();
    let token = CancellationToken::new();
    let t = token.clone();
    let handle = tokio::spawn(async move {
        pantheon_projector::run(config, t)
            .await
            .expect("projector run");
    });
    Projector {
        token,
        handle: Some(handle),
    }
}

impl Projector {
    async fn stop(mut self) {
        self.token.cancel();
        if let Some(handle) = self.handle.take() {
            let abort = handle.abort_handle();
            if tokio::time::timeout(Duration::from_secs(10), handle)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

fn durability(replicas: u32) -> Durability {
    Durability {
        replicas,
        timeout: DEFAULT_WAIT_TIMEOUT,
    }
}

async fn client(url: &str, cluster: &str, replicas: u32) -> Pantheon {
    Pantheon::builder(url, cluster)
        .durability(durability(replicas))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("client for {cluster} on {url}: {e}"))
}

fn ms_of(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Signed milliseconds from `from` to `to`.
fn since(from: Instant, to: Instant) -> f64 {
    if to >= from {
        ms_of(to - from)
    } else {
        -ms_of(from - to)
    }
}

fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 { format!("-{out}") } else { out }
}

fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

fn range(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(*v), hi.max(*v))
        })
}

fn fmt_ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v.abs() >= 100.0 => format!("{} ms", thousands(v)),
        Some(v) => format!("{v:.1} ms"),
        None => "–".to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// 1 and 2: distribution.

/// Who writes the 100 `assign` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// Raw pipelined XADDs on a plain connection to the master, built before the clock.
    Raw,
    /// `Pantheon::distribute`, one call per 10,000 keys, with this many replicas to WAIT for.
    Client(u32),
}

impl Writer {
    fn label(self) -> String {
        match self {
            Writer::Raw => format!(
                "raw XADD, {ENTRIES_PER_PIPE} entries/pipeline (plain `redis` connection) + projector"
            ),
            Writer::Client(r) => format!(
                "client `distribute`, one call per {} keys, durability {r} + projector",
                thousands(KEYS_PER_ENTRY as f64)
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Dist {
    keys: usize,
    /// First write → last write acknowledged.
    writes: Duration,
    /// First write → checkpoint at the last entry.
    total: Duration,
    cpu_bench: Duration,
    /// The master serving the cluster's slot, and all redis-servers of the deployment.
    cpu_master: Duration,
    cpu_redis: Duration,
}

impl Dist {
    fn rate(&self) -> f64 {
        self.keys as f64 / self.total.as_secs_f64().max(1e-9)
    }
}

/// One distribution of `keys` into Pantheon cluster `cluster` on the deployment at `url`
/// (projector in this process, fresh data): 10 joins first (not timed), then the clock.
async fn distribution(
    url: &str,
    cluster: &str,
    redis_pids: &[(String, u32)],
    writer: Writer,
    keys: &[String],
) -> Dist {
    let layout = Layout::new("pantheon", cluster);
    let log = layout.log();
    let replicas = match writer {
        Writer::Raw => 0,
        Writer::Client(r) => r,
    };
    let client = client(url, cluster, replicas).await;
    let master = client.redis().master().expect("connected to the master");
    let master_addr = master.to_string();
    let master_url = format!("redis://{master_addr}");
    let mut raw = connect_to(&master_url).await;
    let mut poll = connect_to(&master_url).await;

    let joins: Vec<_> = (1..=NODES).map(join).collect();
    send_xadds(&mut raw, &xadd_pipes(&log, &joins, NODES)).await;
    let answered = (1..=NODES).map(|i| (node(i), i as u64));
    let last_ready = support::answer_all(&mut raw, &layout, answered).await;
    let projector = projector(url, cluster);
    wait_checkpoint(&mut poll, &layout, last_ready).await;

    let pipes = match writer {
        Writer::Raw => {
            let entries: Vec<_> = keys
                .chunks(KEYS_PER_ENTRY)
                .map(|c| LogEntry::new(Command::Assign { keys: c.to_vec() }).encode())
                .collect();
            xadd_pipes(&log, &entries, ENTRIES_PER_PIPE)
        }
        Writer::Client(_) => Vec::new(),
    };
    let cpu = || {
        (
            cpu_time(std::process::id()),
            redis_pids
                .iter()
                .filter(|(addr, _)| *addr == master_addr)
                .map(|(_, pid)| cpu_time(*pid))
                .sum::<Duration>(),
            redis_pids
                .iter()
                .map(|(_, pid)| cpu_time(*pid))
                .sum::<Duration>(),
        )
    };
    let cpu0 = cpu();
    let started = Instant::now();
    let last = match writer {
        Writer::Raw => *send_xadds(&mut raw, &pipes)
            .await
            .last()
            .expect("assign entries"),
        Writer::Client(_) => {
            let mut last = None;
            for chunk in keys.chunks(KEYS_PER_ENTRY) {
                let ids = client
                    .distribute(chunk.iter().cloned())
                    .await
                    .unwrap_or_else(|e| panic!("distribute: {e}"));
                last = ids.last().copied();
            }
            last.expect("assign entries")
        }
    };
    let writes = started.elapsed();
    wait_checkpoint(&mut poll, &layout, last).await;
    let total = started.elapsed();
    let cpu1 = cpu();
    drop(pipes);
    projector.stop().await;
    let owned: u64 = redis::cmd("HLEN")
        .arg(layout.keymap())
        .query_async(&mut poll)
        .await
        .expect("HLEN");
    assert_eq!(owned as usize, keys.len(), "every key is in the keymap");
    Dist {
        keys: keys.len(),
        writes,
        total,
        cpu_bench: cpu1.0.saturating_sub(cpu0.0),
        cpu_master: cpu1.1.saturating_sub(cpu0.1),
        cpu_redis: cpu1.2.saturating_sub(cpu0.2),
    }
}

async fn single_server(writer: Writer, keys: &[String]) -> Dist {
    let redis = TestRedis::start().await;
    let addr = redis
        .url
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let pid = server_pid(&addr).await;
    distribution(&redis.url, redis.namespace(), &[(addr, pid)], writer, keys).await
}

async fn on_cluster(writer: Writer, keys: &[String]) -> Dist {
    let redis = TestCluster::start().await;
    let name = redis.cluster_names_per_master("dist").await[0].clone();
    let mut pids = Vec::new();
    for seed in redis.seeds() {
        let pid = server_pid(&seed).await;
        pids.push((seed, pid));
    }
    distribution(&redis.url(), &name, &pids, writer, keys).await
}

/// The projector bench's baselines: the read models written straight with pipelined `HSET`
/// and `SADD` (owners computed before the clock), no log, no projector. (a) one key per
/// command, (b) one variadic `HSET` and one `SADD` per node per 10,000 keys.
async fn hset_baselines(keys: &[String]) -> (Dist, Dist) {
    let redis = TestRedis::start().await;
    let layout = Layout::new("baseline", redis.namespace());
    let mut con = connect_to(&redis.url).await;
    let mut state = State::default();
    for i in 1..=NODES {
        let entry = LogEntry::decode(&join(i)).expect("join decodes");
        state
            .apply(EntryId::new(1, i as u64), &entry)
            .expect("join applies");
        let answered = support::answered(node(i), i as u64);
        state
            .apply(EntryId::new(2, i as u64), &answered)
            .expect("first probe applies");
    }
    let owners: Vec<NodeId> = keys
        .iter()
        .map(|k| state.placement().owner(k).expect("an owner").clone())
        .collect();
    let sets: HashMap<NodeId, String> = state
        .nodes()
        .map(|n| (n.id.clone(), layout.node_keys(&n.id)))
        .collect();
    let keymap = layout.keymap();
    let placed = baseline::place(keys, &owners, NodeId::as_str, &sets);

    let single = baseline::single_key_pipelines(&keymap, &placed, BASELINE_PIPE_COMMANDS);
    let took = baseline::run(&mut con, &single).await;
    let a = Dist {
        keys: keys.len(),
        writes: took,
        total: took,
        ..Dist::default()
    };
    drop(single);
    baseline::delete(&mut con, &keymap, sets.values().map(String::as_str)).await;

    let variadic = baseline::variadic_pipelines(&keymap, &placed, KEYS_PER_ENTRY, ENTRIES_PER_PIPE);
    let took = baseline::run(&mut con, &variadic).await;
    let b = Dist {
        keys: keys.len(),
        writes: took,
        total: took,
        ..Dist::default()
    };
    let n: u64 = redis::cmd("HLEN")
        .arg(&keymap)
        .query_async(&mut con)
        .await
        .expect("HLEN");
    assert_eq!(n as usize, keys.len(), "the baseline wrote every key");
    (a, b)
}

#[derive(Debug, Default)]
struct DistResults {
    raw: Vec<Dist>,
    client: Vec<Dist>,
    hset_single: Vec<Dist>,
    hset_variadic: Vec<Dist>,
    cluster_raw: Vec<Dist>,
    cluster_r1: Vec<Dist>,
    cluster_r0: Vec<Dist>,
}

fn rates(runs: &[Dist]) -> Vec<f64> {
    runs.iter().map(Dist::rate).collect()
}

/// Per-round ratios `a[i] / b[i]`.
fn ratios(a: &[Dist], b: &[Dist]) -> Vec<f64> {
    a.iter().zip(b).map(|(a, b)| a.rate() / b.rate()).collect()
}

fn rate_cell(runs: &[Dist]) -> String {
    let r = rates(runs);
    let (lo, hi) = range(&r);
    match median(&r) {
        Some(m) if r.len() > 1 => format!(
            "**{}** keys/s [{}–{}]",
            thousands(m),
            thousands(lo),
            thousands(hi)
        ),
        Some(m) => format!("**{}** keys/s", thousands(m)),
        None => "–".to_owned(),
    }
}

fn ratio_cell(r: &[f64]) -> String {
    let (lo, hi) = range(r);
    match median(r) {
        Some(m) if r.len() > 1 => format!("{m:.2}× [{lo:.2}–{hi:.2}]"),
        Some(m) => format!("{m:.2}×"),
        None => "–".to_owned(),
    }
}

fn secs_cell(runs: &[Dist], f: impl Fn(&Dist) -> Duration) -> String {
    let v: Vec<f64> = runs.iter().map(|d| f(d).as_secs_f64()).collect();
    median(&v).map_or("–".to_owned(), |m| format!("{m:.2} s"))
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**MISSED**" }
}

fn report_distribution(r: &DistResults, keys: usize) {
    let rounds = r.raw.len().max(r.cluster_r1.len());
    println!();
    println!(
        "### Distribution of {} keys (median of {rounds} round(s), [min–max])",
        thousands(keys as f64)
    );
    if !r.client.is_empty() {
        println!();
        println!("Single server (`redis://`):");
        println!();
        println!(
            "| writer | first write → last applied | writes done after | CPU s: bench / redis-server | vs raw XADD (same round) | vs recorded {} keys/s | target |",
            thousands(RECORDED_SINGLE)
        );
        println!("|---|---|---:|---:|---|---|---|");
        let recorded: Vec<f64> = rates(&r.client)
            .iter()
            .map(|x| x / RECORDED_SINGLE)
            .collect();
        let vs_raw = ratios(&r.client, &r.raw);
        println!(
            "| {} | {} | {} | {} / {} | {} | {} | ≥ 0.9× recorded: {} |",
            Writer::Client(0).label(),
            rate_cell(&r.client),
            secs_cell(&r.client, |d| d.writes),
            secs_cell(&r.client, |d| d.cpu_bench),
            secs_cell(&r.client, |d| d.cpu_redis),
            ratio_cell(&vs_raw),
            ratio_cell(&recorded),
            verdict(median(&recorded).is_some_and(|m| m >= 0.9)),
        );
        let raw_recorded: Vec<f64> = rates(&r.raw).iter().map(|x| x / RECORDED_SINGLE).collect();
        println!(
            "| {} | {} | {} | {} / {} | 1 | {} | |",
            Writer::Raw.label(),
            rate_cell(&r.raw),
            secs_cell(&r.raw, |d| d.writes),
            secs_cell(&r.raw, |d| d.cpu_bench),
            secs_cell(&r.raw, |d| d.cpu_redis),
            ratio_cell(&raw_recorded),
        );
        println!(
            "| baseline (a): pipelined `HSET` + `SADD`, 1 key/command, no log, no projector | {} | | | client = {} | | |",
            rate_cell(&r.hset_single),
            ratio_cell(&ratios(&r.client, &r.hset_single)),
        );
        println!(
            "| baseline (b): variadic `HSET` + `SADD`, pipelined, no log, no projector | {} | | | client = {} | | |",
            rate_cell(&r.hset_variadic),
            ratio_cell(&ratios(&r.client, &r.hset_variadic)),
        );
    }
    if !r.cluster_r1.is_empty() {
        let single = median(&rates(&r.client));
        println!();
        println!("Redis Cluster (`redis+cluster://`, 3 masters + 3 replicas, fresh per run):");
        println!();
        println!(
            "| writer | first write → last applied | writes done after | CPU s: bench / slot's master / all 6 redis-servers | vs raw XADD on the cluster (same round) | vs single-server client (median) | target |"
        );
        println!("|---|---|---:|---:|---|---|---|");
        for (runs, writer) in [
            (&r.cluster_r1, Writer::Client(1)),
            (&r.cluster_r0, Writer::Client(0)),
            (&r.cluster_raw, Writer::Raw),
        ] {
            let vs_single: Vec<f64> = match single {
                Some(s) => rates(runs).iter().map(|x| x / s).collect(),
                None => Vec::new(),
            };
            let target = if writer == Writer::Client(1) {
                format!(
                    "≥ 0.8× single: {}",
                    verdict(median(&vs_single).is_some_and(|m| m >= 0.8))
                )
            } else {
                String::new()
            };
            println!(
                "| {} | {} | {} | {} / {} / {} | {} | {} | {target} |",
                writer.label(),
                rate_cell(runs),
                secs_cell(runs, |d| d.writes),
                secs_cell(runs, |d| d.cpu_bench),
                secs_cell(runs, |d| d.cpu_master),
                secs_cell(runs, |d| d.cpu_redis),
                if writer == Writer::Raw {
                    "1".to_owned()
                } else {
                    ratio_cell(&ratios(runs, &r.cluster_raw))
                },
                ratio_cell(&vs_single),
            );
        }
    }
    println!();
    println!("Every run, keys/s (first write → last applied; XADDs done after):");
    for (name, runs) in [
        ("single, client", &r.client),
        ("single, raw XADD", &r.raw),
        ("single, baseline (a)", &r.hset_single),
        ("single, baseline (b)", &r.hset_variadic),
        ("cluster, client durability 1", &r.cluster_r1),
        ("cluster, client durability 0", &r.cluster_r0),
        ("cluster, raw XADD", &r.cluster_raw),
    ] {
        if runs.is_empty() {
            continue;
        }
        let each: Vec<String> = runs
            .iter()
            .map(|d| {
                format!(
                    "{} ({:.2} s; {:.2} s)",
                    thousands(d.rate()),
                    d.total.as_secs_f64(),
                    d.writes.as_secs_f64()
                )
            })
            .collect();
        println!("  {name}: {}", each.join(", "));
    }
}

// ---------------------------------------------------------------------------------------------
// 3: failover.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Cluster,
    Sentinel,
    /// Sentinel with two replicas: after the kill the other replica follows the promoted
    /// master, so durability 1 needs no restart of the killed node.
    SentinelTwoReplicas,
}

/// Whether a trial restarts the killed node to give the new master a replica back.
fn restarts_killed(kind: Kind, replicas: u32) -> bool {
    replicas > 0 && kind != Kind::SentinelTwoReplicas
}

enum Deploy {
    Cluster { redis: TestCluster, slot: u16 },
    Sentinel(TestSentinel),
}

impl Deploy {
    async fn start(kind: Kind, name: &str) -> (Deploy, String) {
        match kind {
            Kind::Cluster => {
                let redis = TestCluster::start().await;
                let name = redis.cluster_names_per_master(name).await[0].clone();
                let slot = TestCluster::slot_of(&format!("pantheon:{{{name}}}:log"));
                (Deploy::Cluster { redis, slot }, name)
            }
            Kind::Sentinel => (
                Deploy::Sentinel(TestSentinel::start().await),
                name.to_owned(),
            ),
            Kind::SentinelTwoReplicas => {
                let options = pantheon_test_support::sentinel::Options {
                    replicas: 2,
                    ..Default::default()
                };
                (
                    Deploy::Sentinel(TestSentinel::start_with(options).await),
                    name.to_owned(),
                )
            }
        }
    }

    fn url(&self) -> String {
        match self {
            Deploy::Cluster { redis, .. } => redis.url(),
            Deploy::Sentinel(s) => s.url(),
        }
    }

    /// The node that will take over: the master's replica.
    async fn successor(&self) -> String {
        match self {
            Deploy::Cluster { redis, slot } => {
                let master = redis.master_of_slot(*slot).await;
                let mut con = connect_to(&format!("redis://{master}")).await;
                let nodes: String = redis::cmd("CLUSTER")
                    .arg("NODES")
                    .query_async(&mut con)
                    .await
                    .expect("CLUSTER NODES");
                let lines: Vec<Vec<&str>> = nodes
                    .lines()
                    .map(|l| l.split_whitespace().collect())
                    .filter(|f: &Vec<&str>| f.len() >= 8)
                    .collect();
                let me = lines
                    .iter()
                    .find(|f| f[2].split(',').any(|flag| flag == "myself"))
                    .expect("myself in CLUSTER NODES")[0];
                lines
                    .iter()
                    .find(|f| f[3] == me)
                    .map(|f| f[1].split(['@', ',']).next().unwrap_or_default().to_owned())
                    .unwrap_or_else(|| panic!("no replica of {master}: {nodes}"))
            }
            Deploy::Sentinel(s) => {
                let master = s.master_addr().await;
                s.data_urls()
                    .iter()
                    .map(|u| {
                        u.trim_start_matches("redis://")
                            .trim_end_matches('/')
                            .to_owned()
                    })
                    .find(|a| *a != master)
                    .expect("a second data node")
            }
        }
    }

    async fn kill(&mut self) -> String {
        match self {
            Deploy::Cluster { redis, slot } => redis.kill_master_of(*slot).await,
            Deploy::Sentinel(s) => s.kill_master().await,
        }
    }

    async fn wait_promoted(&self, old: &str) -> String {
        match self {
            Deploy::Cluster { redis, slot } => redis.wait_promoted(*slot, FAILOVER_WAIT).await,
            Deploy::Sentinel(s) => s.wait_new_master(old, FAILOVER_WAIT).await,
        }
    }

    async fn restart(&mut self, addr: &str) {
        match self {
            Deploy::Cluster { redis, .. } => redis.restart_node(addr).await,
            Deploy::Sentinel(s) => s.restart(addr).await,
        }
    }
}

#[derive(Debug, Clone)]
enum Outcome {
    Acked(EntryId),
    /// Appended on the master, but `WAIT` timed out: reported as not written.
    NotReplicated(EntryId),
    Failed(String),
}

#[derive(Debug, Clone)]
struct Write {
    key: String,
    sent: Instant,
    done: Instant,
    outcome: Outcome,
}

type Shared<T> = Arc<Mutex<Vec<T>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One `distribute` of one key every [`WRITE_EVERY`] until stopped (bounded in count and
/// time), each recorded with when it was sent and answered.
async fn writer(client: Pantheon, writes: Shared<Write>, stop: CancellationToken) {
    let deadline = Instant::now() + WRITER_FOR;
    for i in 0..MAX_WRITES {
        if stop.is_cancelled() || Instant::now() > deadline {
            return;
        }
        let key = format!("w:{i}");
        let sent = Instant::now();
        let result = tokio::time::timeout(WRITE_TIMEOUT, client.distribute([key.clone()])).await;
        let done = Instant::now();
        let outcome = match result {
            Ok(Ok(ids)) => Outcome::Acked(ids[0]),
            Ok(Err(ClientError::NotReplicated { id, .. })) => Outcome::NotReplicated(id),
            Ok(Err(e)) => Outcome::Failed(e.to_string()),
            Err(_) => Outcome::Failed(format!("no answer within {WRITE_TIMEOUT:?}")),
        };
        lock(&writes).push(Write {
            key,
            sent,
            done,
            outcome,
        });
        tokio::time::sleep(WRITE_EVERY).await;
    }
}

/// Polls the checkpoint every [`OBSERVE_EVERY`] and records each change. It is an observer,
/// not a client under test: after any error it drops its handle and connects afresh on the
/// next poll (no backoff), so it sees an applied write within a few ms of the commit.
async fn observer(
    url: String,
    cluster: String,
    samples: Shared<(Instant, EntryId)>,
    stop: CancellationToken,
) {
    let deadline = Instant::now() + WRITER_FOR + FAILOVER_WAIT;
    let mut handle: Option<Pantheon> = None;
    let mut last: Option<EntryId> = None;
    while !stop.is_cancelled() && Instant::now() < deadline {
        if handle.is_none() {
            let connect = Pantheon::builder(&url, &cluster).connect();
            if let Ok(Ok(p)) = tokio::time::timeout(Duration::from_millis(500), connect).await {
                handle = Some(p);
            }
        }
        if let Some(p) = &handle {
            match tokio::time::timeout(Duration::from_millis(500), p.last_applied()).await {
                Ok(Ok(Some(id))) => {
                    if last != Some(id) {
                        lock(&samples).push((Instant::now(), id));
                        last = Some(id);
                    }
                }
                Ok(Ok(None)) => {}
                _ => handle = None,
            }
        }
        tokio::time::sleep(OBSERVE_EVERY).await;
    }
}

/// When `addr` first answers `ROLE` with `master` (polled every [`ROLE_EVERY`]).
async fn role_flip(addr: String, stop: CancellationToken) -> Option<Instant> {
    let deadline = Instant::now() + WRITER_FOR;
    let mut con = None;
    while !stop.is_cancelled() && Instant::now() < deadline {
        if con.is_none() {
            con = quick(&addr).await;
        }
        if let Some(c) = &mut con {
            match redis::cmd("ROLE").query_async::<Vec<redis::Value>>(c).await {
                Ok(role) => {
                    if matches!(role.first(), Some(redis::Value::BulkString(r)) if r.as_slice() == b"master")
                    {
                        return Some(Instant::now());
                    }
                }
                Err(_) => con = None,
            }
        }
        tokio::time::sleep(ROLE_EVERY).await;
    }
    None
}

/// When `addr` (restarting) first reports itself a replica with its link to the master up.
async fn link_up(addr: String, stop: CancellationToken) -> Option<Instant> {
    let deadline = Instant::now() + WRITER_FOR;
    let mut con = None;
    while !stop.is_cancelled() && Instant::now() < deadline {
        if con.is_none() {
            con = quick(&addr).await;
        }
        if let Some(c) = &mut con {
            match redis::cmd("INFO")
                .arg("replication")
                .query_async::<String>(c)
                .await
            {
                Ok(info) => {
                    if info_field(&info, "role") == Some("slave")
                        && info_field(&info, "master_link_status") == Some("up")
                    {
                        return Some(Instant::now());
                    }
                }
                Err(_) => con = None,
            }
        }
        tokio::time::sleep(ROLE_EVERY).await;
    }
    None
}

/// The first time the checkpoint reached `id`, looking only at samples from `from` on.
fn applied_at(samples: &[(Instant, EntryId)], id: EntryId, from: Instant) -> Option<Instant> {
    samples
        .iter()
        .find(|(t, last)| *t >= from && *last >= id)
        .map(|(t, _)| *t)
}

/// The first acknowledged write sent after `after`, with when it was applied.
fn first_acked_after(
    writes: &[Write],
    samples: &[(Instant, EntryId)],
    after: Instant,
) -> Option<(Write, Option<Instant>)> {
    writes
        .iter()
        .find(|w| w.sent >= after && matches!(w.outcome, Outcome::Acked(_)))
        .map(|w| {
            let applied = match w.outcome {
                Outcome::Acked(id) => applied_at(samples, id, w.sent),
                _ => None,
            };
            (w.clone(), applied)
        })
}

#[derive(Debug, Clone, Default)]
struct Trial {
    /// All in ms from the kill unless said otherwise.
    role_flip: Option<f64>,
    promoted: f64,
    /// From the promotion (as the harness saw it); negative: before it.
    first_ack: Option<f64>,
    first_applied: Option<f64>,
    /// The first write sent after the kill that reached the log (acknowledged or not):
    /// when it was applied, from the promotion.
    first_applied_any: Option<f64>,
    /// max(ack, applied) from the promotion.
    ack_and_applied: Option<f64>,
    /// From the replica's own ROLE flip to the first write acked + applied.
    from_role_flip: Option<f64>,
    /// Durability 1: the restart of the killed node, from the promotion, and its sync.
    restart_began: Option<f64>,
    sync: Option<f64>,
    link_up_to_acked_applied: Option<f64>,
    /// The writer's view: last ack before the kill → first ack after.
    gap: Option<f64>,
    writes: usize,
    acked: usize,
    not_replicated: usize,
    failed: usize,
    lost: usize,
    errors: BTreeMap<String, usize>,
    successor_promoted: bool,
}

/// One failover on a fresh deployment.
async fn failover(kind: Kind, replicas: u32, n: usize) -> Trial {
    let (mut deploy, name) = Deploy::start(kind, &format!("fo{n}")).await;
    let url = deploy.url();
    let projector = projector(&url, &name);
    let client = client(&url, &name, replicas).await;
    let joined = client
        .join(JoinOp::new("n1", "http://127.0.0.1", 9, "health"))
        .await
        .expect("join");
    client
        .wait_applied(joined, FAILOVER_WAIT)
        .await
        .expect("join applied");

    let stop = CancellationToken::new();
    // Stops the writer and the pollers if this trial panics (e.g. a deployment that does not
    // settle): they must not outlive it.
    let _stop_on_drop = stop.clone().drop_guard();
    let writes: Shared<Write> = Arc::default();
    let samples: Shared<(Instant, EntryId)> = Arc::default();
    let observer = tokio::spawn(observer(
        url.clone(),
        name.clone(),
        samples.clone(),
        stop.clone(),
    ));
    let writer = tokio::spawn(writer(client.clone(), writes.clone(), stop.clone()));
    tokio::time::sleep(WARM_UP).await;

    let successor = deploy.successor().await;
    let role = tokio::spawn(role_flip(successor.clone(), stop.clone()));
    let old = deploy.kill().await;
    // SIGKILL and reap are done: a write sent from now on can only be answered by the
    // promoted master.
    let killed_at = Instant::now();
    let new = deploy.wait_promoted(&old).await;
    let promoted_at = Instant::now();

    let mut restart = None;
    if restarts_killed(kind, replicas) {
        // The new master gets a replica back: the killed node, restarted as soon as the
        // deployment can take it (`TestSentinel::restart` first waits for the sentinel to
        // end the failover: an empty old master restarted earlier can be promoted).
        let link = tokio::spawn(link_up(old.clone(), stop.clone()));
        let began = Instant::now();
        deploy.restart(&old).await;
        restart = Some((began, link));
    }

    // Until the first write after the kill is applied, then a little longer (bounded).
    let deadline = Instant::now() + FAILOVER_WAIT;
    loop {
        let done = {
            let w = lock(&writes);
            let s = lock(&samples);
            first_acked_after(&w, &s, killed_at).is_some_and(|(_, applied)| applied.is_some())
        };
        if done || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(COOL_DOWN).await;
    stop.cancel();
    let _ = writer.await;
    let _ = observer.await;
    let role_at = role.await.ok().flatten();
    let restart = match restart {
        Some((began, link)) => Some((began, link.await.ok().flatten())),
        None => None,
    };

    let writes = std::mem::take(&mut *lock(&writes));
    let samples = std::mem::take(&mut *lock(&samples));
    let mut t = Trial {
        role_flip: role_at.map(|r| since(killed_at, r)),
        promoted: since(killed_at, promoted_at),
        writes: writes.len(),
        successor_promoted: new == successor,
        ..Trial::default()
    };
    for w in &writes {
        match &w.outcome {
            Outcome::Acked(_) => t.acked += 1,
            Outcome::NotReplicated(_) => t.not_replicated += 1,
            Outcome::Failed(e) => {
                t.failed += 1;
                // Group by the message's start (ids and addresses differ).
                let short: String = e.chars().take(60).collect();
                *t.errors.entry(short).or_default() += 1;
            }
        }
    }
    t.first_applied_any = writes
        .iter()
        .filter(|w| w.sent >= killed_at)
        .find_map(|w| match w.outcome {
            Outcome::Acked(id) | Outcome::NotReplicated(id) => Some((w, id)),
            Outcome::Failed(_) => None,
        })
        .and_then(|(w, id)| applied_at(&samples, id, w.sent))
        .map(|a| since(promoted_at, a));
    if let Some((w, applied)) = first_acked_after(&writes, &samples, killed_at) {
        t.first_ack = Some(since(promoted_at, w.done));
        t.first_applied = applied.map(|a| since(promoted_at, a));
        let both = applied.map(|a| a.max(w.done));
        t.ack_and_applied = both.map(|b| since(promoted_at, b));
        t.from_role_flip = both.zip(role_at).map(|(b, r)| since(r, b));
        if let Some((began, link)) = restart {
            t.restart_began = Some(since(promoted_at, began));
            t.sync = link.map(|l| since(began, l));
            t.link_up_to_acked_applied = both.zip(link).map(|(b, l)| since(l, b));
        }
        let before = writes
            .iter()
            .rev()
            .find(|w| w.sent < killed_at && matches!(w.outcome, Outcome::Acked(_)));
        t.gap = before.map(|b| since(b.done, w.done));
    } else if let Some((began, link)) = restart {
        t.restart_began = Some(since(promoted_at, began));
        t.sync = link.map(|l| since(began, l));
    }

    // Acknowledged writes that did not survive (possible with durability 0).
    let check = client_for_check(&url, &name).await;
    if let Some(last) = writes.iter().rev().find_map(|w| match w.outcome {
        Outcome::Acked(id) => Some(id),
        _ => None,
    }) {
        let _ = check.wait_applied(last, FAILOVER_WAIT).await;
    }
    for w in writes
        .iter()
        .filter(|w| matches!(w.outcome, Outcome::Acked(_)))
    {
        let owned = tokio::time::timeout(Duration::from_secs(5), check.key_node(&w.key)).await;
        if !matches!(owned, Ok(Ok(Some(_)))) {
            t.lost += 1;
        }
    }
    projector.stop().await;
    t
}

/// A failover trial in a task of its own: a harness panic (a deployment that does not settle)
/// becomes an error with the panic's first line instead of ending the whole run.
async fn failover_attempt(kind: Kind, replicas: u32, n: usize) -> Result<Trial, String> {
    match tokio::spawn(failover(kind, replicas, n)).await {
        Ok(trial) => Ok(trial),
        Err(e) if e.is_panic() => {
            let payload = e.into_panic();
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "panic".to_owned());
            Err(message.lines().next().unwrap_or_default().to_owned())
        }
        Err(e) => Err(e.to_string()),
    }
}

async fn client_for_check(url: &str, cluster: &str) -> Pantheon {
    let deadline = Instant::now() + FAILOVER_WAIT;
    loop {
        match Pantheon::connect(url, cluster).await {
            Ok(p) => return p,
            Err(e) if Instant::now() > deadline => panic!("cannot connect to check: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn report_failover(kind: Kind, replicas: u32, trials: &[Trial], failed: &[String]) {
    let what = match kind {
        Kind::Cluster => "Redis Cluster (`kill_master_of`, `wait_promoted`)",
        Kind::Sentinel => "Sentinel (`kill_master`, `wait_new_master`)",
        Kind::SentinelTwoReplicas => {
            "Sentinel with two replicas (`kill_master`, `wait_new_master`, no restart)"
        }
    };
    println!();
    println!(
        "#### {what}, durability {replicas}{}",
        if restarts_killed(kind, replicas) {
            " (killed node restarted right after the promotion; on Sentinel once the sentinel ended the failover)"
        } else {
            " (the promoted master alone)"
        }
    );
    println!();
    for (i, why) in failed.iter().enumerate() {
        println!("Attempt that failed and was replaced ({}): {why}", i + 1);
        println!();
    }
    if trials.is_empty() {
        return;
    }
    let col =
        |f: &dyn Fn(&Trial) -> Option<f64>| -> Vec<Option<f64>> { trials.iter().map(f).collect() };
    let mut rows: Vec<(&str, Vec<Option<f64>>)> = vec![
        (
            "kill → successor's `ROLE` says master",
            col(&|t| t.role_flip),
        ),
        (
            "kill → promotion complete (harness wait returned)",
            col(&|t| Some(t.promoted)),
        ),
    ];
    if restarts_killed(kind, replicas) {
        rows.push((
            "promotion → restart of the killed node begins",
            col(&|t| t.restart_began),
        ));
        rows.push(("restart → its replication link up (sync)", col(&|t| t.sync)));
    }
    rows.extend([
        (
            "promotion → 1st write sent after the kill applied (acknowledged or not)",
            col(&|t| t.first_applied_any),
        ),
        (
            "promotion → 1st write sent after the kill acknowledged",
            col(&|t| t.first_ack),
        ),
        (
            "promotion → that write applied (checkpoint)",
            col(&|t| t.first_applied),
        ),
        (
            "**promotion → 1st write acknowledged + applied**",
            col(&|t| t.ack_and_applied),
        ),
        (
            "successor's `ROLE` flip → acknowledged + applied",
            col(&|t| t.from_role_flip),
        ),
    ]);
    if restarts_killed(kind, replicas) {
        rows.push((
            "replica link up → acknowledged + applied",
            col(&|t| t.link_up_to_acked_applied),
        ));
    }
    rows.push((
        "writer's gap: last ack (sent before the kill) → that first ack",
        col(&|t| t.gap),
    ));
    print!("| ms |");
    for i in 1..=trials.len() {
        print!(" trial {i} |");
    }
    println!(" median |");
    print!("|---|");
    for _ in 0..=trials.len() {
        print!("---:|");
    }
    println!();
    for (name, values) in rows {
        print!("| {name} |");
        for v in &values {
            print!(" {} |", fmt_ms(*v));
        }
        let present: Vec<f64> = values.iter().flatten().copied().collect();
        let m = if present.len() == values.len() {
            median(&present)
        } else {
            None
        };
        println!(" {} |", fmt_ms(m));
    }
    print!("| writes: sent / acked / not replicated / failed / acked but lost |");
    for t in trials {
        print!(
            " {} / {} / {} / {} / {} |",
            t.writes, t.acked, t.not_replicated, t.failed, t.lost
        );
    }
    println!(" |");
    let mut errors: BTreeMap<&str, usize> = BTreeMap::new();
    for t in trials {
        for (e, n) in &t.errors {
            *errors.entry(e).or_default() += n;
        }
        if !t.successor_promoted {
            println!("(a trial promoted another node than the killed master's replica)");
        }
    }
    if !errors.is_empty() {
        println!();
        println!("Failed writes by error (all trials): {errors:?}");
    }
    let target: Vec<f64> = trials
        .iter()
        .map(|t| {
            if restarts_killed(kind, replicas) {
                t.link_up_to_acked_applied
            } else {
                t.ack_and_applied
            }
            .unwrap_or(f64::INFINITY)
        })
        .collect();
    let worst = target.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    println!();
    println!(
        "Target ≤ 2 s ({}): worst {} → {}",
        if restarts_killed(kind, replicas) {
            "replica link up → first write acknowledged + applied; the sync itself is Redis's"
        } else {
            "promotion → first write acknowledged + applied"
        },
        fmt_ms(worst.is_finite().then_some(worst)),
        verdict(worst <= 2000.0)
    );
}

/// Every configuration side by side, one cell per configuration: "t1 / t2 / t3 (median)".
fn report_summary(failovers: &[(Kind, u32, Vec<Trial>)]) {
    type Get = fn(&Trial) -> Option<f64>;
    let rows: [(&str, Get); 11] = [
        ("kill → successor's `ROLE` is master", |t| t.role_flip),
        ("kill → **promotion** (harness wait returned)", |t| {
            Some(t.promoted)
        }),
        ("promotion → restart of the killed node begins", |t| {
            t.restart_began
        }),
        ("restart → its replication link is up", |t| t.sync),
        (
            "promotion → 1st write applied (acknowledged or not)",
            |t| t.first_applied_any,
        ),
        ("promotion → 1st write acknowledged", |t| t.first_ack),
        ("promotion → that write applied", |t| t.first_applied),
        ("**promotion → acknowledged + applied**", |t| {
            t.ack_and_applied
        }),
        ("successor's `ROLE` flip → acknowledged + applied", |t| {
            t.from_role_flip
        }),
        ("replica link up → acknowledged + applied", |t| {
            t.link_up_to_acked_applied
        }),
        (
            "writer's gap (last ack before the kill → first after)",
            |t| t.gap,
        ),
    ];
    let short = |v: f64| {
        if v.abs() >= 10.0 {
            thousands(v)
        } else {
            format!("{v:.1}")
        }
    };
    println!();
    println!("Summary, ms: one value per trial, then (median)");
    println!();
    print!("| |");
    for (kind, replicas, _) in failovers {
        print!(" {kind:?}, durability {replicas} |");
    }
    println!();
    print!("|---|");
    for _ in failovers {
        print!("---|");
    }
    println!();
    for (name, get) in &rows {
        print!("| {name} |");
        for (_, _, trials) in failovers {
            let values: Vec<Option<f64>> = trials.iter().map(get).collect();
            if values.iter().all(Option::is_none) {
                print!(" – |");
                continue;
            }
            let each: Vec<String> = values
                .iter()
                .map(|v| v.map_or("–".to_owned(), short))
                .collect();
            let present: Vec<f64> = values.iter().flatten().copied().collect();
            let m = median(&present).map_or("–".to_owned(), short);
            print!(" {} ({m}) |", each.join(" / "));
        }
        println!();
    }
    print!("| writes acked / not replicated / failed / acked but lost |");
    for (_, _, trials) in failovers {
        let each: Vec<String> = trials
            .iter()
            .map(|t| format!("{}/{}/{}/{}", t.acked, t.not_replicated, t.failed, t.lost))
            .collect();
        print!(" {} |", each.join(", "));
    }
    println!();
}

// ---------------------------------------------------------------------------------------------

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|v| *v > 0)
        .unwrap_or(default)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let scale = if full {
        Scale {
            keys: 1_000_000,
            rounds: env_usize("PANTHEON_BENCH_ROUNDS", 3),
            trials: env_usize("PANTHEON_BENCH_TRIALS", 3),
            full,
        }
    } else {
        println!("smoke run at 1/50 scale (use `cargo bench` for the real numbers)");
        Scale {
            keys: 20_000,
            rounds: 1,
            trials: 1,
            full,
        }
    };
    if std::env::var(pantheon_test_support::URL_ENV).is_ok_and(|u| !u.trim().is_empty()) {
        eprintln!(
            "warning: {} is set: the single-server parts use that (possibly shared) Redis",
            pantheon_test_support::URL_ENV
        );
    }
    pantheon_service::init_logging("warn");
    let steps = std::env::var("PANTHEON_BENCH_STEPS").unwrap_or_default();
    let run = |step: &str| steps.is_empty() || steps.split(',').any(|s| s.trim() == step);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let all_keys = keys(scale.keys);
    let started = Instant::now();
    println!("load average at start: {}", load_average());
    let mut dist = DistResults::default();
    runtime.block_on(async {
        for round in 1..=scale.rounds {
            if run("single") {
                dist.raw.push(single_server(Writer::Raw, &all_keys).await);
                dist.client
                    .push(single_server(Writer::Client(0), &all_keys).await);
                let (a, b) = hset_baselines(&all_keys).await;
                dist.hset_single.push(a);
                dist.hset_variadic.push(b);
            }
            if run("cluster") {
                dist.cluster_r1
                    .push(on_cluster(Writer::Client(1), &all_keys).await);
                dist.cluster_r0
                    .push(on_cluster(Writer::Client(0), &all_keys).await);
                dist.cluster_raw
                    .push(on_cluster(Writer::Raw, &all_keys).await);
            }
            eprintln!(
                "distribution round {round} done after {:.0} s (load average {})",
                started.elapsed().as_secs_f64(),
                load_average()
            );
        }
        if !dist.client.is_empty() || !dist.cluster_r1.is_empty() {
            report_distribution(&dist, scale.keys);
        }
        if run("failover") {
            let configs: &[(Kind, u32)] = if scale.full {
                &[
                    (Kind::Cluster, 0),
                    (Kind::Cluster, 1),
                    (Kind::Sentinel, 0),
                    (Kind::Sentinel, 1),
                    (Kind::SentinelTwoReplicas, 1),
                ]
            } else {
                &[(Kind::Cluster, 1), (Kind::Sentinel, 0)]
            };
            println!();
            println!(
                "### Failover: kill -9 of the master, a writer appending one entry every {} ms ({} trial(s) each, fresh deployment each)",
                WRITE_EVERY.as_millis(),
                scale.trials
            );
            let mut n = 0;
            let mut all = Vec::new();
            for &(kind, replicas) in configs {
                let mut trials = Vec::new();
                let mut failed = Vec::new();
                // Bounded: at most two attempts beyond the trials asked for.
                while trials.len() < scale.trials && failed.len() < 2 {
                    n += 1;
                    match failover_attempt(kind, replicas, n).await {
                        Ok(t) => trials.push(t),
                        Err(why) => failed.push(why),
                    }
                    eprintln!(
                        "failover {kind:?} durability {replicas}: {} done, {} failed, after {:.0} s (load average {})",
                        trials.len(),
                        failed.len(),
                        started.elapsed().as_secs_f64(),
                        load_average()
                    );
                }
                report_failover(kind, replicas, &trials, &failed);
                all.push((kind, replicas, trials));
            }
            report_summary(&all);
        }
    });
    println!();
    println!(
        "whole run: {:.0} s; load average at the end: {}",
        started.elapsed().as_secs_f64(),
        load_average()
    );
}
