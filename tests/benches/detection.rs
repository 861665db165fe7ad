//! The prober's detection targets, measured end to end with real HTTP servers on loopback, a
//! real projector and real `redis-server`s started for the run (never the machine's shared
//! Redis), printed as Markdown tables:
//!
//! 1. **Detection, connection refused**: a healthy node is joined and probed for a random
//!    1–2 s (so the stop falls anywhere in the 1 s probe interval), then its listener closes.
//!    Measured: from the stop until `died` is readable in the events stream (a blocking
//!    `XREAD` on it), at the default prober settings and the default policy (fall 3).
//! 2. **Detection, hang**: the same, but the node keeps accepting connections and never
//!    answers (the health handler never returns).
//! 3. **Scale**: one prober (the real `pantheon-prober` binary, as a child process) on 5,000
//!    nodes at the 1 s interval, for a 20 s window after a warm-up: its CPU time (utime +
//!    stime from `/proc/<pid>/stat`), the probes the HTTP servers answered per second, and
//!    that no node was reported failed. Twice: one listener per node (5,000 host:port pairs,
//!    one kept-alive connection each, as with a real fleet), and 5,000 paths on 4 listeners.
//! 4. **Overload** (ADR 0014): 2,000 nodes on one axum server whose capacity drops to half the
//!    steady probe rate for 60 s, then returns: deaths (false ones: nodes that answered every
//!    probe they got), suspect events, `prober_degraded` entries, and the time until no node
//!    is suspect and the projector's lag is 0 (`overload` in `detection/overload.rs`).
//! 5. **Loss** (ADR 0019): the same, but the probes over capacity are never answered (pure
//!    loss), with the prober's intermittent rule off and on.
//!
//! ```text
//! cargo bench -p pantheon-tests --bench detection
//! ```
//!
//! The scale step builds the binary first with `cargo build --release -p
//! pantheon-prober-service` (or set `PANTHEON_PROBER_BIN` to a binary). Without it the prober
//! runs in-process and only the whole bench process's CPU can be reported. Without `--bench`
//! (as in `cargo test --benches`) a few trials and a 200-node scale run serve as a smoke
//! test. `PANTHEON_BENCH_STEPS=refused,hang,scale,overload,loss` (any subset) runs only some steps; the
//! opt-in step `joins` times the projector folding 250–1,000 single `join` entries into the
//! default ring and into rendezvous placement (why the scale step uses rendezvous). The opt-in
//! step `soak` is the scale step on 8 listeners for a long window: 10,000 nodes for 10
//! minutes (`PANTHEON_BENCH_SOAK_NODES`, `PANTHEON_BENCH_SOAK_SECS`), counting false suspects
//! and deaths.
//! Results and the machine they were taken on are in `docs/benchmarks.md`.

#[path = "detection/overload.rs"]
mod overload;
mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path as FsPath;
use std::process::{Command as Process, Stdio};
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::append::{xadd, xadd_cmd};
use support::stream::{connect_to, follow};
use support::{last_applied, wall_ms};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use pantheon_domain::entry::{Command, LogEntry};
use pantheon_domain::policy::PolicyChange;
use pantheon_domain::{EntryId, NodeId, Strategy};
use pantheon_prober::ProberConfig;
use pantheon_projector::ProjectorConfig;
use pantheon_store::{Layout, RawEntry, readmodel, stream};
use pantheon_test_support::TestRedis;
use pantheon_test_support::process::{
    ChildGuard, cpu_time, load_average, memory_mib, release_binary,
};
use rand::Rng;
use redis::aio::MultiplexedConnection;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(60);
/// How long a trial waits for `died` before counting the node as never detected.
const DETECT_WAIT: Duration = Duration::from_secs(10);
/// How long the `joins` step waits for a fleet's joins to be applied.
const JOINS_WAIT: Duration = Duration::from_secs(60);
/// Join entries per XADD pipeline.
const JOINS_PER_PIPE: usize = 500;

#[derive(Debug, Clone, Copy)]
struct Plan {
    refused_rounds: usize,
    hang_rounds: usize,
    per_round: usize,
    scale_nodes: usize,
    scale_warmup: Duration,
    scale_window: Duration,
    child: bool,
}

fn node_id(s: &str) -> NodeId {
    NodeId::new(s).expect("node id")
}

// ---------------------------------------------------------------------------------------------
// A worker node for the detection trials: healthy, hanging, or stopped (port closed).

#[derive(Debug, Default)]
struct NodeShared {
    hang: AtomicU8,
    hits: AtomicU64,
}

struct HealthNode {
    addr: SocketAddr,
    shared: Arc<NodeShared>,
    server: Option<(CancellationToken, JoinHandle<()>)>,
}

async fn node_health(State(s): State<Arc<NodeShared>>) -> (StatusCode, &'static str) {
    s.hits.fetch_add(1, Ordering::Relaxed);
    if s.hang.load(Ordering::Relaxed) == 1 {
        std::future::pending::<()>().await;
    }
    (StatusCode::OK, "ok")
}

