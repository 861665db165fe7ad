//! Correlated failures, measured with a real projector, a real prober, real HTTP
//! servers on loopback and a `redis-server` started for the run:
//!
//! 1. **Join burst, fold only** (same run, side by side): folding N `join` entries with the
//!    old behaviour (a full ring rebuild per join, as `placement::build` does), with the
//!    incremental ring per join (`State::apply`), and batched as the projector does it
//!    (`State::apply_deferred`, one `settle` per 500 entries).
//! 2. **Join burst, end to end**: 1,000 joins XADDed back to back; time from the first XADD
//!    until the projector's checkpoint reaches the last one.
//! 3. **Flapping, fold only**: a node down/up every 2 s for 10 minutes, probed at the default
//!    cadences (1 s alive, 200 ms suspect, 5 s dead) next to a healthy node probed every
//!    second, through the real fold with and without flap damping: rebalances while flapping,
//!    and how long after it stops the node owns keys again.
//! 4. **Mass death**: 400 nodes on 5 HTTP servers (80 health paths each), the default prober
//!    and policy; one server stops. Measured: from the stop until each `died` is readable
//!    (blocking XREAD on the events stream), and the projector lag of each `died` (readable
//!    time − the time in its cause's log id).
//! 5. **Flapping with a real prober and projector** (`flap_real`, only when named): 6 nodes
//!    (5 healthy, 1 on its own HTTP server), 10,000 keys, the default prober and policy; the
//!    lone node answers 200 for 2 s, then 503 for 2 s, alternating, for 10 minutes. Counted
//!    from the events stream: its `died`/`revived`/`damped`/`undamped` and every
//!    `rebalanced` while it flaps; then how long after it turns stable it owns keys again
//!    (waited for up to 3 minutes).
//!
//! ```text
//! cargo bench -p pantheon-tests --bench bursts
//! PANTHEON_BENCH_STEPS=flap_real cargo bench -p pantheon-tests --bench bursts
//! ```
//!
//! `PANTHEON_BENCH_STEPS` (comma-separated: `fold`, `flap`, `e2e`, `flap_real`) runs only
//! those steps; unset, it runs all but `flap_real`. Without `--bench` (as in
//! `cargo test --benches`) it runs at a small scale as a smoke test (`flap_real`: 20 s).
//! Results and the machine are in `docs/benchmarks.md`, "Correlated failures".

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::append::xadd_pipelined;
use support::stream::{connect_to, follow};
use support::wall_ms;

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use pantheon_domain::entry::{Command, LogEntry};
use pantheon_domain::placement::{self, Member};
use pantheon_domain::{EntryId, NodeId, Policy, State};
use pantheon_prober::ProberConfig;
use pantheon_projector::ProjectorConfig;
use pantheon_store::{Deployment, Layout, readmodel};
use pantheon_test_support::TestRedis;
use redis::aio::MultiplexedConnection;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(120);
const JOINS_PER_PIPE: usize = 500;
/// The projector's default `batch_entries`: the fold-only batched row settles this often.
const BATCH: usize = 500;

#[derive(Debug, Clone, Copy)]
struct Plan {
    /// Joins folded with a full rebuild per join (quadratic: kept small).
    rebuild_joins: usize,
    /// Joins folded incrementally and batched, and XADDed end to end.
    joins: usize,
    servers: usize,
    per_server: usize,
}

fn node_id(i: usize) -> NodeId {
    NodeId::new(&format!("node-{i}")).expect("node id")
}

fn join_entry(i: usize, url: String) -> LogEntry {
    LogEntry::new(Command::Join {
        node: node_id(i),
        url,
        weight: None,
        handoff: false,
    })
}

async fn applied_within(
    con: &mut MultiplexedConnection,
    layout: &Layout,
    id: EntryId,
    within: Duration,
) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let last = readmodel::load_checkpoint(con, layout)
            .await
            .expect("checkpoint")
            .and_then(|c| c.last_id);
        if last.is_some_and(|l| l >= id) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Step 1: the fold alone.

#[derive(Debug)]
struct FoldRow {
    how: &'static str,
    joins: usize,
    took: Duration,
}

