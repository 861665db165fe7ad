//! Issue 12 ("See it working"): what the HTTP endpoint costs at 10,000 nodes, and how fast a
//! state change reaches an open dashboard. Everything is real: a `redis-server` started for
//! the run (never the machine's shared Redis), the `pantheon-projector` service binary as a
//! child process with its HTTP endpoint on (`PANTHEON_HTTP__LISTEN`, the axum router of
//! `pantheon-service`), and `reqwest` over loopback as the client.
//!
//! Set-up: a `policy` entry (rendezvous placement: folding 10,000 joins into a ring is a
//! separate cost, see "Correlated failures"; 160 vnodes, as the fold caps weight × vnodes at
//! 2^24 points whatever the strategy, 8,192 nodes at the default 2048), N `join` entries and K keys
//! in `assign` entries of 10,000 keys, XADDed in pipelines; the projector folds them. Nodes
//! are not probed (no prober runs), so they stay `alive` as joined.
//!
//! 1. **Render.** `GET /metrics` and `GET /` (the dashboard page) S times each, one after the
//!    other: the latency the client sees (the whole render: the status read from Redis, the
//!    encoding, HTTP). Beside it, `Pantheon::status()` from the bench process (the Redis read
//!    the render starts with).
//! 2. **CPU per request.** The service process's CPU time (utime + stime from `/proc`, 10 ms
//!    ticks) and the Redis server's across the S requests, minus what each used while idle
//!    for as long just before; divided by S. The share of one core at one `/metrics` scrape
//!    and one dashboard load per 15 s is (metrics + dashboard) / 15 s.
//! 3. **Real cadence.** The service process's and Redis's CPU over a window W (60 s) with
//!    nothing served, then over a window W with one `/metrics` scrape and one dashboard load
//!    every 15 s: the difference over W is the share of a core that serving costs.
//! 4. **Live updates.** The stream the dashboard's script follows (`GET /api/events`,
//!    server-sent events) is opened by a reqwest client that parses the frames. C times: a
//!    `drain` of one more node is XADDed to the log; measured are the commit (the event's id:
//!    the events are added with `*` inside the commit script, so its milliseconds are the
//!    Redis clock at the commit, the same clock as the bench's wall clock on one machine), the
//!    moment the projector's checkpoint is seen to reach the entry (polled every 1 ms), and the
//!    arrival of the SSE message naming the node. Then, as the script does, 250 ms later the
//!    page is fetched again; the time until that fetch returns with the node `draining`
//!    is "on the page".
//!
//! ```text
//! cargo bench -p pantheon-tests --bench observability
//! ```
//!
//! Knobs: `PANTHEON_BENCH_NODES` (default 10,000), `PANTHEON_BENCH_KEYS` (100,000),
//! `PANTHEON_BENCH_SCRAPES` (20), `PANTHEON_BENCH_CHANGES` (20), `PANTHEON_BENCH_WINDOW_S`
//! (60; 0 skips step 3), `PANTHEON_BENCH_INTERVAL_S` (15), `PANTHEON_BENCH_STRATEGY`
//! (`rendezvous`, or `ring` with 160 points per node). Without `--bench` (as in
//! `cargo test --benches`) it runs at 300 nodes, 3,000 keys, 3 requests, 3 changes and a 3 s
//! window at 1 s, as a smoke test. Results are in `docs/benchmarks.md`.

mod support;

use pantheon_test_support::prometheus::sample;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pantheon_client::Pantheon;
use pantheon_domain::entry::{Command, LogEntry};
use pantheon_domain::policy::PolicyChange;
use pantheon_domain::{EntryId, NodeId, Strategy};
use pantheon_store::{Layout, readmodel};
use pantheon_test_support::TestRedis;
use pantheon_test_support::process::{ChildGuard, cpu_time, load_average, memory_mib};
use redis::aio::MultiplexedConnection;
use support::append::{xadd, xadd_pipelined};
use tokio::sync::mpsc;
use tokio::time::Instant;

