//! The projector's throughput, latency and memory targets, measured end to end against real `redis-server`s started
//! for the run (never the machine's shared Redis), and printed as one table:
//!
//! 1. assigning 1,000,000 keys on 10 nodes (100 `assign` entries of 10,000 keys), from the
//!    first XADD until the checkpoint reaches the last entry — next to a baseline of raw
//!    pipelined `HSET keymap` + `SADD node:<n>:keys` of the same keys on the same owners;
//! 2. a node dying with those 1,000,000 keys: three failed probes, until the checkpoint
//!    passes the third, with the commit's duration and the keys moved;
//! 3. rebuilding (`rebuild::fold_log`) that log plus 200,000 small probe entries;
//! 4. the resident memory of the real `pantheon-projector` binary holding 1,000,000 keys,
//!    and Redis's own `used_memory` for context.
//!
//! ```text
//! cargo bench -p pantheon-tests --bench projector
//! ```
//!
//! Step 4 runs the service binary as a child process; the bench builds it first with
//! `cargo build --release -p pantheon-projector-service` (or set `PANTHEON_PROJECTOR_BIN`
//! to a binary, or `PANTHEON_BENCH_NO_CHILD=1` to skip step 4). Without `--bench` (as in
//! `cargo test --benches`) everything runs at 1/50 scale as a smoke test, without step 4.
//! Results and the machine they were taken on are in `docs/benchmarks.md`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pantheon_domain::entry::{Command, LogEntry, ProbeResult};
use pantheon_domain::{EntryId, NodeId, State};
use pantheon_projector::paging::Paging;
use pantheon_projector::stage::{fresh_checkpoint, stage_entries};
use pantheon_projector::{ProjectorConfig, rebuild};
use pantheon_store::{Layout, RawEntry, stream};
mod support;

use pantheon_test_support::TestRedis;
use pantheon_test_support::baseline;
use pantheon_test_support::process::{ChildGuard, cpu_time, memory_mib, release_binary};
use redis::aio::MultiplexedConnection;
use support::append::{send_xadds, xadd_pipes};
use support::server::{info, info_field};
use support::stream::connect_to;
use support::{answer_all, last_applied};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt as tfmt};

// Measure the projector with the allocator it ships with (services/projector/src/main.rs).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const NODES: usize = 10;
const KEYS_PER_ENTRY: usize = 10_000;
/// `assign` entries per XADD pipeline.
const ENTRIES_PER_PIPE: usize = 10;
/// Baseline: single-key commands per pipeline.
const BASELINE_PIPE_COMMANDS: usize = 10_000;
/// Probe entries per XADD pipeline when writing the rebuild filler.
const FILLER_PER_PIPE: usize = 10_000;
const WAIT: Duration = Duration::from_secs(240);
/// The projector's batching, as in `ProjectorConfig::new` (checked at start-up).
const BATCH_ENTRIES: usize = 500;
const BATCH_MAX_ARGS: usize = 200_000;

#[derive(Debug, Clone, Copy)]
struct Scale {
    keys: usize,
    filler: usize,
    child: bool,
}

// ---------------------------------------------------------------------------------------------
// Commit timings, read from the projector's own `debug!("committed", took = ...)` log line.

#[derive(Debug, Clone, Copy)]
struct Commit {
    took: Duration,
    entries: u64,
    calls: u64,
}

static COMMITS: Mutex<Vec<Commit>> = Mutex::new(Vec::new());

fn take_commits() -> Vec<Commit> {
    std::mem::take(&mut *COMMITS.lock().expect("commit log lock"))
}

/// The projector logs a commit just after Redis answered it, so a poller may see the
/// checkpoint first: wait (briefly) until the log lines of `entries` entries are in.
async fn commits_of(entries: u64) -> Vec<Commit> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let logged: u64 = COMMITS
            .lock()
            .expect("commit log lock")
            .iter()
            .map(|c| c.entries)
            .sum();
        if logged >= entries || Instant::now() > deadline {
            return take_commits();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

struct CommitCapture;

#[derive(Default)]
struct CommitFields {
    message: String,
    took: Option<Duration>,
    entries: u64,
    calls: u64,
}

impl tracing::field::Visit for CommitFields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "took" => self.took = parse_debug_duration(&format!("{value:?}")),
            _ => {}
        }
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        match field.name() {
            "entries" => self.entries = value,
            "calls" => self.calls = value,
            _ => {}
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for CommitCapture {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut f = CommitFields::default();
        event.record(&mut f);
        if f.message == "committed"
            && let Some(took) = f.took
        {
            COMMITS.lock().expect("commit log lock").push(Commit {
                took,
                entries: f.entries,
                calls: f.calls,
            });
        }
    }
}