fn fold_rows(plan: Plan) -> Vec<FoldRow> {
    let vnodes = Policy::default().vnodes;
    let mut rows = Vec::new();
    // The old behaviour: every join rebuilt the whole ring.
    let started = Instant::now();
    let mut members = Vec::new();
    let mut ring = placement::build(placement::Strategy::Ring, vnodes, Vec::new());
    for i in 0..plan.rebuild_joins {
        members.push(Member {
            node: node_id(i),
            weight: 1,
        });
        ring = placement::build(placement::Strategy::Ring, vnodes, members.clone());
    }
    assert_eq!(ring.members().len(), plan.rebuild_joins);
    rows.push(FoldRow {
        how: "full ring rebuild per join (before)",
        joins: plan.rebuild_joins,
        took: started.elapsed(),
    });
    for joins in [plan.rebuild_joins, plan.joins] {
        // Each join, then the node's first successful probe: a joined node enters placement
        // once it answered (docs/adr/0011; epochs count joins from 1).
        let entries: Vec<LogEntry> = (0..joins)
            .flat_map(|i| {
                [
                    join_entry(i, format!("http://127.0.0.1:9/health/{i}")),
                    probe_entry(node_id(i).as_str(), i as u64 + 1, true),
                ]
            })
            .collect();
        let started = Instant::now();
        let mut state = State::default();
        for (i, e) in entries.iter().enumerate() {
            state
                .apply(EntryId::new(1, i as u64), e)
                .expect("join applies");
        }
        rows.push(FoldRow {
            how: "incremental ring, rebalance per join",
            joins,
            took: started.elapsed(),
        });
        let started = Instant::now();
        let mut state = State::default();
        for (i, e) in entries.iter().enumerate() {
            state
                .apply_deferred(EntryId::new(1, i as u64), e)
                .expect("join applies");
            if i % BATCH == BATCH - 1 {
                state.settle();
            }
        }
        state.settle();
        assert_eq!(state.placement().members().len(), joins);
        rows.push(FoldRow {
            how: "incremental ring, one rebalance per 500-entry batch (after)",
            joins,
            took: started.elapsed(),
        });
    }
    rows
}

// ---------------------------------------------------------------------------------------------
// Step 3: flapping through the real fold.

fn probe_entry(node: &str, epoch: u64, ok: bool) -> LogEntry {
    LogEntry::new(Command::Probe(pantheon_domain::entry::ProbeResult {
        node: NodeId::new(node).expect("node id"),
        epoch,
        ok,
        status: ok.then_some(200),
        latency_ms: 1,
        error: (!ok).then_some(pantheon_domain::health::ProbeError::Refused),
        prober: Some("sim".into()),
    }))
}

#[derive(Debug)]
struct FlapRow {
    damping: bool,
    died: usize,
    rebalances: usize,
    back_after: Option<u64>,
}

fn flap(minutes: u64, half_period: u64, damping: bool) -> FlapRow {
    use pantheon_domain::Health;
    use pantheon_domain::event::EventKind;
    let mut state = State::default();
    let mut seq = 0u64;
    let mut at = |state: &mut State, ms: u64, e: &LogEntry| {
        seq += 1;
        state
            .apply(EntryId::new(ms, seq), e)
            .expect("entry applies")
            .events
    };
    for (i, n) in ["a", "b", "c"].iter().enumerate() {
        let join = LogEntry::new(Command::Join {
            node: NodeId::new(n).expect("node id"),
            url: format!("http://{n}.local/health"),
            weight: None,
            handoff: false,
        });
        at(&mut state, i as u64 + 1, &join);
    }
    let keys: Vec<String> = (0..3000).map(|i| format!("user:{i}")).collect();
    at(&mut state, 4, &LogEntry::new(Command::Assign { keys }));
    if !damping {
        let off = LogEntry::new(Command::Policy(pantheon_domain::policy::PolicyChange {
            damp_penalty: Some(0),
            ..Default::default()
        }));
        at(&mut state, 5, &off);
    }
    let owns_keys = |state: &State| {
        state
            .keys()
            .iter()
            .any(|(_, o)| o.is_some_and(|n| n.as_str() == "a"))
    };
    let (start, stop) = (10_000u64, 10_000 + minutes * 60_000);
    let (mut next_a, mut next_b) = (start, start);
    let mut row = FlapRow {
        damping,
        died: 0,
        rebalances: 0,
        back_after: None,
    };
    let mut t = start;
    while t < stop + 20 * 60_000 && row.back_after.is_none() {
        t = next_a.min(next_b);
        let events = if next_b <= next_a {
            next_b += 1000;
            at(&mut state, t, &probe_entry("b", 2, true))
        } else {
            let up = t >= stop || (t - start) / half_period % 2 == 1;
            let events = at(&mut state, t, &probe_entry("a", 1, up));
            next_a += match state
                .node(&NodeId::new("a").expect("id"))
                .map(|n| n.health.health)
            {
                Some(Health::Suspect) => 200,
                Some(Health::Dead) => 5000,
                _ => 1000,
            };
            events
        };
        if t < stop {
            for e in &events {
                match e.kind {
                    EventKind::Rebalanced { .. } => row.rebalances += 1,
                    EventKind::Died { .. } => row.died += 1,
                    _ => {}
                }
            }
        } else if owns_keys(&state) {
            row.back_after = Some(t - stop);
        }
    }
    row
}