const SERVICE: &str = env!("CARGO_BIN_EXE_pantheon-projector-under-test");
/// Join entries per XADD pipeline.
const JOINS_PER_PIPE: usize = 500;
/// Points per node in the policy (rendezvous does not use them; the ring-size cap does).
const VNODES: u32 = 160;
/// Keys per `assign` entry.
const KEYS_PER_ENTRY: usize = 10_000;
/// Bound on the projector folding the set-up.
const SETUP_WAIT: Duration = Duration::from_secs(300);
/// Bound on anything else the bench waits for (the endpoint, one change, one request).
const WAIT: Duration = Duration::from_secs(30);
/// The dashboard script's pause between an event and fetching the page again.
const SCRIPT_DEBOUNCE: Duration = Duration::from_millis(250);
/// The scrape interval of the targets.
const TARGET_INTERVAL: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy)]
struct Scale {
    nodes: usize,
    keys: usize,
    scrapes: usize,
    changes: usize,
    window: Duration,
    interval: Duration,
    strategy: Strategy,
    full: bool,
}

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn scale() -> Scale {
    let full = std::env::args().any(|a| a == "--bench");
    let d = |full_value: usize, smoke: usize| if full { full_value } else { smoke };
    let s = Scale {
        nodes: knob("PANTHEON_BENCH_NODES", d(10_000, 300)).max(2),
        keys: knob("PANTHEON_BENCH_KEYS", d(100_000, 3_000)),
        scrapes: knob("PANTHEON_BENCH_SCRAPES", d(20, 3)).max(1),
        changes: knob("PANTHEON_BENCH_CHANGES", d(20, 3)).max(1),
        window: Duration::from_secs(knob("PANTHEON_BENCH_WINDOW_S", d(60, 3)) as u64),
        interval: Duration::from_secs(knob("PANTHEON_BENCH_INTERVAL_S", d(15, 1)).max(1) as u64),
        strategy: match std::env::var("PANTHEON_BENCH_STRATEGY").as_deref() {
            Ok("ring") => Strategy::Ring,
            _ => Strategy::Rendezvous,
        },
        full,
    };
    assert!(
        s.changes < s.nodes,
        "PANTHEON_BENCH_CHANGES must be below PANTHEON_BENCH_NODES"
    );
    s
}

// ---------------------------------------------------------------------------------------------
// Small helpers.

fn node(i: usize) -> NodeId {
    NodeId::new(&format!("node-{i}")).expect("node id")
}

async fn last_applied(con: &mut MultiplexedConnection, layout: &Layout) -> Option<EntryId> {
    tokio::time::timeout(WAIT, readmodel::load_checkpoint(con, layout))
        .await
        .expect("checkpoint read within 30 s")
        .expect("checkpoint")
        .and_then(|c| c.last_id)
}

/// Polls the checkpoint every `every` until it reaches `id`; the moment it was seen there.
async fn applied_at(
    con: &mut MultiplexedConnection,
    layout: &Layout,
    id: EntryId,
    every: Duration,
    within: Duration,
) -> Instant {
    let deadline = Instant::now() + within;
    loop {
        if last_applied(con, layout).await.is_some_and(|l| l >= id) {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "entry {id} not applied within {within:?}"
        );
        tokio::time::sleep(every).await;
    }
}

fn wall_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
        * 1000.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// (median, p90, max) of `v` (sorted in place).
fn stats(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.9), v[v.len() - 1])
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// CPU time of the service and of Redis.
#[derive(Debug, Clone, Copy)]
struct Cpu {
    service: Duration,
    redis: Duration,
}

struct Pids {
    service: u32,
    redis: u32,
}

impl Pids {
    fn cpu(&self) -> Cpu {
        Cpu {
            service: cpu_time(self.service),
            redis: cpu_time(self.redis),
        }
    }
}

fn cpu_between(a: Cpu, b: Cpu) -> (f64, f64) {
    (
        ms(b.service.saturating_sub(a.service)),
        ms(b.redis.saturating_sub(a.redis)),
    )
}

// ---------------------------------------------------------------------------------------------
// The service under test.

struct Service {
    _child: ChildGuard,
    base: String,
    http: reqwest::Client,
}