impl HealthNode {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::<NodeShared>::default();
        let app = Router::new()
            .route("/health", get(node_health))
            .with_state(shared.clone());
        let token = CancellationToken::new();
        let t = token.clone();
        let handle = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(t.cancelled_owned())
                .await;
        });
        Self {
            addr,
            shared,
            server: Some((token, handle)),
        }
    }

    fn url(&self) -> String {
        format!("http://{}/health", self.addr)
    }

    fn hits(&self) -> u64 {
        self.shared.hits.load(Ordering::Relaxed)
    }

    fn hang(&self) {
        self.shared.hang.store(1, Ordering::Relaxed);
    }

    /// Closes the listener (and idle connections): probes now get "connection refused".
    async fn stop(&mut self) {
        if let Some((token, handle)) = self.server.take() {
            token.cancel();
            handle.abort();
            let _ = handle.await;
        }
    }
}

impl Drop for HealthNode {
    fn drop(&mut self) {
        if let Some((token, handle)) = self.server.take() {
            token.cancel();
            handle.abort();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Redis helpers.

async fn wait_applied(con: &mut MultiplexedConnection, layout: &Layout, id: EntryId) {
    assert!(
        applied_within(con, layout, id, WAIT).await,
        "entry {id} not applied within {WAIT:?}"
    );
}

async fn applied_within(
    con: &mut MultiplexedConnection,
    layout: &Layout,
    id: EntryId,
    within: Duration,
) -> bool {
    let deadline = Instant::now() + within;
    while last_applied(con, layout).await.is_none_or(|l| l < id) {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

async fn xrange(con: &mut MultiplexedConnection, key: &str) -> Vec<RawEntry> {
    let v: redis::Value = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query_async(con)
        .await
        .expect("XRANGE");
    stream::parse_entries(v).expect("stream entries")
}

// ---------------------------------------------------------------------------------------------
// Events: one blocking reader records when each event became readable.

#[derive(Debug, Clone)]
struct Seen {
    kind: String,
    node: String,
    at: Instant,
    wall_ms: u64,
}

#[derive(Clone, Default)]
struct Watcher {
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Watcher {
    fn spawn(&self, url: String, key: String, stop: CancellationToken) -> JoinHandle<()> {
        let seen = self.seen.clone();
        follow(url, key, "0-0", 100, stop, move |entries| {
            let (at, wall) = (Instant::now(), wall_ms());
            let mut seen = seen.lock().expect("watcher lock");
            for e in entries {
                seen.push(Seen {
                    kind: e.get("type").unwrap_or_default().to_owned(),
                    node: e.get("node").unwrap_or_default().to_owned(),
                    at,
                    wall_ms: wall,
                });
            }
        })
    }

    fn find(&self, kind: &str, node: &str) -> Option<Seen> {
        self.seen
            .lock()
            .expect("watcher lock")
            .iter()
            .find(|s| s.kind == kind && s.node == node)
            .cloned()
    }

    fn count(&self, kind: &str) -> usize {
        self.seen
            .lock()
            .expect("watcher lock")
            .iter()
            .filter(|s| s.kind == kind)
            .count()
    }
}

// ---------------------------------------------------------------------------------------------
// Steps 1 and 2: detection latency.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Refused,
    Hang,
}

impl Failure {
    fn name(self) -> &'static str {
        match self {
            Failure::Refused => "refused",
            Failure::Hang => "hang",
        }
    }
}

#[derive(Debug, Clone)]
struct Trial {
    node: String,
    warm: Duration,
    hits_before: u64,
    stop_wall_ms: u64,
    /// Stop → `suspect` readable.
    suspect: Option<Duration>,
    /// Stop → `died` readable.
    died: Option<Duration>,
    died_wall_ms: Option<u64>,
    /// Wall-clock ms of the failures the prober logged for this node (from the log ids).
    failures_ms: Vec<u64>,
    failure_kinds: Vec<String>,
}

/// Healthy nodes joined next to the trial nodes. A trial round stops `per_round` nodes at
/// once; alone, that would be every node the prober has, and a prober that sees most of its
/// nodes fail at once suspects itself and holds the deaths back (ADR 0008). With these, a
/// round is 5 of 25 nodes failing: a fleet in which a few nodes fail.
const FILLERS: usize = 20;

struct Env {
    _fillers: Vec<HealthNode>,
    _redis: TestRedis,
    layout: Layout,
    con: MultiplexedConnection,
    watcher: Watcher,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    config: ProberConfig,
}

impl Env {
    async fn start() -> Self {
        let redis = TestRedis::start().await;
        let cluster = redis.namespace().to_owned();
        let layout = Layout::new("pantheon", &cluster);
        let con = connect_to(&redis.url).await;
        let stop = CancellationToken::new();
        let watcher = Watcher::default();
        let mut tasks = vec![watcher.spawn(redis.url.clone(), layout.events(), stop.clone())];
        // The defaults users get: a real projector and a prober with default cadences.
        let mut pc = ProjectorConfig::new(
            pantheon_store::Deployment::from_url(&redis.url).expect("redis url"),
            cluster.clone(),
        );
        pc.instance = "bench-projector".into();
        let t = stop.clone();
        tasks.push(tokio::spawn(async move {
            pantheon_projector::run(pc, t).await.expect("projector run");
        }));
        let mut config = ProberConfig::new(
            pantheon_store::Deployment::from_url(&redis.url).expect("redis url"),
            cluster.clone(),
        );
        config.id = "bench-prober".into();
        let mut con = con;
        let mut fillers = Vec::new();
        let mut last = None;
        for i in 0..FILLERS {
            let node = HealthNode::start().await;
            let join = LogEntry::new(Command::Join {
                node: node_id(&format!("filler-{i}")),
                url: node.url(),
                weight: None,
                handoff: false,
            });
            last = Some(xadd(&mut con, &layout.log(), &join).await);
            fillers.push(node);
        }
        if let Some(id) = last {
            wait_applied(&mut con, &layout, id).await;
        }
        let (c, t) = (config.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            pantheon_prober::run(c, t).await.expect("prober run");
        }));
        Self {
            _fillers: fillers,
            _redis: redis,
            layout,
            con,
            watcher,
            stop,
            tasks,
            config,
        }
    }

    async fn shutdown(self) {
        self.stop.cancel();
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

async fn trial(
    mut con: MultiplexedConnection,
    layout: Layout,
    watcher: Watcher,
    name: String,
    failure: Failure,
) -> Trial {
    let mut node = HealthNode::start().await;
    let log = layout.log();
    let join = LogEntry::new(Command::Join {
        node: node_id(&name),
        url: node.url(),
        weight: None,
        handoff: false,
    });
    let id = xadd(&mut con, &log, &join).await;
    wait_applied(&mut con, &layout, id).await;
    let warm = Duration::from_millis(rand::rng().random_range(1000..=2000));
    tokio::time::sleep(warm).await;
    let hits_before = node.hits();
    let (stopped, stop_wall_ms) = (Instant::now(), wall_ms());
    match failure {
        Failure::Refused => node.stop().await,
        Failure::Hang => node.hang(),
    }
    let deadline = stopped + DETECT_WAIT;
    let died = loop {
        if let Some(s) = watcher.find("died", &name) {
            break Some(s);
        }
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let suspect = watcher.find("suspect", &name);
    // Done with it: a left node is no longer probed.
    xadd(
        &mut con,
        &log,
        &LogEntry::new(Command::Leave {
            node: node_id(&name),
        }),
    )
    .await;
    drop(node);
    Trial {
        node: name,
        warm,
        hits_before,
        stop_wall_ms,
        suspect: suspect.map(|s| s.at.saturating_duration_since(stopped)),
        died: died
            .as_ref()
            .map(|s| s.at.saturating_duration_since(stopped)),
        died_wall_ms: died.map(|s| s.wall_ms),
        failures_ms: Vec::new(),
        failure_kinds: Vec::new(),
    }
}

async fn detection(env: &mut Env, failure: Failure, rounds: usize, per_round: usize) -> Vec<Trial> {
    let mut trials = Vec::new();
    for round in 0..rounds {
        let handles: Vec<_> = (0..per_round)
            .map(|i| {
                let name = format!("{}-r{round}-n{i}", failure.name());
                tokio::spawn(trial(
                    env.con.clone(),
                    env.layout.clone(),
                    env.watcher.clone(),
                    name,
                    failure,
                ))
            })
            .collect();
        for h in handles {
            trials.push(h.await.expect("trial task"));
        }
        eprintln!(
            "  {} round {}/{rounds}: {}",
            failure.name(),
            round + 1,
            trials[trials.len() - per_round..]
                .iter()
                .map(|t| t.died.map_or("never".into(), ms))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    // The failures the prober logged for each node, for the breakdown.
    let log = xrange(&mut env.con, &env.layout.log()).await;
    for t in &mut trials {
        for e in &log {
            if e.get("type") == Some("probe")
                && e.get("node") == Some(t.node.as_str())
                && e.get("ok") == Some("0")
            {
                t.failures_ms.push(e.id.ms);
                t.failure_kinds
                    .push(e.get("error").unwrap_or("?").to_owned());
            }
        }
    }
    trials
}

// ---------------------------------------------------------------------------------------------
// Step 3: one prober, many nodes.

struct Counters {
    base: Instant,
    total: AtomicU64,
    per_node: Vec<AtomicU32>,
    /// Probes answered per 100 ms since `base`.
    buckets: Vec<AtomicU32>,
}

const BUCKET: Duration = Duration::from_millis(100);

impl Counters {
    fn new(nodes: usize) -> Self {
        Self {
            base: Instant::now(),
            total: AtomicU64::new(0),
            per_node: (0..nodes).map(|_| AtomicU32::new(0)).collect(),
            // 100 ms buckets for 20 minutes: the soak step's 10-minute window and its set-up.
            buckets: (0..12_000).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    fn bucket_of(&self, at: Instant) -> usize {
        (at.saturating_duration_since(self.base).as_millis() / BUCKET.as_millis()) as usize
    }

    fn per_node(&self) -> Vec<u32> {
        self.per_node
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }
}

async fn counted_health(
    State(c): State<Arc<Counters>>,
    Path(n): Path<usize>,
) -> (StatusCode, &'static str) {
    c.total.fetch_add(1, Ordering::Relaxed);
    if let Some(h) = c.per_node.get(n) {
        h.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(b) = c.buckets.get(c.bucket_of(Instant::now())) {
        b.fetch_add(1, Ordering::Relaxed);
    }
    (StatusCode::OK, "ok")
}

#[derive(Debug, Clone, Default)]
struct ScaleResult {
    label: String,
    nodes: usize,
    listeners: usize,
    child: bool,
    join_fold: Duration,
    first_probe_all: Option<Duration>,
    window: Duration,
    prober_cpu: Duration,
    bench_cpu: Duration,
    redis_cpu: Duration,
    prober_rss: f64,
    probes: u64,
    per_second: (u32, u32),
    peak_100ms: u32,
    per_node: (u32, u32),
    unprobed_in_window: usize,
    failures_logged: usize,
    failure_kinds: BTreeMap<String, usize>,
    suspect_events: usize,
    died_events: usize,
    log_probe_entries: usize,
}

enum RunningProber {
    Child(ChildGuard),
    InProcess(CancellationToken, JoinHandle<()>),
}

impl RunningProber {
    fn pid(&self) -> u32 {
        match self {
            RunningProber::Child(c) => c.pid(),
            RunningProber::InProcess(..) => std::process::id(),
        }
    }

    async fn stop(self) {
        match self {
            RunningProber::Child(c) => drop(c),
            RunningProber::InProcess(token, handle) => {
                token.cancel();
                let _ = tokio::time::timeout(Duration::from_secs(10), handle).await;
            }
        }
    }
}

/// Joins `node-<i>` with `urls[i]`, pipelined; returns the time until the projector applied
/// the last join, or `None` if it did not within `within`.
async fn join_all(
    con: &mut MultiplexedConnection,
    layout: &Layout,
    urls: &[String],
    within: Duration,
) -> Option<Duration> {
    let log = layout.log();
    let started = Instant::now();
    let mut last = EntryId::ZERO;
    for (c, chunk) in urls.chunks(JOINS_PER_PIPE).enumerate() {
        let mut pipe = redis::pipe();
        for (i, url) in chunk.iter().enumerate() {
            let entry = LogEntry::new(Command::Join {
                node: node_id(&format!("node-{}", c * JOINS_PER_PIPE + i)),
                url: url.clone(),
                weight: None,
                handoff: false,
            });
            pipe.add_command(xadd_cmd(&log, &entry));
        }
        let ids: Vec<String> = pipe.query_async(con).await.expect("XADD joins");
        last = ids
            .last()
            .and_then(|s| s.parse().ok())
            .expect("join entry id");
    }
    applied_within(con, layout, last, within)
        .await
        .then(|| started.elapsed())
}

/// Opt-in step `joins`: how long the projector takes to fold a fleet registering itself one
/// `join` entry per node, with the default ring and with rendezvous placement (no prober).
async fn joins(sizes: &[usize]) -> Vec<(usize, &'static str, Option<Duration>)> {
    let mut out = Vec::new();
    for &n in sizes {
        for strategy in [Strategy::Ring, Strategy::Rendezvous] {
            let redis = TestRedis::start().await;
            let cluster = redis.namespace().to_owned();
            let layout = Layout::new("pantheon", &cluster);
            let mut con = connect_to(&redis.url).await;
            let stop = CancellationToken::new();
            let mut pc = ProjectorConfig::new(
                pantheon_store::Deployment::from_url(&redis.url).expect("redis url"),
                cluster.clone(),
            );
            pc.instance = "bench-projector".into();
            let t = stop.clone();
            let projector = tokio::spawn(async move {
                pantheon_projector::run(pc, t).await.expect("projector run");
            });
            if strategy == Strategy::Rendezvous {
                let policy = LogEntry::new(Command::Policy(PolicyChange {
                    strategy: Some(strategy),
                    ..PolicyChange::default()
                }));
                let id = xadd(&mut con, &layout.log(), &policy).await;
                wait_applied(&mut con, &layout, id).await;
            }
            let urls: Vec<String> = (0..n)
                .map(|i| format!("http://127.0.0.1:9/health/{i}"))
                .collect();
            let took = join_all(&mut con, &layout, &urls, JOINS_WAIT).await;
            eprintln!(
                "  joins: {n} nodes, {}: {}",
                strategy.as_str(),
                took.map_or("not applied".into(), ms)
            );
            out.push((n, strategy.as_str(), took));
            stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(10), projector).await;
        }
    }
    out
}

/// A count from the environment, or `default`.
fn env_count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `listeners`: `None` = one listener per node, `Some(k)` = all nodes' paths on k listeners.
async fn scale(
    bin: Option<&FsPath>,
    nodes: usize,
    listeners: Option<usize>,
    warmup: Duration,
    window: Duration,
) -> ScaleResult {
    let redis = TestRedis::start().await;
    let cluster = redis.namespace().to_owned();
    let layout = Layout::new("pantheon", &cluster);
    let log = layout.log();
    let mut con = connect_to(&redis.url).await;
    let stop = CancellationToken::new();
    let watcher = Watcher::default();
    let watch = watcher.spawn(redis.url.clone(), layout.events(), stop.clone());
    let mut pc = ProjectorConfig::new(
        pantheon_store::Deployment::from_url(&redis.url).expect("redis url"),
        cluster.clone(),
    );
    pc.instance = "bench-projector".into();
    let t = stop.clone();
    let projector = tokio::spawn(async move {
        pantheon_projector::run(pc, t).await.expect("projector run");
    });

    // Folding 5,000 single joins into the default 2048-vnode ring rebuilds the ring per join
    // (O(N² × vnodes)); the prober does not care how keys are placed, so use rendezvous.
    let policy = LogEntry::new(Command::Policy(PolicyChange {
        strategy: Some(Strategy::Rendezvous),
        ..PolicyChange::default()
    }));
    let id = xadd(&mut con, &log, &policy).await;
    wait_applied(&mut con, &layout, id).await;

    // The health servers.
    let counters = Arc::new(Counters::new(nodes));
    let app = Router::new()
        .route("/health/{n}", get(counted_health))
        .with_state(counters.clone());
    let n_listeners = listeners.unwrap_or(nodes);
    let mut addrs = Vec::with_capacity(n_listeners);
    let mut servers = Vec::with_capacity(n_listeners);
    for _ in 0..n_listeners {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        addrs.push(listener.local_addr().expect("local addr"));
        let app = app.clone();
        servers.push(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
    }

    // Join the nodes, pipelined.
    let urls: Vec<String> = (0..nodes)
        .map(|n| format!("http://{}/health/{n}", addrs[n % n_listeners]))
        .collect();
    let join_fold = join_all(&mut con, &layout, &urls, WAIT)
        .await
        .expect("joins applied in time");

    // The prober.
    let mut config = ProberConfig::new(
        pantheon_store::Deployment::from_url(&redis.url).expect("redis url"),
        cluster.clone(),
    );
    config.id = "bench-prober".into();
    let prober = match bin {
        Some(bin) => RunningProber::Child(ChildGuard(
            support::services::without_pantheon_env(&mut Process::new(bin))
                .env("PANTHEON_REDIS_URL", &redis.url)
                .env("PANTHEON_CLUSTER", &cluster)
                .env("PANTHEON_PROBER__ID", &config.id)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn pantheon-prober"),
        )),
        None => {
            let token = CancellationToken::new();
            let t = token.clone();
            RunningProber::InProcess(
                token,
                tokio::spawn(async move {
                    pantheon_prober::run(config, t).await.expect("prober run");
                }),
            )
        }
    };
    let prober_started = Instant::now();
    let pid = prober.pid();
    let redis_pid = pantheon_test_support::server_pid(&mut con).await;

    // Warm-up: every node probed at least once.
    let mut first_probe_all = None;
    let warm_until = prober_started + warmup;
    while Instant::now() < warm_until {
        if first_probe_all.is_none() && counters.per_node().iter().all(|&h| h > 0) {
            first_probe_all = Some(prober_started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The measured window.
    let (cpu0, self0, redis0) = (
        cpu_time(pid),
        cpu_time(std::process::id()),
        cpu_time(redis_pid),
    );
    let (hits0, per0, t0) = (
        counters.total.load(Ordering::Relaxed),
        counters.per_node(),
        Instant::now(),
    );
    tokio::time::sleep(window).await;
    let (cpu1, self1, redis1) = (
        cpu_time(pid),
        cpu_time(std::process::id()),
        cpu_time(redis_pid),
    );
    let (hits1, per1, t1) = (
        counters.total.load(Ordering::Relaxed),
        counters.per_node(),
        Instant::now(),
    );
    let prober_rss = memory_mib(pid).0;

    let per_node: Vec<u32> = per1.iter().zip(&per0).map(|(b, a)| b - a).collect();
    let (b0, b1) = (counters.bucket_of(t0) + 1, counters.bucket_of(t1));
    let buckets: Vec<u32> = counters.buckets[b0..b1]
        .iter()
        .map(|b| b.load(Ordering::Relaxed))
        .collect();
    let seconds: Vec<u32> = buckets.chunks_exact(10).map(|c| c.iter().sum()).collect();

    prober.stop().await;
    let entries = xrange(&mut con, &log).await;
    let probes: Vec<&RawEntry> = entries
        .iter()
        .filter(|e| e.get("type") == Some("probe"))
        .collect();
    let mut failure_kinds = BTreeMap::new();
    for e in probes.iter().filter(|e| e.get("ok") == Some("0")) {
        *failure_kinds
            .entry(e.get("error").unwrap_or("?").to_owned())
            .or_insert(0) += 1;
    }
    let result = ScaleResult {
        label: match listeners {
            None => format!("{nodes} listeners, one per node"),
            Some(k) => format!("{k} listeners, one path per node"),
        },
        nodes,
        listeners: n_listeners,
        child: bin.is_some(),
        join_fold,
        first_probe_all,
        window: t1 - t0,
        prober_cpu: cpu1.saturating_sub(cpu0),
        bench_cpu: self1.saturating_sub(self0),
        redis_cpu: redis1.saturating_sub(redis0),
        prober_rss,
        probes: hits1 - hits0,
        per_second: (
            seconds.iter().copied().min().unwrap_or(0),
            seconds.iter().copied().max().unwrap_or(0),
        ),
        peak_100ms: buckets.iter().copied().max().unwrap_or(0),
        per_node: (
            per_node.iter().copied().min().unwrap_or(0),
            per_node.iter().copied().max().unwrap_or(0),
        ),
        unprobed_in_window: per_node.iter().filter(|&&h| h == 0).count(),
        failures_logged: failure_kinds.values().sum(),
        failure_kinds,
        suspect_events: watcher.count("suspect"),
        died_events: watcher.count("died"),
        log_probe_entries: probes.len(),
    };
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), projector).await;
    let _ = watch.await;
    for s in servers {
        s.abort();
    }
    result
}

// ---------------------------------------------------------------------------------------------
// Report.

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn ms_u(v: u64) -> String {
    format!("{v} ms")
}

/// Nearest-rank percentile of sorted values.
fn pct<T: Copy>(sorted: &[T], p: f64) -> T {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn verdict(ok: bool) -> &'static str {
    if ok { "**met**" } else { "**missed**" }
}

fn detection_report(
    failure: Failure,
    trials: &[Trial],
    target: Duration,
    expected: &str,
    config: &ProberConfig,
) -> Option<String> {
    let mut died: Vec<Duration> = trials.iter().filter_map(|t| t.died).collect();
    died.sort();
    let missing = trials.len() - died.len();
    println!();
    println!(
        "### Detection, {} ({} trials)",
        match failure {
            Failure::Refused => "connection refused",
            Failure::Hang => "hang (accepts, never answers)",
        },
        trials.len()
    );
    println!();
    if died.is_empty() {
        println!("no `died` event within {DETECT_WAIT:?} in any trial");
        return None;
    }
    let mean = died.iter().sum::<Duration>() / died.len() as u32;
    println!("| stop → `died` readable | min | median | mean | p90 | max | target | |");
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    let worst = *died.last().expect("non-empty");
    println!(
        "| {} trials{} | {} | {} | {} | {} | {} | ≤ {} | {} |",
        died.len(),
        if missing > 0 {
            format!(" ({missing} never died)")
        } else {
            String::new()
        },
        ms(died[0]),
        ms(pct(&died, 50.0)),
        ms(mean),
        ms(pct(&died, 90.0)),
        ms(worst),
        ms(target),
        verdict(missing == 0 && worst <= target)
    );
    println!();
    println!("Expected: {expected}.");

    // Breakdown from the log ids (ms resolution): where the time goes.
    let mut wait_first = Vec::new();
    let mut first_to_last = Vec::new();
    let mut last_to_died = Vec::new();
    let mut suspect = Vec::new();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let fall = 3usize;
    for t in trials {
        for k in &t.failure_kinds {
            *kinds.entry(k.clone()).or_default() += 1;
        }
        if let Some(s) = t.suspect {
            suspect.push(s.as_millis() as u64);
        }
        if t.failures_ms.len() >= fall {
            let first = t.failures_ms[0];
            let last = t.failures_ms[fall - 1];
            wait_first.push(first.saturating_sub(t.stop_wall_ms));
            first_to_last.push(last.saturating_sub(first));
            if let Some(d) = t.died_wall_ms {
                last_to_died.push(d.saturating_sub(last));
            }
        }
    }
    println!();
    println!("Where the time goes (stream-id clock, ms resolution):");
    println!();
    println!("| phase | min | median | p90 | max |");
    println!("|---|---:|---:|---:|---:|");
    for (name, v) in [
        (
            "stop → 1st failure logged (wait for the next probe + its duration)",
            &mut wait_first,
        ),
        (
            "1st → 3rd failure logged (2 × suspect interval + probe durations)",
            &mut first_to_last,
        ),
        (
            "3rd failure logged → `died` readable (projector fold + commit)",
            &mut last_to_died,
        ),
        ("stop → `suspect` readable", &mut suspect),
    ] {
        v.sort();
        if v.is_empty() {
            continue;
        }
        println!(
            "| {name} | {} | {} | {} | {} |",
            ms_u(v[0]),
            ms_u(pct(v, 50.0)),
            ms_u(pct(v, 90.0)),
            ms_u(*v.last().expect("non-empty"))
        );
    }
    let hits: Vec<u64> = trials.iter().map(|t| t.hits_before).collect();
    let warm: Vec<Duration> = trials.iter().map(|t| t.warm).collect();
    println!();
    println!(
        "Failure kinds logged: {}. Probes answered before the stop: {}–{} per node; healthy \
         phase {}–{}. Settings: interval {:?}, suspect_interval {:?}, timeout {:?}, jitter \
         ±{:.0} %, fall 3.",
        kinds
            .iter()
            .map(|(k, n)| format!("{k} × {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        hits.iter().min().copied().unwrap_or(0),
        hits.iter().max().copied().unwrap_or(0),
        ms(warm.iter().min().copied().unwrap_or_default()),
        ms(warm.iter().max().copied().unwrap_or_default()),
        config.interval,
        config.suspect_interval,
        config.timeout,
        config.jitter * 100.0,
    );
    println!();
    println!(
        "All trials, ms: {}",
        died.iter()
            .map(|d| format!("{:.0}", d.as_secs_f64() * 1e3))
            .collect::<Vec<_>>()
            .join(" ")
    );
    Some(format!(
        "{}: median {}, worst {} of {}{}",
        failure.name(),
        ms(pct(&died, 50.0)),
        ms(worst),
        trials.len(),
        if missing > 0 {
            format!(" ({missing} never)")
        } else {
            String::new()
        }
    ))
}

fn scale_report(results: &[ScaleResult]) {
    if results.is_empty() {
        return;
    }
    println!();
    println!("### One prober, many nodes, 1 s interval");
    println!();
    let cores = |d: Duration, w: Duration| d.as_secs_f64() / w.as_secs_f64();
    print!("| |");
    for r in results {
        print!(" {} |", r.label);
    }
    println!();
    print!("|---|");
    for _ in results {
        print!("---:|");
    }
    println!();
    let row = |name: &str, f: &dyn Fn(&ScaleResult) -> String| {
        print!("| {name} |");
        for r in results {
            print!(" {} |", f(r));
        }
        println!();
    };
    row("nodes", &|r| r.nodes.to_string());
    row("HTTP listeners (in the bench process)", &|r| {
        r.listeners.to_string()
    });
    row("joins folded (policy: rendezvous)", &|r| ms(r.join_fold));
    row("prober start → every node probed once", &|r| {
        r.first_probe_all.map_or("not within warm-up".into(), ms)
    });
    row("measured window", &|r| ms(r.window));
    row("**prober CPU** (utime+stime, cores) — target < 1", &|r| {
        let c = cores(r.prober_cpu, r.window);
        if r.child {
            format!("**{c:.3}** {}", verdict(c < 1.0))
        } else {
            format!("{c:.3} (whole bench process: prober in-process)")
        }
    });
    row("prober CPU per answered probe", &|r| {
        format!(
            "{:.0} µs",
            r.prober_cpu.as_secs_f64() * 1e6 / r.probes.max(1) as f64
        )
    });
    row("prober RSS", &|r| {
        if r.child {
            format!("{:.1} MiB", r.prober_rss)
        } else {
            "–".into()
        }
    });
    row("bench process CPU (HTTP servers, projector), cores", &|r| {
        format!("{:.3}", cores(r.bench_cpu, r.window))
    });
    row("redis-server CPU, cores", &|r| {
        format!("{:.3}", cores(r.redis_cpu, r.window))
    });
    row("probes answered per second (mean)", &|r| {
        format!("{:.0}", r.probes as f64 / r.window.as_secs_f64())
    });
    row("… per 1 s, min–max", &|r| {
        format!("{}–{}", r.per_second.0, r.per_second.1)
    });
    row("… busiest 100 ms (× 10 = rate)", &|r| {
        format!("{} ({}/s)", r.peak_100ms, r.peak_100ms * 10)
    });
    row("probes per node in the window, min–max", &|r| {
        format!("{}–{}", r.per_node.0, r.per_node.1)
    });
    row("nodes not probed in the window", &|r| {
        r.unprobed_in_window.to_string()
    });
    row("failed probes logged (whole run)", &|r| {
        if r.failure_kinds.is_empty() {
            "0".into()
        } else {
            format!(
                "{} ({})",
                r.failures_logged,
                r.failure_kinds
                    .iter()
                    .map(|(k, n)| format!("{k} × {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    });
    row("`suspect` / `died` events (whole run)", &|r| {
        format!("{} / {}", r.suspect_events, r.died_events)
    });
    row("`probe` entries in the log (whole run)", &|r| {
        r.log_probe_entries.to_string()
    });
}

fn joins_report(rows: &[(usize, &'static str, Option<Duration>)]) {
    if rows.is_empty() {
        return;
    }
    println!();
    println!("### Registering a fleet: one `join` entry per node, folded by the projector");
    println!();
    println!("| nodes | placement | all joins applied | per join |");
    println!("|---:|---|---:|---:|");
    for (n, strategy, took) in rows {
        match took {
            Some(took) => println!(
                "| {n} | {strategy} | {} | {:.2} ms |",
                ms(*took),
                took.as_secs_f64() * 1e3 / *n as f64
            ),
            None => println!(
                "| {n} | {strategy} | **not within {JOINS_WAIT:?}** (checkpoint never moved) | – |"
            ),
        }
    }
}

fn comparison(measured: &[String]) {
    println!();
    println!("### For comparison (failure → declared dead, defaults)");
    println!();
    println!("| system | defaults | a stopped node is declared dead after |");
    println!("|---|---|---:|");
    println!(
        "| Pantheon (measured above) | interval 1 s, suspect 200 ms, timeout 500 ms, fall 3 | {} |",
        if measured.is_empty() {
            "see above".to_owned()
        } else {
            measured.join("; ")
        }
    );
    println!("| the Go library (seed) | — | never (measured: nodes never die) |");
    println!("| Kubernetes liveness probe | periodSeconds 10 × failureThreshold 3 | ≈ 30 s |");
    println!("| HAProxy | inter 2 s, fall 3 | ≈ 6 s |");
    println!("| hashicorp/memberlist | DefaultLANConfig (probe 1 s, suspicion mult 4) | ≈ 5 s |");
}

/// Runs the overload bench once per setup, in turns, and prints their table.
async fn overload_runs(
    step: &str,
    (nodes, warmup, window): (usize, Duration, Duration),
    setups: &[overload::Setup],
) {
    let mut runs = Vec::new();
    for &setup in setups {
        eprintln!(
            "  {step}: {nodes} nodes, {} s, budget {}, intermittent_percent {} ...",
            window.as_secs(),
            setup.budget,
            setup.intermittent
        );
        runs.push(overload::overload(nodes, warmup, window, setup).await);
    }
    overload::overload_report(&runs);
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let plan = if full {
        Plan {
            refused_rounds: 8,
            hang_rounds: 4,
            per_round: 5,
            scale_nodes: 5000,
            scale_warmup: Duration::from_secs(6),
            scale_window: Duration::from_secs(20),
            child: true,
        }
    } else {
        println!("smoke run (use `cargo bench` for the real numbers)");
        Plan {
            refused_rounds: 1,
            hang_rounds: 1,
            per_round: 2,
            scale_nodes: 200,
            scale_warmup: Duration::from_secs(2),
            scale_window: Duration::from_secs(2),
            child: false,
        }
    };
    let steps = std::env::var("PANTHEON_BENCH_STEPS").unwrap_or_default();
    let run = |step: &str| steps.is_empty() || steps.split(',').any(|s| s.trim() == step);
    if std::env::var(pantheon_test_support::URL_ENV).is_ok_and(|u| !u.trim().is_empty()) {
        eprintln!(
            "warning: {} is set: measuring on that (possibly shared) Redis instead of fresh ones",
            pantheon_test_support::URL_ENV
        );
    }
    let soak = steps.split(',').any(|s| s.trim() == "soak");
    let bin = if plan.child && (run("scale") || soak) {
        release_binary(
            "pantheon-prober-service",
            "pantheon-prober",
            "PANTHEON_PROBER_BIN",
        )
    } else {
        None
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let started = Instant::now();
    println!("load average at start: {}", load_average());
    let measured = runtime.block_on(async {
        let mut measured = Vec::new();
        if run("refused") || run("hang") {
            let mut env = Env::start().await;
            let config = env.config.clone();
            let interval = config.interval;
            let suspect = config.suspect_interval;
            let timeout = config.timeout;
            if run("refused") {
                let trials = detection(
                    &mut env,
                    Failure::Refused,
                    plan.refused_rounds,
                    plan.per_round,
                )
                .await;
                measured.extend(detection_report(
                    Failure::Refused,
                    &trials,
                    interval + 2 * suspect + Duration::from_millis(300),
                    &format!(
                        "≤ interval + (fall − 1) × suspect_interval + 300 ms = {}; with the \
                         ±10 % jitter the probe waits alone can reach {}",
                        ms(interval + 2 * suspect + Duration::from_millis(300)),
                        ms((interval + 2 * suspect).mul_f64(1.1))
                    ),
                    &config,
                ));
            }
            if run("hang") {
                let trials =
                    detection(&mut env, Failure::Hang, plan.hang_rounds, plan.per_round).await;
                measured.extend(detection_report(
                    Failure::Hang,
                    &trials,
                    Duration::from_secs(3),
                    &format!(
                        "≈ interval + timeout + 2 × max(suspect_interval, timeout) = {} (probes \
                         are timed from the previous probe's start, and one runs at a time); \
                         with the ±10 % jitter up to {}",
                        ms(interval + timeout + 2 * suspect.max(timeout)),
                        ms(interval.mul_f64(1.1) + timeout + 2 * suspect.max(timeout).mul_f64(1.1))
                    ),
                    &config,
                ));
            }
            env.shutdown().await;
        }
        if run("scale") {
            let mut results = Vec::new();
            for listeners in [None, Some(4)] {
                eprintln!(
                    "  scale: {} nodes, {} ...",
                    plan.scale_nodes,
                    listeners.map_or("one listener per node".into(), |k| format!("{k} listeners"))
                );
                results.push(
                    scale(
                        bin.as_deref(),
                        plan.scale_nodes,
                        listeners,
                        plan.scale_warmup,
                        plan.scale_window,
                    )
                    .await,
                );
            }
            scale_report(&results);
        }
        let over_sizes = if full {
            (2_000, Duration::from_secs(5), Duration::from_secs(60))
        } else {
            (100, Duration::from_secs(2), Duration::from_secs(5))
        };
        if run("overload") {
            let setups = [0, 25].map(|budget| overload::Setup {
                over: overload::Over::Late,
                budget,
                intermittent: 50,
            });
            overload_runs("overload", over_sizes, &setups).await;
        }
        if run("loss") {
            let setups = [0, 50].map(|intermittent| overload::Setup {
                over: overload::Over::Lost,
                budget: 25,
                intermittent,
            });
            overload_runs("loss", over_sizes, &setups).await;
        }
        // Opt-in (10 minutes): many nodes, all healthy, probed for a long window by the
        // release prober; every suspect and death in it is a false one.
        if soak {
            let nodes = env_count("PANTHEON_BENCH_SOAK_NODES", if full { 10_000 } else { 200 });
            let secs = env_count("PANTHEON_BENCH_SOAK_SECS", if full { 600 } else { 5 });
            eprintln!("  soak: {nodes} nodes on 8 listeners for {secs} s ...");
            let result = scale(
                bin.as_deref(),
                nodes,
                Some(8),
                plan.scale_warmup,
                Duration::from_secs(secs as u64),
            )
            .await;
            scale_report(&[result]);
        }
        // Opt-in: it measures the projector, not the prober.
        if steps.split(',').any(|s| s.trim() == "joins") {
            let sizes: &[usize] = if full { &[250, 500] } else { &[50] };
            joins_report(&joins(sizes).await);
        }
        measured
    });
    comparison(&measured);
    println!();
    println!(
        "Total bench time {:.0} s; load average at the end: {}",
        started.elapsed().as_secs_f64(),
        load_average()
    );
}