/// Parses `Duration`'s `Debug` output (`1.5s`, `12.3ms`, `950µs`, `15ns`).
fn parse_debug_duration(s: &str) -> Option<Duration> {
    let (num, unit) = [("ns", 1e-9), ("µs", 1e-6), ("ms", 1e-3), ("s", 1.0)]
        .into_iter()
        .find_map(|(suffix, unit)| s.strip_suffix(suffix).map(|n| (n, unit)))?;
    num.parse::<f64>()
        .ok()
        .map(|n| Duration::from_secs_f64(n * unit))
}

fn init_tracing() {
    let capture = CommitCapture
        .with_filter(Targets::new().with_target("pantheon_projector", tracing::Level::DEBUG));
    let stderr = tfmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(Targets::new().with_default(tracing::Level::WARN));
    let _ = tracing_subscriber::registry()
        .with(capture)
        .with(stderr)
        .try_init();
}

// ---------------------------------------------------------------------------------------------
// Redis helpers.

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

fn probe(i: usize, epoch: u64, ok: bool) -> Vec<(&'static str, String)> {
    LogEntry::new(Command::Probe(ProbeResult {
        node: node(i),
        epoch,
        ok,
        status: ok.then_some(200),
        latency_ms: 3,
        error: None,
        prober: Some("prober-1".into()),
    }))
    .encode()
}

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user:{i}")).collect()
}

fn assign_entries(keys: &[String]) -> Vec<Vec<(&'static str, String)>> {
    keys.chunks(KEYS_PER_ENTRY)
        .map(|c| LogEntry::new(Command::Assign { keys: c.to_vec() }).encode())
        .collect()
}