impl Service {
    fn start(redis_url: &str, cluster: &str) -> (Self, u32) {
        let port = free_port();
        let mut cmd = Process::new(SERVICE);
        // It reads every `PANTHEON_*` variable as a setting: give it only these.
        support::services::without_pantheon_env(&mut cmd);
        let child = cmd
            .env("PANTHEON_REDIS_URL", redis_url)
            .env("PANTHEON_CLUSTER", cluster)
            .env("PANTHEON_PROJECTOR__INSTANCE", "bench-projector")
            .env("PANTHEON_PROJECTOR__PROBER_WATCHDOG_MS", "0")
            .env("PANTHEON_HTTP__LISTEN", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn pantheon-projector");
        let pid = child.id();
        let http = reqwest::Client::builder()
            .timeout(WAIT)
            .build()
            .expect("reqwest client");
        (
            Self {
                _child: ChildGuard(child),
                base: format!("http://127.0.0.1:{port}"),
                http,
            },
            pid,
        )
    }

    /// One GET: (status, body, time until the whole body arrived).
    async fn get(&self, path: &str) -> (u16, String, Duration) {
        let started = Instant::now();
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let code = r.status().as_u16();
        let body = r
            .text()
            .await
            .unwrap_or_else(|e| panic!("GET {path} body: {e}"));
        (code, body, started.elapsed())
    }

    async fn get_ok(&self, path: &str) -> (String, Duration) {
        let (code, body, took) = self.get(path).await;
        assert_eq!(code, 200, "GET {path}: {body}");
        (body, took)
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(r) = self.http.get(format!("{}/readyz", self.base)).send().await
                && r.status().is_success()
            {
                return;
            }
            assert!(Instant::now() < deadline, "the endpoint never got ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Set-up.

/// Fields drop in order: the service stops before its Redis.
struct Setup {
    service: Service,
    redis: TestRedis,
    layout: Layout,
    cluster: String,
    con: MultiplexedConnection,
    pids: Pids,
}

async fn setup(s: Scale) -> Setup {
    let redis = TestRedis::start().await;
    let cluster = redis
        .namespace()
        .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "-");
    let layout = Layout::new("pantheon", &cluster);
    let mut con = redis.connection().await;
    let (service, service_pid) = Service::start(&redis.url, &cluster);
    let pids = Pids {
        service: service_pid,
        redis: redis.server_pid().await,
    };
    let log = layout.log();

    let started = Instant::now();
    let policy = LogEntry::new(Command::Policy(PolicyChange {
        strategy: Some(s.strategy),
        // The fold caps total weight × vnodes at 2^24 points whatever the strategy: at the
        // default 2048 vnodes that is 8,192 nodes of weight 1.
        vnodes: Some(VNODES),
        ..PolicyChange::default()
    }));
    xadd(&mut con, &log, &policy).await;
    let joins: Vec<LogEntry> = (0..s.nodes)
        .map(|i| {
            LogEntry::new(Command::Join {
                node: node(i),
                url: format!("http://127.0.0.1:9/health/{i}"),
                weight: None,
                handoff: false,
            })
        })
        .collect();
    xadd_pipelined(&mut con, &log, &joins, JOINS_PER_PIPE).await;
    let answered = (0..s.nodes).map(|i| (node(i), i as u64 + 1));
    let last_join = support::answer_all(&mut con, &layout, answered).await;
    applied_at(
        &mut con,
        &layout,
        last_join,
        Duration::from_millis(20),
        SETUP_WAIT,
    )
    .await;
    let joined = started.elapsed();
    let assigns: Vec<LogEntry> = (0..s.keys)
        .collect::<Vec<_>>()
        .chunks(KEYS_PER_ENTRY)
        .map(|c| {
            LogEntry::new(Command::Assign {
                keys: c.iter().map(|i| format!("user:{i}")).collect(),
            })
        })
        .collect();
    if !assigns.is_empty() {
        let last = xadd_pipelined(&mut con, &log, &assigns, 1).await;
        applied_at(
            &mut con,
            &layout,
            last,
            Duration::from_millis(20),
            SETUP_WAIT,
        )
        .await;
    }
    let rejected: u64 = redis::cmd("XLEN")
        .arg(layout.rejected())
        .query_async(&mut con)
        .await
        .expect("XLEN rejected");
    assert_eq!(
        rejected,
        0,
        "set-up entries were rejected (see {})",
        layout.rejected()
    );
    eprintln!(
        "set-up: {} joins folded in {:.1} s, {} keys assigned in {:.1} s more",
        s.nodes,
        joined.as_secs_f64(),
        s.keys,
        (started.elapsed() - joined).as_secs_f64()
    );
    service.wait_ready().await;
    Setup {
        service,
        redis,
        layout,
        cluster,
        con,
        pids,
    }
}

// ---------------------------------------------------------------------------------------------
// Steps 1 and 2: render time and CPU per request.

struct PerRequest {
    path: &'static str,
    bytes: usize,
    latency: (f64, f64, f64),
    /// CPU per request, milliseconds: service, Redis.
    cpu: (f64, f64),
}

fn check_metrics(text: &str, nodes: usize, keys: usize) {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("/metrics parses as Prometheus text");
    let alive = sample(&scrape, "pantheon_nodes", &[("state", "alive")]);
    assert_eq!(
        alive,
        Some(nodes as f64),
        "pantheon_nodes{{state=\"alive\"}}"
    );
    let owned = sample(&scrape, "pantheon_keys", &[("state", "owned")]);
    assert_eq!(owned, Some(keys as f64), "pantheon_keys{{state=\"owned\"}}");
}

async fn per_request(setup: &Setup, path: &'static str, n: usize) -> PerRequest {
    // Warm-up: connections, the client's first connect, allocator pools.
    for _ in 0..2 {
        setup.service.get_ok(path).await;
    }
    // Idle baseline first, as long as the requests are expected to take (bounded).
    let probe = setup.service.get_ok(path).await.1;
    let idle_for = (probe * n as u32).clamp(Duration::from_secs(1), Duration::from_secs(30));
    let a = setup.pids.cpu();
    let idle_started = Instant::now();
    tokio::time::sleep(idle_for).await;
    let b = setup.pids.cpu();
    let idle_wall = idle_started.elapsed();
    let (idle_service, idle_redis) = cpu_between(a, b);

    let mut latencies = Vec::with_capacity(n);
    let mut bytes = 0;
    let a = setup.pids.cpu();
    let started = Instant::now();
    for _ in 0..n {
        let (body, took) = setup.service.get_ok(path).await;
        bytes = body.len();
        latencies.push(ms(took));
    }
    let wall = started.elapsed();
    let b = setup.pids.cpu();
    let (busy_service, busy_redis) = cpu_between(a, b);
    let scale = wall.as_secs_f64() / idle_wall.as_secs_f64();
    let cpu = (
        ((busy_service - idle_service * scale) / n as f64).max(0.0),
        ((busy_redis - idle_redis * scale) / n as f64).max(0.0),
    );
    PerRequest {
        path,
        bytes,
        latency: stats(&mut latencies),
        cpu,
    }
}

async fn client_status(setup: &Setup, n: usize) -> (f64, f64, f64) {
    let client = Pantheon::builder("", &setup.cluster)
        .deployment(pantheon_store::Deployment::from_url(&setup.redis.url).expect("url"))
        .connect()
        .await
        .expect("client connects");
    client.status().await.expect("status");
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let s = client.status().await.expect("status");
        v.push(ms(started.elapsed()));
        std::hint::black_box(s);
    }
    stats(&mut v)
}

/// Where the status read's time goes: each store read it is made of, alone (median of `n`).
async fn status_parts(setup: &Setup, n: usize) -> Vec<(&'static str, f64)> {
    let mut con = setup.redis.connection().await;
    let layout = &setup.layout;
    let ids: Vec<NodeId> = readmodel::nodes(&mut con, layout)
        .await
        .expect("nodes")
        .iter()
        .map(|r| NodeId::new(&r.node).expect("node id"))
        .collect();
    let mut out = Vec::new();
    macro_rules! part {
        ($name:expr, $read:expr) => {{
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                let started = Instant::now();
                let r = $read.await.expect($name);
                v.push(ms(started.elapsed()));
                std::hint::black_box(r);
            }
            out.push(($name, stats(&mut v).0));
        }};
    }
    part!(
        "node records (HSCAN + JSON)",
        readmodel::nodes(&mut con, layout)
    );
    part!(
        "node records (HGETALL + JSON)",
        readmodel::node_records(&mut con, layout)
    );
    part!(
        "keys per node (SCARD pipeline)",
        readmodel::node_key_counts(&mut con, layout, &ids)
    );
    part!("key totals", readmodel::key_totals(&mut con, layout));
    part!("ring", readmodel::ring(&mut con, layout));
    part!(
        "projector progress",
        pantheon_store::monitor::progress(&mut con, layout)
    );
    part!(
        "event groups",
        pantheon_store::monitor::event_groups(&mut con, layout)
    );
    part!(
        "prober registry",
        pantheon_store::probers::read(&mut con, layout)
    );
    out
}

// ---------------------------------------------------------------------------------------------
// Step 3: real cadence.

struct Cadence {
    window: Duration,
    interval: Duration,
    rounds: usize,
    idle: (f64, f64),
    busy: (f64, f64),
}

async fn cadence(setup: &Setup, s: Scale) -> Cadence {
    let a = setup.pids.cpu();
    tokio::time::sleep(s.window).await;
    let b = setup.pids.cpu();
    let idle = cpu_between(a, b);

    let started = Instant::now();
    let a = setup.pids.cpu();
    let mut rounds = 0;
    let mut next = started;
    while next < started + s.window {
        tokio::time::sleep_until(next).await;
        setup.service.get_ok("/metrics").await;
        setup.service.get_ok("/").await;
        rounds += 1;
        next += s.interval;
    }
    tokio::time::sleep_until(started + s.window).await;
    let b = setup.pids.cpu();
    Cadence {
        window: s.window,
        interval: s.interval,
        rounds,
        idle,
        busy: cpu_between(a, b),
    }
}

// ---------------------------------------------------------------------------------------------
// Step 4: live updates.

/// One server-sent event as it arrived.
#[derive(Debug)]
struct Arrival {
    at: Instant,
    wall_ms: f64,
    id: EntryId,
    kind: String,
    node: Option<String>,
}

/// Opens `/api/events` and forwards each `cluster` message; ends when `tx` is dropped by the
/// receiver, the stream ends, or after `within`.
async fn follow(base: String, tx: mpsc::UnboundedSender<Arrival>, within: Duration) {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("reqwest client");
    let mut r = client
        .get(format!("{base}/api/events"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("GET /api/events");
    assert_eq!(r.status().as_u16(), 200, "GET /api/events");
    let deadline = Instant::now() + within;
    let mut buf = String::new();
    while Instant::now() < deadline && !tx.is_closed() {
        let chunk = match tokio::time::timeout_at(deadline, r.chunk()).await {
            Ok(Ok(Some(c))) => c,
            _ => return,
        };
        let at = Instant::now();
        let wall = wall_ms();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        // Frames end with a blank line.
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let mut event = None;
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if event.as_deref() != Some("cluster") {
                continue; // keep-alive comments
            }
            let v: serde_json::Value = serde_json::from_str(&data).expect("SSE data is JSON");
            let id = v["id"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("SSE data has an id");
            let arrival = Arrival {
                at,
                wall_ms: wall,
                id,
                kind: v["type"].as_str().unwrap_or("").to_owned(),
                node: v["node"].as_str().map(str::to_owned),
            };
            if tx.send(arrival).is_err() {
                return;
            }
        }
    }
}

/// Waits for the event naming `node`, skipping others.
async fn arrival_for(rx: &mut mpsc::UnboundedReceiver<Arrival>, node: &str) -> Arrival {
    let deadline = Instant::now() + WAIT;
    loop {
        let a = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no event for {node} within {WAIT:?}"))
            .expect("the event stream ended");
        if a.node.as_deref() == Some(node) {
            return a;
        }
    }
}

#[derive(Default)]
struct Live {
    /// Commit (the event id's ms) → SSE message arrived.
    commit_to_sse: Vec<f64>,
    /// Checkpoint seen at the entry → SSE message arrived (negative: the message first).
    checkpoint_to_sse: Vec<f64>,
    /// XADD of the log entry → commit (the fold, not the dashboard).
    xadd_to_commit: Vec<f64>,
    /// XADD → SSE message.
    xadd_to_sse: Vec<f64>,
    /// Commit → the page fetched again 250 ms after the message shows the node draining.
    commit_to_page: Vec<f64>,
    /// The page fetch alone.
    page_fetch: Vec<f64>,
    kinds: Vec<String>,
}

async fn live(setup: &Setup, s: Scale) -> Live {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let follow_for = WAIT + Duration::from_secs(5) * (s.changes as u32 + 1);
    let follower = tokio::spawn(follow(setup.service.base.clone(), tx, follow_for));
    let mut con = setup.con.clone();
    let poller = setup.redis.connection().await;
    let log = setup.layout.log();

    // Warm-up: a change whose message proves the stream's blocking read is in place.
    let warm = node(s.nodes - 1);
    xadd(
        &mut con,
        &log,
        &LogEntry::new(Command::Drain { node: warm.clone() }),
    )
    .await;
    arrival_for(&mut rx, warm.as_str()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    while rx.try_recv().is_ok() {}

    let mut out = Live::default();
    for i in 0..s.changes {
        let n = node(i);
        let entry = LogEntry::new(Command::Drain { node: n.clone() });
        let sent_wall = wall_ms();
        let sent = Instant::now();
        let id = xadd(&mut con, &log, &entry).await;
        let layout = setup.layout.clone();
        let checkpoint = {
            let mut p = poller.clone();
            tokio::spawn(async move {
                applied_at(&mut p, &layout, id, Duration::from_millis(1), WAIT).await
            })
        };
        let a = arrival_for(&mut rx, n.as_str()).await;
        let seen = checkpoint.await.expect("checkpoint poller");
        let commit_ms = a.id.ms as f64;
        out.commit_to_sse.push(a.wall_ms - commit_ms);
        out.checkpoint_to_sse.push(if a.at >= seen {
            ms(a.at - seen)
        } else {
            -ms(seen - a.at)
        });
        out.xadd_to_commit.push(commit_ms - sent_wall);
        out.xadd_to_sse.push(ms(a.at - sent));
        out.kinds.push(a.kind.clone());

        // What the dashboard's script does next: wait 250 ms, fetch the page again.
        tokio::time::sleep(SCRIPT_DEBOUNCE).await;
        let (html, took) = setup.service.get_ok("/").await;
        let row = format!("id=\"node-{n}\" data-node=\"{n}\" data-state=\"draining\"");
        assert!(html.contains(&row), "the page does not show {n} draining");
        out.page_fetch.push(ms(took));
        out.commit_to_page.push(wall_ms() - commit_ms);

        // Let the change's other events (rebalanced) pass before the next one.
        tokio::time::sleep(Duration::from_millis(200)).await;
        while rx.try_recv().is_ok() {}
    }
    drop(rx);
    follower.abort();
    out
}

// ---------------------------------------------------------------------------------------------
// Report.

fn row3(name: &str, (med, p90, max): (f64, f64, f64)) {
    println!("| {name} | {med:.1} ms | {p90:.1} ms | {max:.1} ms |");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let s = scale();
    println!(
        "# Observability{}",
        if s.full { "" } else { " — smoke run" }
    );
    println!(
        "nodes {} ({}), keys {}, requests {}, changes {}, window {:?} at {:?}; load average at start: {}",
        s.nodes,
        s.strategy.as_str(),
        s.keys,
        s.scrapes,
        s.changes,
        s.window,
        s.interval,
        load_average()
    );
    let setup = setup(s).await;

    // Step 1 and 2.
    let (metrics_text, _) = setup.service.get_ok("/metrics").await;
    check_metrics(&metrics_text, s.nodes, s.keys);
    let (page, _) = setup.service.get_ok("/").await;
    assert_eq!(
        page.matches("<tr id=\"node-").count(),
        s.nodes,
        "the page lists every node"
    );
    let status = client_status(&setup, s.scrapes).await;
    let parts = status_parts(&setup, s.scrapes).await;
    let metrics = per_request(&setup, "/metrics", s.scrapes).await;
    let dashboard = per_request(&setup, "/", s.scrapes).await;
    let status_json = per_request(&setup, "/api/status", s.scrapes).await;

    println!();
    println!(
        "### Render ({} nodes, {} requests each)",
        s.nodes, s.scrapes
    );
    println!();
    println!(
        "| request | body | median | p90 | max | CPU service / request | CPU Redis / request |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in [&metrics, &dashboard, &status_json] {
        println!(
            "| GET {} | {:.0} KiB | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
            r.path,
            r.bytes as f64 / 1024.0,
            r.latency.0,
            r.latency.1,
            r.latency.2,
            r.cpu.0,
            r.cpu.1
        );
    }
    println!(
        "| `Pantheon::status()` in the bench (the read the renders start with) | – | {:.1} ms | {:.1} ms | {:.1} ms | – | – |",
        status.0, status.1, status.2
    );
    println!();
    println!(
        "The status read, part by part (each alone, median of {}):",
        s.scrapes
    );
    println!();
    println!("| read | median |");
    println!("|---|---:|");
    for (name, t) in &parts {
        println!("| {name} | {t:.1} ms |");
    }
    let per_interval_service = metrics.cpu.0 + dashboard.cpu.0;
    let per_interval_redis = metrics.cpu.1 + dashboard.cpu.1;
    let interval_ms = ms(TARGET_INTERVAL);
    println!();
    println!(
        "CPU of one /metrics scrape + one dashboard load: service {per_interval_service:.1} ms, \
         Redis {per_interval_redis:.1} ms; per 15 s: service {:.3} % of a core, with Redis {:.3} %",
        per_interval_service / interval_ms * 100.0,
        (per_interval_service + per_interval_redis) / interval_ms * 100.0
    );

    // Step 3.
    if !s.window.is_zero() {
        let c = cadence(&setup, s).await;
        let w = ms(c.window);
        let share = |cpu: f64| cpu / w * 100.0;
        println!();
        println!(
            "### Real cadence: {} s idle, then {} s with /metrics + / every {} s ({} rounds)",
            c.window.as_secs(),
            c.window.as_secs(),
            c.interval.as_secs(),
            c.rounds
        );
        println!();
        println!("| window | service CPU | Redis CPU | service share of a core | with Redis |");
        println!("|---|---:|---:|---:|---:|");
        println!(
            "| idle | {:.0} ms | {:.0} ms | {:.3} % | {:.3} % |",
            c.idle.0,
            c.idle.1,
            share(c.idle.0),
            share(c.idle.0 + c.idle.1)
        );
        println!(
            "| serving | {:.0} ms | {:.0} ms | {:.3} % | {:.3} % |",
            c.busy.0,
            c.busy.1,
            share(c.busy.0),
            share(c.busy.0 + c.busy.1)
        );
        let ds = (c.busy.0 - c.idle.0).max(0.0);
        let dr = (c.busy.1 - c.idle.1).max(0.0);
        println!(
            "| serving − idle | {ds:.0} ms | {dr:.0} ms | {:.3} % | {:.3} % |",
            share(ds),
            share(ds + dr)
        );
    }

    // Step 4.
    let mut l = live(&setup, s).await;
    println!();
    println!(
        "### Live updates: {} drains, SSE over loopback (first messages: {})",
        s.changes,
        l.kinds
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!();
    println!("| from → to | median | p90 | max |");
    println!("|---|---:|---:|---:|");
    row3(
        "commit (event id) → SSE message",
        stats(&mut l.commit_to_sse),
    );
    row3(
        "checkpoint seen at the entry → SSE message",
        stats(&mut l.checkpoint_to_sse),
    );
    row3("XADD → commit (the fold)", stats(&mut l.xadd_to_commit));
    row3("XADD → SSE message", stats(&mut l.xadd_to_sse));
    row3("page fetch (GET /)", stats(&mut l.page_fetch));
    row3(
        "commit → page fetched 250 ms after the message shows it",
        stats(&mut l.commit_to_page),
    );

    let (rss, peak) = memory_mib(setup.pids.service);
    println!();
    println!(
        "service process: RSS {rss:.0} MiB (peak {peak:.0} MiB); load average at end: {}",
        load_average()
    );
    println!();
    println!("### Targets");
    println!();
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "- /metrics renders in < 50 ms at {} nodes: median {:.1} ms, max {:.1} ms: {}",
        s.nodes,
        metrics.latency.0,
        metrics.latency.2,
        verdict(metrics.latency.2 < 50.0)
    );
    println!(
        "- /metrics + dashboard per 15 s < 5 % of a core: {:.3} % (service), {:.3} % with Redis: {}",
        per_interval_service / interval_ms * 100.0,
        (per_interval_service + per_interval_redis) / interval_ms * 100.0,
        verdict((per_interval_service + per_interval_redis) / interval_ms < 0.05)
    );
    let (_, _, worst) = stats(&mut l.commit_to_sse);
    println!(
        "- a state change reaches an open dashboard within 1 s of its commit: worst {worst:.1} ms (SSE message), {:.1} ms (page re-fetched): {}",
        stats(&mut l.commit_to_page).2,
        verdict(worst < 1000.0)
    );
}