// ---------------------------------------------------------------------------------------------
// A health server serving many nodes' paths; stopping it refuses all of them at once.

struct Server {
    addr: SocketAddr,
    /// While false, every path answers 503 (a failing node whose process still runs).
    up: Arc<AtomicBool>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Server {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let up = Arc::new(AtomicBool::new(true));
        let flag = up.clone();
        let app = Router::new().route(
            "/health/{i}",
            get(move |Path(_i): Path<u32>| {
                let up = flag.load(Ordering::Relaxed);
                async move {
                    if up {
                        (StatusCode::OK, "ok")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "down")
                    }
                }
            }),
        );
        let stop = CancellationToken::new();
        let t = stop.clone();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(t.cancelled_owned())
                .await;
        });
        Self {
            addr,
            up,
            stop,
            task: Some(task),
        }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
    }

    async fn stop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// One event read from the events stream.
#[derive(Debug, Clone)]
struct Seen {
    kind: String,
    /// Empty for events without a node (`rebalanced`).
    node: String,
    /// Wall ms when it was readable.
    wall: u64,
    /// Ms in its cause's log id.
    at: u64,
}

/// Every event seen by a blocking XREAD on the events stream, from when it is spawned.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<Seen>>>);

impl Events {
    fn spawn(&self, url: String, key: String, stop: CancellationToken) -> JoinHandle<()> {
        let seen = self.0.clone();
        follow(url, key, "$", 50, stop, move |entries| {
            let wall = wall_ms();
            let mut seen = seen.lock().expect("events lock");
            for e in entries {
                seen.push(Seen {
                    kind: e.get("type").unwrap_or_default().to_owned(),
                    node: e.get("node").unwrap_or_default().to_owned(),
                    wall,
                    at: e.get("at").and_then(|a| a.parse().ok()).unwrap_or(0),
                });
            }
        })
    }

    fn of(&self, kind: &str) -> Vec<Seen> {
        let seen = self.0.lock().expect("events lock");
        seen.iter().filter(|e| e.kind == kind).cloned().collect()
    }

    fn all(&self) -> Vec<Seen> {
        self.0.lock().expect("events lock").clone()
    }
}

#[derive(Debug)]
struct DeathResult {
    nodes: usize,
    stopped: usize,
    died: usize,
    first: Option<u64>,
    last: Option<u64>,
    max_lag: Option<u64>,
    joins_took: Option<Duration>,
}