/// Polls the checkpoint every 2 ms until it reaches `id`.
async fn wait_applied(con: &mut MultiplexedConnection, layout: &Layout, id: EntryId) {
    let deadline = Instant::now() + WAIT;
    while last_applied(con, layout).await.is_none_or(|last| last < id) {
        assert!(
            Instant::now() < deadline,
            "entry {id} not applied within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn reset_stats(con: &mut MultiplexedConnection) {
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(con)
        .await
        .expect("CONFIG RESETSTAT");
}

/// `INFO commandstats` as command → (calls, microseconds).
async fn command_stats(con: &mut MultiplexedConnection) -> BTreeMap<String, (u64, u64)> {
    let info = info(con, "commandstats").await;
    let mut out = BTreeMap::new();
    for line in info.lines() {
        let Some((name, rest)) = line
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
        else {
            continue;
        };
        let fields: HashMap<&str, u64> = rest
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .filter_map(|(k, v)| v.parse().ok().map(|v| (k, v)))
            .collect();
        out.insert(
            name.to_owned(),
            (
                fields.get("calls").copied().unwrap_or(0),
                fields.get("usec").copied().unwrap_or(0),
            ),
        );
    }
    out
}

/// Redis-side time spent in the commit script (EVALSHA, or EVAL after a NOSCRIPT).
fn script_time(stats: &BTreeMap<String, (u64, u64)>) -> (u64, Duration) {
    let (calls, usec) = ["evalsha", "eval"]
        .iter()
        .filter_map(|c| stats.get(*c))
        .fold((0, 0), |(c, u), (c2, u2)| (c + c2, u + u2));
    (calls, Duration::from_micros(usec))
}

fn stat_time(stats: &BTreeMap<String, (u64, u64)>, cmd: &str) -> Duration {
    Duration::from_micros(stats.get(cmd).map_or(0, |s| s.1))
}

async fn memory_usage(con: &mut MultiplexedConnection, key: &str) -> f64 {
    let bytes: Option<u64> = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(key)
        .query_async(con)
        .await
        .expect("MEMORY USAGE");
    bytes.unwrap_or(0) as f64 / (1024.0 * 1024.0)
}

// ---------------------------------------------------------------------------------------------
// Results.

#[derive(Debug, Default)]
struct Results {
    keys: usize,
    // 1. assign
    assign_total: Duration,
    assign_xadd: Duration,
    assign_commits: Vec<Commit>,
    assign_script: (u64, Duration),
    assign_xreadgroup: Duration,
    assign_cpu_bench: Duration,
    assign_cpu_redis: Duration,
    // baseline
    base_single: Duration,
    base_variadic: Duration,
    base_owners: Duration,
    base_single_redis: Duration,
    base_variadic_redis: Duration,
    // 2. death
    death_total: Duration,
    death_commits: Vec<Commit>,
    death_script: (u64, Duration),
    death_moved: u64,
    // offline breakdown
    read_assign: Duration,
    stage_assign: Duration,
    stage_assign_batches: usize,
    stage_assign_args: usize,
    stage_death: Duration,
    stage_death_args: usize,
    // 3. rebuild
    filler: usize,
    fold_until_death: (u64, Duration),
    fold_all: (u64, Duration),
    xrange_all: Duration,
    xrange_redis: Duration,
    rebuild_matches: bool,
    // 4. memory
    child: Option<ChildResults>,
    redis_used: String,
    redis_breakdown: Vec<(String, f64)>,
}

#[derive(Debug, Default)]
struct ChildResults {
    idle: (f64, f64),
    after_assign: (f64, f64),
    after_death: (f64, f64),
    after_restart: (f64, f64),
    assign_total: Duration,
    death_total: Duration,
    restart_total: Duration,
}

// ---------------------------------------------------------------------------------------------
// Scenarios.

/// Raw writes of the same read model, no log, no projector: the owners are computed before
/// the clock starts (with Pantheon's own placement), so this is the best any writer can do.
async fn baseline(r: &mut Results, keys: &[String]) {
    let redis = TestRedis::start().await;
    let layout = Layout::new("baseline", redis.namespace());
    let mut con = connect_to(&redis.url).await;

    let started = Instant::now();
    let mut state = State::default();
    for i in 1..=NODES {
        let entry = LogEntry::decode(&join(i)).expect("join decodes");
        state
            .apply(EntryId::new(1, i as u64), &entry)
            .expect("join applies");
    }
    // A joined node owns keys once it answered a probe (docs/adr/0011).
    for i in 1..=NODES {
        state
            .apply(
                EntryId::new(2, i as u64),
                &support::answered(node(i), i as u64),
            )
            .expect("probe applies");
    }
    let owners: Vec<NodeId> = keys
        .iter()
        .map(|k| state.placement().owner(k).expect("an owner").clone())
        .collect();
    r.base_owners = started.elapsed();
    let sets: HashMap<NodeId, String> = state
        .nodes()
        .map(|n| (n.id.clone(), layout.node_keys(&n.id)))
        .collect();

    // (a) one key per command, 10,000 commands per pipeline.
    let keymap = layout.keymap();
    let placed = baseline::place(keys, &owners, NodeId::as_str, &sets);
    let pipes = baseline::single_key_pipelines(&keymap, &placed, BASELINE_PIPE_COMMANDS);
    reset_stats(&mut con).await;
    r.base_single = baseline::run(&mut con, &pipes).await;
    let stats = command_stats(&mut con).await;
    r.base_single_redis = stat_time(&stats, "hset") + stat_time(&stats, "sadd");
    drop(pipes);
    baseline::delete(&mut con, &keymap, sets.values().map(String::as_str)).await;

    // (b) variadic: per 10,000 keys one HSET and one SADD per node; 10 groups per pipeline.
    let pipes = baseline::variadic_pipelines(&keymap, &placed, KEYS_PER_ENTRY, ENTRIES_PER_PIPE);
    reset_stats(&mut con).await;
    r.base_variadic = baseline::run(&mut con, &pipes).await;
    let stats = command_stats(&mut con).await;
    r.base_variadic_redis = stat_time(&stats, "hset") + stat_time(&stats, "sadd");
    let n: u64 = redis::cmd("HLEN")
        .arg(&keymap)
        .query_async(&mut con)
        .await
        .expect("HLEN");
    assert_eq!(n as usize, keys.len(), "baseline wrote every key");
}

/// Steps 1-3 against one fresh Redis with the projector running in this process.
async fn pantheon(r: &mut Results, keys: &[String], scale: Scale) {
    let redis = TestRedis::start().await;
    let cluster = redis.namespace().to_owned();
    let layout = Layout::new("pantheon", &cluster);
    let log = layout.log();
    let mut con = connect_to(&redis.url).await;
    let mut poll = connect_to(&redis.url).await;
    let redis_pid = pantheon_test_support::server_pid(&mut con).await;
    let bench_pid = std::process::id();

    let joins: Vec<_> = (1..=NODES).map(join).collect();
    send_xadds(&mut con, &xadd_pipes(&log, &joins, NODES)).await;
    let last_join = answer_all(&mut con, &layout, (1..=NODES).map(|i| (node(i), i as u64))).await;

    let mut config = ProjectorConfig::new(
        pantheon_store::Deployment::from_url(&redis.url).expect("redis url"),
        cluster.clone(),
    );
    config.instance = "bench".into();
    assert_eq!(
        (config.batch_entries, config.batch_max_args),
        (BATCH_ENTRIES, BATCH_MAX_ARGS),
        "the projector's default batching changed: update the bench's offline breakdown"
    );
    let shutdown = CancellationToken::new();
    let projector = tokio::spawn(pantheon_projector::run(config, shutdown.clone()));
    wait_applied(&mut poll, &layout, last_join).await;

    // 1. Assign.
    let assigns = assign_entries(keys);
    let pipes = xadd_pipes(&log, &assigns, ENTRIES_PER_PIPE);
    reset_stats(&mut con).await;
    take_commits();
    let cpu0 = (cpu_time(bench_pid), cpu_time(redis_pid));
    let started = Instant::now();
    let assign_ids = send_xadds(&mut con, &pipes).await;
    r.assign_xadd = started.elapsed();
    let last_assign = *assign_ids.last().expect("assign entries");
    wait_applied(&mut poll, &layout, last_assign).await;
    r.assign_total = started.elapsed();
    r.assign_cpu_bench = cpu_time(bench_pid).saturating_sub(cpu0.0);
    r.assign_cpu_redis = cpu_time(redis_pid).saturating_sub(cpu0.1);
    let stats = command_stats(&mut con).await;
    r.assign_script = script_time(&stats);
    r.assign_xreadgroup = stat_time(&stats, "xreadgroup");
    r.assign_commits = commits_of(assign_ids.len() as u64).await;
    drop(pipes);
    let hlen: u64 = redis::cmd("HLEN")
        .arg(layout.keymap())
        .query_async(&mut con)
        .await
        .expect("HLEN");
    assert_eq!(hlen as usize, keys.len(), "every key is in the keymap");

    // 2. node-1 (the first join: epoch 1) fails three probes and dies.
    let probes: Vec<_> = (0..3).map(|_| probe(1, 1, false)).collect();
    let pipes = xadd_pipes(&log, &probes, 3);
    reset_stats(&mut con).await;
    take_commits();
    let started = Instant::now();
    let probe_ids = send_xadds(&mut con, &pipes).await;
    let death = probe_ids[2];
    wait_applied(&mut poll, &layout, death).await;
    r.death_total = started.elapsed();
    r.death_script = script_time(&command_stats(&mut con).await);
    r.death_commits = commits_of(3).await;
    let events: redis::Value = redis::cmd("XREVRANGE")
        .arg(layout.events())
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(20)
        .query_async(&mut con)
        .await
        .expect("XREVRANGE events");
    let death_cause = death.to_string();
    r.death_moved = stream::parse_entries(events)
        .expect("events")
        .iter()
        .find(|e| e.get("type") == Some("rebalanced") && e.get("cause") == Some(&death_cause))
        .and_then(|e| e.get("moved")?.parse().ok())
        .expect("a rebalanced event caused by the third probe");
    let left: u64 = redis::cmd("SCARD")
        .arg(layout.node_keys(&node(1)))
        .query_async(&mut con)
        .await
        .expect("SCARD");
    assert_eq!(left, 0, "the dead node owns no keys");
    let checkpoint: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(layout.checkpoint())
        .query_async(&mut con)
        .await
        .expect("HGETALL checkpoint");

    shutdown.cancel();
    projector
        .await
        .expect("projector task")
        .expect("projector run");

    // Offline breakdown: the projector's own CPU work (read + parse, fold + stage), without
    // Redis executing anything, using the same functions and batch limits as its loop.
    offline_breakdown(r, &mut con, &layout, last_join, &assign_ids, &probe_ids).await;

    // 3. Rebuild: the log so far plus small probe entries (node-2..node-10 flapping:
    // fail → suspect, ok, ok → recovered; every entry changes a node, none moves keys).
    let filler: Vec<_> = (0..scale.filler)
        .map(|i| {
            let n = 2 + (i / 3) % (NODES - 1);
            probe(n, n as u64, i % 3 != 0)
        })
        .collect();
    r.filler = filler.len();
    send_xadds(&mut con, &xadd_pipes(&log, &filler, FILLER_PER_PIPE)).await;
    drop(filler);

    let started = Instant::now();
    let folded = rebuild::fold_log(&mut con, &layout, Some(death), Paging::Adaptive, |_| {})
        .await
        .expect("fold up to the death");
    r.fold_until_death = (folded.entries, started.elapsed());
    let live = checkpoint.get("checksum").cloned().unwrap_or_default();
    r.rebuild_matches = format!("{:016x}", folded.state.checksum()) == live;
    drop(folded);

    let started = Instant::now();
    let folded = rebuild::fold_log(&mut con, &layout, None, Paging::Adaptive, |_| {})
        .await
        .expect("fold the whole log");
    r.fold_all = (folded.entries, started.elapsed());
    assert!(folded.from_snapshot.is_none(), "no snapshot was written");
    drop(folded);

    // The same pages read and parsed without folding: the Redis + transfer + parse share.
    reset_stats(&mut con).await;
    let started = Instant::now();
    let mut start = "-".to_owned();
    loop {
        let page: redis::Value = redis::cmd("XRANGE")
            .arg(&log)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(10_000)
            .query_async(&mut con)
            .await
            .expect("XRANGE");
        let page = stream::parse_entries(page).expect("log page");
        match page.last() {
            Some(last) if page.len() == 10_000 => start = format!("({}", last.id),
            _ => break,
        }
    }
    r.xrange_all = started.elapsed();
    r.xrange_redis = stat_time(&command_stats(&mut con).await, "xrange");
}

async fn read_range(
    con: &mut MultiplexedConnection,
    log: &str,
    from: EntryId,
    to: EntryId,
    count: usize,
) -> (Vec<RawEntry>, Duration) {
    let started = Instant::now();
    let mut out: Vec<RawEntry> = Vec::new();
    let mut start = from.to_string();
    loop {
        let page: redis::Value = redis::cmd("XRANGE")
            .arg(log)
            .arg(&start)
            .arg(to.to_string())
            .arg("COUNT")
            .arg(count)
            .query_async(con)
            .await
            .expect("XRANGE");
        let page = stream::parse_entries(page).expect("log page");
        let n = page.len();
        out.extend(page);
        match out.last() {
            Some(last) if n == count => start = format!("({}", last.id),
            _ => return (out, started.elapsed()),
        }
    }
}

/// Replays what the projector's loop does for steps 1 and 2 in memory: read the entries
/// (`XRANGE` in pages the size of an `XREADGROUP COUNT 500` reply), fold and stage them into
/// batches bounded like the projector's; no commit.
async fn offline_breakdown(
    r: &mut Results,
    con: &mut MultiplexedConnection,
    layout: &Layout,
    last_join: EntryId,
    assign_ids: &[EntryId],
    probe_ids: &[EntryId],
) {
    let folded = rebuild::fold_log(con, layout, Some(last_join), Paging::Adaptive, |_| {})
        .await
        .expect("fold the joins");
    let mut state = folded.state;
    let mut cp = fresh_checkpoint(&state, Some(last_join));
    let log = layout.log();
    let (first, last) = (assign_ids[0], *assign_ids.last().expect("assigns"));
    let (mut entries, took) = read_range(con, &log, first, last, BATCH_ENTRIES).await;
    r.read_assign = took;
    // Only ours: the projector's prober watchdog may have logged an entry in between.
    entries.retain(|e| assign_ids.binary_search(&e.id).is_ok());
    let started = Instant::now();
    let mut rest = &entries[..];
    while !rest.is_empty() {
        let (staged, consumed) = stage_entries(
            &mut state,
            &cp,
            layout,
            rest,
            &service(rest),
            "bench",
            &bench_limits(),
        );
        rest = &rest[consumed..];
        r.stage_assign_batches += 1;
        r.stage_assign_args += staged.batch.args();
        cp = staged.checkpoint;
    }
    r.stage_assign = started.elapsed();
    drop(entries);
    let (mut probes, _) = read_range(con, &log, probe_ids[0], probe_ids[2], 100).await;
    probes.retain(|e| probe_ids.contains(&e.id));
    let (staged, _) = stage_entries(
        &mut state,
        &cp,
        layout,
        &probes[..2],
        &service(&probes[..2]),
        "bench",
        &bench_limits(),
    );
    cp = staged.checkpoint;
    let started = Instant::now();
    let (staged, _) = stage_entries(
        &mut state,
        &cp,
        layout,
        &probes[2..],
        &service(&probes[2..]),
        "bench",
        &bench_limits(),
    );
    r.stage_death = started.elapsed();
    r.stage_death_args = staged.batch.args();
}

/// The origins of entries the bench wrote as the service (it plays the prober).
fn service(entries: &[pantheon_store::RawEntry]) -> Vec<pantheon_domain::Origin> {
    vec![pantheon_domain::Origin::Service; entries.len()]
}

/// The projector's batch limits, without a time cut (the bench measures the fold itself).
fn bench_limits() -> pantheon_projector::stage::Limits<'static> {
    pantheon_projector::stage::Limits {
        max_args: BATCH_MAX_ARGS,
        max_fold: Duration::from_secs(3600),
        beat: &|| {},
    }
}

/// Step 4: the real binary in a child process, on a fresh Redis: steps 1 and 2 again,
/// reading its memory from `/proc`.
async fn child(r: &mut Results, keys: &[String], bin: &Path) {
    let redis = TestRedis::start().await;
    let cluster = redis.namespace().to_owned();
    let layout = Layout::new("pantheon", &cluster);
    let log = layout.log();
    let mut con = connect_to(&redis.url).await;
    let mut poll = connect_to(&redis.url).await;

    let joins: Vec<_> = (1..=NODES).map(join).collect();
    send_xadds(&mut con, &xadd_pipes(&log, &joins, NODES)).await;
    let last_join = answer_all(&mut con, &layout, (1..=NODES).map(|i| (node(i), i as u64))).await;
    let child = spawn_child(bin, &redis.url, &cluster, "bench-child");
    let pid = child.pid();
    wait_applied(&mut poll, &layout, last_join).await;
    let mut out = ChildResults {
        idle: memory_mib(pid),
        ..ChildResults::default()
    };

    let assigns = assign_entries(keys);
    let pipes = xadd_pipes(&log, &assigns, ENTRIES_PER_PIPE);
    drop(assigns);
    let started = Instant::now();
    let ids = send_xadds(&mut con, &pipes).await;
    wait_applied(&mut poll, &layout, *ids.last().expect("assigns")).await;
    out.assign_total = started.elapsed();
    drop(pipes);
    // Let the allocator settle (freed batches), then read.
    tokio::time::sleep(Duration::from_millis(500)).await;
    out.after_assign = memory_mib(pid);

    let mem = info(&mut con, "memory").await;
    r.redis_used = info_field(&mem, "used_memory_human")
        .unwrap_or("?")
        .to_owned();
    for (name, key) in [
        ("log", layout.log()),
        ("keymap", layout.keymap()),
        ("node-1 set", layout.node_keys(&node(1))),
        ("events", layout.events()),
    ] {
        let mib = memory_usage(&mut con, &key).await;
        r.redis_breakdown.push((name.to_owned(), mib));
    }

    let probes: Vec<_> = (0..3).map(|_| probe(1, 1, false)).collect();
    let started = Instant::now();
    let ids = send_xadds(&mut con, &xadd_pipes(&log, &probes, 3)).await;
    wait_applied(&mut poll, &layout, ids[2]).await;
    out.death_total = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    out.after_death = memory_mib(pid);
    drop(child);

    // A restarted projector loads the 1,000,000 keys from the read models: its memory is
    // the state's, without the transient read and commit buffers of a big catch-up.
    let started = Instant::now();
    let child = spawn_child(bin, &redis.url, &cluster, "bench-child-2");
    let pid = child.pid();
    let ids = send_xadds(&mut con, &xadd_pipes(&log, &[probe(2, 2, true)], 1)).await;
    wait_applied(&mut poll, &layout, ids[0]).await;
    out.restart_total = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    out.after_restart = memory_mib(pid);
    drop(child);
    r.child = Some(out);
}

fn spawn_child(bin: &Path, url: &str, cluster: &str, instance: &str) -> ChildGuard {
    let mut cmd = Process::new(bin);
    // It reads every `PANTHEON_*` variable as a setting (`PANTHEON_BENCH_STEPS` would be an
    // unknown key): give it only these.
    support::services::without_pantheon_env(&mut cmd);
    let child = cmd
        .env("PANTHEON_REDIS_URL", url)
        .env("PANTHEON_CLUSTER", cluster)
        .env("PANTHEON_PROJECTOR__INSTANCE", instance)
        .env("PANTHEON_PROJECTOR__LEASE_TTL_MS", "5000")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn pantheon-projector");
    ChildGuard(child)
}

// ---------------------------------------------------------------------------------------------
// Report.

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

fn per_sec(n: f64, d: Duration) -> f64 {
    n / d.as_secs_f64().max(1e-9)
}

fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn commits_summary(c: &[Commit]) -> String {
    let total: Duration = c.iter().map(|c| c.took).sum();
    let max = c.iter().map(|c| c.took).max().unwrap_or_default();
    let entries: u64 = c.iter().map(|c| c.entries).sum();
    let calls: u64 = c.iter().map(|c| c.calls).sum();
    format!(
        "{} commits ({} entries, {} Redis calls), commit time {} total, {} max",
        c.len(),
        entries,
        thousands(calls as f64),
        ms(total),
        ms(max)
    )
}

fn report(r: &Results) {
    let keys = r.keys as f64;
    let pantheon = r.assign_total > Duration::ZERO;
    let baseline = r.base_single > Duration::ZERO;
    let assign_rate = per_sec(keys, r.assign_total);
    let single = per_sec(keys, r.base_single);
    let variadic = per_sec(keys, r.base_variadic);
    let (fold_n, fold_t) = r.fold_all;
    let (pre_n, pre_t) = r.fold_until_death;
    let fold_rate = per_sec(fold_n as f64, fold_t);
    let small_n = fold_n.saturating_sub(pre_n);
    let small_t = fold_t.saturating_sub(pre_t).max(Duration::from_micros(1));
    let death_commit = r.death_commits.iter().map(|c| c.took).max();
    let ratio = |base: f64| {
        if pantheon {
            format!("Pantheon = {:.2}×", assign_rate / base)
        } else {
            String::new()
        }
    };

    println!();
    println!("| Measure | Result | Target | |");
    println!("|---|---|---|---|");
    if pantheon {
        println!(
            "| 1. Assign {} keys on {NODES} nodes, first XADD → checkpoint | {} ({} keys/s) | ≥ 300,000 keys/s | {} |",
            thousands(keys),
            ms(r.assign_total),
            thousands(assign_rate),
            verdict(assign_rate >= 300_000.0)
        );
    }
    if baseline {
        println!(
            "| Baseline: pipelined `HSET` + `SADD`, 1 key/command, {} commands/pipeline | {} ({} keys/s) | — | {} |",
            thousands(BASELINE_PIPE_COMMANDS as f64),
            ms(r.base_single),
            thousands(single),
            ratio(single)
        );
        println!(
            "| Baseline: variadic `HSET` (10,000 pairs) + `SADD` per node, pipelined | {} ({} keys/s) | — | {} |",
            ms(r.base_variadic),
            thousands(variadic),
            ratio(variadic)
        );
    }
    if pantheon {
        println!(
            "| 2. Node dies ({} keys, 3 failed probes) → checkpoint passes the 3rd | {} (commit {}, {} keys moved) | ≤ 2 s | {} |",
            thousands(keys),
            ms(r.death_total),
            death_commit.map_or("?".into(), ms),
            thousands(r.death_moved as f64),
            verdict(r.death_total <= Duration::from_secs(2))
        );
        println!(
            "| 3. Rebuild: `fold_log` of {} entries ({} keys + {} probes) | {} ({} entries/s) | ≥ 100,000 entries/s | {} |",
            thousands(fold_n as f64),
            thousands(keys),
            thousands(r.filler as f64),
            ms(fold_t),
            thousands(fold_rate),
            verdict(fold_rate >= 100_000.0)
        );
        println!(
            "| 3'. … of which the {} small entries alone | {} ({} entries/s) | ≥ 100,000 entries/s | {} |",
            thousands(small_n as f64),
            ms(small_t),
            thousands(per_sec(small_n as f64, small_t)),
            verdict(per_sec(small_n as f64, small_t) >= 100_000.0)
        );
    }
    if let Some(c) = &r.child {
        println!(
            "| 4. Projector RSS with {} keys (real binary; VmRSS / VmHWM) | {:.0} MiB / {:.0} MiB (idle {:.0} MiB; after the death {:.0} / {:.0} MiB) | ≤ 200 MB | {} |",
            thousands(keys),
            c.after_assign.0,
            c.after_assign.1,
            c.idle.0,
            c.after_death.0,
            c.after_death.1,
            verdict(c.after_death.1 * 1024.0 * 1024.0 <= 200e6)
        );
        println!(
            "| 4'. … a restarted projector that loaded the {} keys from the read models | {:.0} MiB / {:.0} MiB (load + first commit {}) | ≤ 200 MB | {} |",
            thousands(keys),
            c.after_restart.0,
            c.after_restart.1,
            ms(c.restart_total),
            verdict(c.after_restart.1 * 1024.0 * 1024.0 <= 200e6)
        );
        let parts: Vec<String> = r
            .redis_breakdown
            .iter()
            .map(|(n, m)| format!("{n} {m:.0} MiB"))
            .collect();
        println!(
            "| Redis `used_memory` after {} keys (context) | {} ({}) | — | |",
            thousands(keys),
            r.redis_used,
            parts.join(", ")
        );
    }

    println!();
    println!("Where the time goes:");
    if pantheon {
        println!(
            "  1. assign: XADD pipelines done after {}; {}",
            ms(r.assign_xadd),
            commits_summary(&r.assign_commits)
        );
        println!(
            "     Redis-side: EVALSHA (commits and lease renewals) {} in {} calls, XREADGROUP {}; CPU during the run: bench process (projector + producer) {}, redis-server {}",
            ms(r.assign_script.1),
            r.assign_script.0,
            ms(r.assign_xreadgroup),
            ms(r.assign_cpu_bench),
            ms(r.assign_cpu_redis)
        );
        println!(
            "     offline, same code, no Redis writes: read + parse {}, fold + stage {} ({} batches, {} args)",
            ms(r.read_assign),
            ms(r.stage_assign),
            r.stage_assign_batches,
            thousands(r.stage_assign_args as f64)
        );
    }
    if baseline {
        println!(
            "     baseline: Redis-side HSET + SADD {} (1 key/command), {} (variadic); owners computed in {} (not counted)",
            ms(r.base_single_redis),
            ms(r.base_variadic_redis),
            ms(r.base_owners)
        );
    }
    if pantheon {
        println!(
            "  2. death: {}; Redis-side EVALSHA {} in {} calls; offline fold + stage of the 3rd probe {} ({} args)",
            commits_summary(&r.death_commits),
            ms(r.death_script.1),
            r.death_script.0,
            ms(r.stage_death),
            thousands(r.stage_death_args as f64)
        );
        println!(
            "  3. rebuild: fold up to the death ({} entries) {}; XRANGE + parse of the whole log without folding {} (Redis-side XRANGE {}); folded checksum == live checkpoint: {}",
            pre_n,
            ms(pre_t),
            ms(r.xrange_all),
            ms(r.xrange_redis),
            r.rebuild_matches
        );
    }
    if let Some(c) = &r.child {
        println!(
            "  4. real binary: assign {} ({} keys/s), death {}",
            ms(c.assign_total),
            thousands(per_sec(keys, c.assign_total)),
            ms(c.death_total)
        );
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let scale = if full {
        Scale {
            keys: 1_000_000,
            filler: 200_000,
            child: std::env::var("PANTHEON_BENCH_NO_CHILD").is_err(),
        }
    } else {
        println!("smoke run at 1/50 scale (use `cargo bench` for the real numbers)");
        Scale {
            keys: 20_000,
            filler: 4_000,
            child: false,
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    init_tracing();
    if std::env::var(pantheon_test_support::URL_ENV).is_ok_and(|u| !u.trim().is_empty()) {
        eprintln!(
            "warning: {} is set: measuring on that (possibly shared) Redis instead of fresh ones",
            pantheon_test_support::URL_ENV
        );
    }
    // `PANTHEON_BENCH_STEPS=memory` (say) runs only some parts: baseline, pantheon, memory.
    let steps = std::env::var("PANTHEON_BENCH_STEPS").unwrap_or_default();
    let run = |step: &str| steps.is_empty() || steps.split(',').any(|s| s.trim() == step);
    let bin = if scale.child && run("memory") {
        release_binary(
            "pantheon-projector-service",
            "pantheon-projector",
            "PANTHEON_PROJECTOR_BIN",
        )
    } else {
        None
    };
    let all_keys = keys(scale.keys);
    let mut r = Results {
        keys: scale.keys,
        ..Results::default()
    };
    runtime.block_on(async {
        let started = Instant::now();
        if run("baseline") {
            baseline(&mut r, &all_keys).await;
            eprintln!("baseline done after {}", ms(started.elapsed()));
        }
        if run("pantheon") {
            pantheon(&mut r, &all_keys, scale).await;
            eprintln!("steps 1-3 done after {}", ms(started.elapsed()));
        }
        if let Some(bin) = &bin {
            child(&mut r, &all_keys, bin).await;
            eprintln!("step 4 done after {}", ms(started.elapsed()));
        }
    });
    report(&r);
}