/// A `redis-server` for the run with a real projector (started at once) and a real prober
/// (started by [`Rig::start_prober`]) in this process, both with the default settings.
struct Rig {
    redis: TestRedis,
    cluster: String,
    layout: Layout,
    log: String,
    con: MultiplexedConnection,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Rig {
    async fn start() -> Self {
        let redis = TestRedis::start().await;
        let cluster = redis.namespace().to_owned();
        let layout = Layout::new("pantheon", &cluster);
        let log = layout.log();
        let con = connect_to(&redis.url).await;
        let stop = CancellationToken::new();
        let mut pc = ProjectorConfig::new(
            Deployment::from_url(&redis.url).expect("redis url"),
            cluster.clone(),
        );
        pc.instance = "bench-projector".into();
        let t = stop.clone();
        let projector = tokio::spawn(async move {
            pantheon_projector::run(pc, t).await.expect("projector run");
        });
        Self {
            redis,
            cluster,
            layout,
            log,
            con,
            stop,
            tasks: vec![projector],
        }
    }

    fn start_prober(&mut self) {
        let mut config = ProberConfig::new(
            Deployment::from_url(&self.redis.url).expect("redis url"),
            self.cluster.clone(),
        );
        config.id = "bench-prober".into();
        let t = self.stop.clone();
        self.tasks.push(tokio::spawn(async move {
            pantheon_prober::run(config, t).await.expect("prober run");
        }));
    }

    /// Records every event from now on (until [`Rig::shutdown`]).
    fn watch(&mut self) -> Events {
        let events = Events::default();
        let task = events.spawn(
            self.redis.url.clone(),
            self.layout.events(),
            self.stop.clone(),
        );
        self.tasks.push(task);
        events
    }

    /// XADDs `entries` and waits until the projector has applied them.
    async fn apply(&mut self, entries: &[LogEntry]) {
        let last = xadd_pipelined(&mut self.con, &self.log, entries, JOINS_PER_PIPE).await;
        assert!(
            applied_within(&mut self.con, &self.layout, last, WAIT).await,
            "entries not applied within {WAIT:?}"
        );
    }

    async fn shutdown(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

/// Steps 2 and 3 on one Redis: the join burst, then the mass death.
async fn end_to_end(plan: Plan) -> (Option<Duration>, DeathResult) {
    let mut rig = Rig::start().await;
    let (layout, log) = (rig.layout.clone(), rig.log.clone());
    let con = &mut rig.con;

    // Step 2: a join burst to unreachable addresses, no prober yet (only the fold counts).
    let burst: Vec<LogEntry> = (0..plan.joins)
        .map(|i| join_entry(i, format!("http://127.0.0.1:9/health/{i}")))
        .collect();
    let started = Instant::now();
    let last = xadd_pipelined(con, &log, &burst, JOINS_PER_PIPE).await;
    let joins_took = applied_within(con, &layout, last, WAIT)
        .await
        .then(|| started.elapsed());
    eprintln!("  join burst: {} joins: {joins_took:?}", plan.joins);
    let leaves: Vec<LogEntry> = (0..plan.joins)
        .map(|i| LogEntry::new(Command::Leave { node: node_id(i) }))
        .collect();
    rig.apply(&leaves).await;

    // Step 3: the fleet on real servers, watched by a real prober.
    let mut servers = Vec::new();
    for _ in 0..plan.servers {
        servers.push(Server::start().await);
    }
    let nodes = plan.servers * plan.per_server;
    let fleet: Vec<LogEntry> = (0..nodes)
        .map(|i| {
            let s = &servers[i % plan.servers];
            join_entry(100_000 + i, format!("http://{}/health/{i}", s.addr))
        })
        .collect();
    rig.apply(&fleet).await;
    rig.start_prober();
    // Let every node be probed a few times at the steady 1 s interval.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let events = rig.watch();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped = plan.per_server;
    let stop_ms = wall_ms();
    servers[0].stop().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while events.of("died").len() < stopped && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A little longer: a healthy node wrongly declared dead would show up here.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let seen = events.of("died");
    let after: Vec<u64> = seen
        .iter()
        .map(|e| e.wall.saturating_sub(stop_ms))
        .collect();
    let result = DeathResult {
        nodes,
        stopped,
        died: seen.len(),
        first: after.iter().copied().min(),
        last: after.iter().copied().max(),
        max_lag: seen.iter().map(|e| e.wall.saturating_sub(e.at)).max(),
        joins_took,
    };
    rig.shutdown().await;
    (joins_took, result)
}

// ---------------------------------------------------------------------------------------------
// Step 5: flapping with a real prober and projector.

#[derive(Debug)]
struct FlapRealResult {
    flapped: Duration,
    /// Down phases the node went through.
    downs: usize,
    keys: usize,
    died: usize,
    revived: usize,
    damped: usize,
    undamped: usize,
    rebalances: usize,
    /// `died` of the always-healthy nodes over the whole run (false deaths).
    others_died: usize,
    /// From the end of the flapping until the node owns keys again.
    back_after: Option<Duration>,
    /// Rebalances from the end of the flapping until it owns keys again.
    rebalances_to_return: usize,
    /// When it did not own keys again in time: after one more (unrelated) log entry, an
    /// `assign` of one new key, how long until it did (log time moves only with entries).
    back_after_entry: Option<Duration>,
}

/// 6 nodes (5 healthy on one server, 1 on its own server), `keys` keys assigned, the default
/// prober and policy; the lone node's server answers 200 for `half` then 503 for `half`, for
/// `flap`, then stays healthy. Counted from the events stream.
async fn flap_real(
    flap: Duration,
    half: Duration,
    keys: usize,
    back_within: Duration,
) -> FlapRealResult {
    let mut rig = Rig::start().await;
    let healthy = Server::start().await;
    let flapping = Server::start().await;
    let flapper = node_id(5);
    let mut entries: Vec<LogEntry> = (0..5)
        .map(|i| join_entry(i, format!("http://{}/health/{i}", healthy.addr)))
        .collect();
    entries.push(join_entry(5, format!("http://{}/health/5", flapping.addr)));
    let all: Vec<String> = (0..keys).map(|i| format!("user:{i}")).collect();
    entries.extend(
        all.chunks(1000)
            .map(|c| LogEntry::new(Command::Assign { keys: c.to_vec() })),
    );
    rig.apply(&entries).await;
    rig.start_prober();
    let owned = |con: &mut MultiplexedConnection, layout: Layout| {
        let flapper = flapper.clone();
        let mut con = con.clone();
        async move {
            readmodel::node_key_counts(&mut con, &layout, &[flapper])
                .await
                .expect("key counts")
                .first()
                .copied()
                .unwrap_or(0)
        }
    };
    // Steady probing first; the node must own keys before it starts flapping.
    let deadline = Instant::now() + Duration::from_secs(30);
    tokio::time::sleep(Duration::from_secs(4)).await;
    while owned(&mut rig.con, rig.layout.clone()).await == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        owned(&mut rig.con, rig.layout.clone()).await > 0,
        "the flapping node owns no keys before it flaps"
    );
    let events = rig.watch();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // 200 for `half`, 503 for `half`, alternating; bounded by the phase count.
    let started = tokio::time::Instant::now();
    let start_ms = wall_ms();
    let phases = (flap.as_millis() / half.as_millis().max(1)) as u32;
    let mut downs = 0;
    for k in 0..phases {
        tokio::time::sleep_until(started + half * k).await;
        let up = k % 2 == 0;
        flapping.set_up(up);
        downs += usize::from(!up);
    }
    tokio::time::sleep_until(started + half * phases).await;
    flapping.set_up(true);
    let stop_ms = wall_ms();
    let stopped = Instant::now();

    // Stable from now on: how long until it owns keys again (bounded).
    let mut back_after = None;
    let deadline = stopped + back_within;
    while Instant::now() < deadline {
        if owned(&mut rig.con, rig.layout.clone()).await > 0 {
            back_after = Some(stopped.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let back_ms = wall_ms();
    let mut back_after_entry = None;
    if back_after.is_none() {
        let tick = LogEntry::new(Command::Assign {
            keys: vec!["bench:tick".into()],
        });
        rig.apply(&[tick]).await;
        let sent = Instant::now();
        while sent.elapsed() < Duration::from_secs(10) {
            if owned(&mut rig.con, rig.layout.clone()).await > 0 {
                back_after_entry = Some(sent.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Events readable up to this point.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = events.all();
    rig.shutdown().await;
    let during = |e: &&Seen| e.wall >= start_ms && e.wall < stop_ms;
    let count = |kind: &str, of_flapper: bool| {
        seen.iter()
            .filter(during)
            .filter(|e| e.kind == kind && (!of_flapper || e.node == flapper.as_str()))
            .count()
    };
    FlapRealResult {
        flapped: Duration::from_millis(stop_ms - start_ms),
        downs,
        keys,
        died: count("died", true),
        revived: count("revived", true),
        damped: count("damped", true),
        undamped: count("undamped", true),
        rebalances: count("rebalanced", false),
        others_died: seen
            .iter()
            .filter(|e| e.kind == "died" && e.node != flapper.as_str())
            .count(),
        back_after,
        rebalances_to_return: seen
            .iter()
            .filter(|e| e.kind == "rebalanced" && e.wall >= stop_ms && e.wall <= back_ms)
            .count(),
        back_after_entry,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn opt_ms(v: Option<u64>) -> String {
    v.map_or("–".into(), |v| format!("{v} ms"))
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    // Steps: `fold`, `flap`, `e2e` (join burst end to end and mass death), `flap_real`.
    // Unset: all but `flap_real` (10 minutes of flapping), which runs only when named.
    let steps = std::env::var("PANTHEON_BENCH_STEPS").unwrap_or_default();
    let run = |step: &str| {
        if steps.trim().is_empty() {
            step != "flap_real"
        } else {
            steps.split(',').any(|s| s.trim() == step)
        }
    };
    let plan = if full {
        Plan {
            rebuild_joins: 400,
            joins: 1000,
            servers: 5,
            per_server: 80,
        }
    } else {
        println!("smoke run (use `cargo bench` for the real numbers)");
        Plan {
            rebuild_joins: 50,
            joins: 100,
            servers: 5,
            per_server: 8,
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if run("fold") {
        fold_step(plan);
    }
    if run("flap") {
        flap_step();
    }
    if run("e2e") {
        runtime.block_on(e2e_step(plan));
    }
    if run("flap_real") {
        runtime.block_on(flap_real_step(full));
    }
}

fn fold_step(plan: Plan) {
    println!("\n### Join burst, fold only (default ring, 2048 points per node)\n");
    println!("| fold | joins | time |\n|---|---:|---:|");
    let rows = fold_rows(plan);
    for r in &rows {
        println!("| {} | {} | {} |", r.how, r.joins, ms(r.took));
    }
    let before = rows[0].took.as_secs_f64();
    if let Some(after) = rows
        .iter()
        .find(|r| r.joins == plan.rebuild_joins && r.how.ends_with("(after)"))
    {
        println!(
            "\nratio at {} joins, before / after: {:.0}×",
            plan.rebuild_joins,
            before / after.took.as_secs_f64().max(1e-9)
        );
    }
}

fn flap_step() {
    println!("\n### Flapping: down/up every 2 s for 10 minutes, fold only\n");
    println!(
        "| damping | `died` while flapping | rebalances while flapping | owns keys again after it stops |\n|---|---:|---:|---:|"
    );
    for damping in [false, true] {
        let r = flap(10, 2000, damping);
        println!(
            "| {} | {} | {} | {} |",
            if r.damping { "on (defaults)" } else { "off" },
            r.died,
            r.rebalances,
            opt_ms(r.back_after)
        );
    }
}

async fn e2e_step(plan: Plan) {
    let (joins, death) = end_to_end(plan).await;
    println!("\n### Join burst, end to end (real projector)\n");
    println!(
        "| joins XADDed back to back | applied after | target |\n|---:|---:|---|\n| {} | {} | ≤ 3 s: {} |",
        plan.joins,
        joins.map_or("not within 120 s".into(), ms),
        if death
            .joins_took
            .is_some_and(|t| t <= Duration::from_secs(3))
        {
            "**met**"
        } else {
            "**missed**"
        }
    );
    println!("\n### Mass death (real projector and prober)\n");
    println!(
        "| nodes / servers | stopped | `died` seen | first | last | max lag | target |\n|---|---:|---:|---:|---:|---:|---|"
    );
    let met = death.died == death.stopped
        && death.last.is_some_and(|l| l <= 2500)
        && death.max_lag.is_some_and(|l| l < 1000);
    println!(
        "| {} / {} | {} | {} | {} | {} | {} | all within 2.5 s, lag < 1 s: {} |",
        death.nodes,
        plan.servers,
        death.stopped,
        death.died,
        opt_ms(death.first),
        opt_ms(death.last),
        opt_ms(death.max_lag),
        if met { "**met**" } else { "**missed**" }
    );
}

async fn flap_real_step(full: bool) {
    let flap = Duration::from_secs(if full { 600 } else { 20 });
    let back_within = Duration::from_secs(180);
    eprintln!("  flap_real: flapping for {flap:?}, then up to {back_within:?} to own keys again");
    let r = flap_real(flap, Duration::from_secs(2), 10_000, back_within).await;
    println!("\n### Flapping with a real prober and projector\n");
    println!(
        "| flapping | keys | down phases | `died` | `revived` | `damped` | `undamped` | rebalances while flapping | owns keys again after it stops | rebalances until then | healthy nodes `died` | target ≤ 3 rebalances |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    println!(
        "| 200 / 503 every 2 s for {:.0} s | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        r.flapped.as_secs_f64(),
        r.keys,
        r.downs,
        r.died,
        r.revived,
        r.damped,
        r.undamped,
        r.rebalances,
        r.back_after
            .map_or(format!("not within {back_within:?}"), |d| format!(
                "{:.1} s",
                d.as_secs_f64()
            )),
        r.rebalances_to_return,
        r.others_died,
        if r.rebalances <= 3 {
            "**met**"
        } else {
            "**missed**"
        }
    );
    if r.back_after.is_none() {
        println!(
            "\nnot back within {back_within:?}; after one more log entry (`assign` of one key): {}",
            r.back_after_entry
                .map_or("still not within 10 s".into(), |d| format!(
                    "owns keys {:.1} s later",
                    d.as_secs_f64()
                ))
        );
    }
}
