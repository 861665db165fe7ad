//! Confirmed deaths (ADR 0008), measured:
//!
//! 1. **False deaths, simulated through the real fold** (`sim`): healthy nodes whose probes
//!    each fail independently with probability 5%, probed at the default cadences with the
//!    prober's own decision code (`Tracked`, `next_is_confirmation`, what to report) and every
//!    reported result folded by the real `State`. Deterministic (seeded). Three ways: plain
//!    probes (the rise/fall rule, `fall` 3), confirmation with one fresh attempt, and the
//!    default confirmation (3 fresh attempts at once). Counted: `died` events per 10⁶ probe
//!    intervals (node-seconds at the 1 s interval).
//! 2. **False deaths, real lossy node** (`lossy`): one axum server with N health paths that
//!    delays 5% of requests (chosen independently) past the probe timeout, a real projector,
//!    a real prober and a `redis-server` started for the run; N nodes for D seconds, with
//!    plain probes and then with confirmations. Counted: `died` events.
//! 3. **Self-suspicion** (`degraded`): 200 healthy nodes; then every node answers 503 at once
//!    (what a prober whose own network broke sees) for 6 s, then healthy again. Measured: the
//!    time to `prober_degraded`, the `died` events (should be none), the time to
//!    `prober_recovered` after the repair.
//!
//! 4. **Scale** (`scale`): 10,000 nodes on 10 axum servers (1,000 health paths each), the
//!    projector and the prober as release binaries (child processes, so their CPU is their
//!    own), rendezvous placement; after a warm-up one server stops (10% of the nodes at
//!    once). Measured: from the stop until each `died` is readable, the projector lag of
//!    each `died`, and the projector's and prober's CPU over the 10 s after the stop.
//!
//! 5. **Two replicas** (`replicas`): two in-process probers share 20 healthy nodes and the
//!    trial nodes; a trial node is stopped at a random point of its probe interval and the time
//!    until `died` is readable is measured (the confirmation comes from the other replica,
//!    which learns of the suspicion through the read model).
//!
//! ```text
//! cargo bench -p pantheon-tests --bench confirm
//! PANTHEON_BENCH_STEPS=sim cargo bench -p pantheon-tests --bench confirm
//! ```
//!
//! Detection latency of a stopped and a hung node (which confirmations must not slow down) is
//! the `detection` bench (`PANTHEON_BENCH_STEPS=refused,hang`). Without `--bench` it runs
//! small as a smoke test. Results in `docs/benchmarks.md`, "Confirmed deaths".

mod support;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::stream::{connect_to, follow};
use support::wall_ms;

use axum::Router;
use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::routing::get;
use pantheon_domain::confirm::CheckedProbe;
use pantheon_domain::entry::{Command, LogEntry, ProbeResult};
use pantheon_domain::event::EventKind;
use pantheon_domain::health::ProbeError;
use pantheon_domain::{EntryId, Health, NodeId, State};
use pantheon_prober::ProberConfig;
use pantheon_prober::confirm::next_is_confirmation;
use pantheon_prober::schedule::Tracked;
use pantheon_projector::ProjectorConfig;
use pantheon_store::{Deployment, Layout, readmodel, stream};
use pantheon_test_support::TestRedis;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redis::aio::MultiplexedConnection;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const LOSS: f64 = 0.05;
const WAIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Step 1: simulation through the real fold.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    Confirm { attempts: usize },
}

impl Mode {
    fn name(self) -> String {
        match self {
            Mode::Plain => "plain probes (rise/fall only, fall 3)".into(),
            Mode::Confirm { attempts: 1 } => "confirmation, 1 fresh attempt".into(),
            Mode::Confirm { attempts: 3 } => {
                "confirmation, 3 fresh attempts at once (default)".into()
            }
            Mode::Confirm { attempts } => {
                format!("confirmation, {attempts} fresh attempts at once")
            }
        }
    }
}

struct SimResult {
    mode: Mode,
    intervals: u64,
    deaths: u64,
    probes: u64,
    fresh: u64,
    entries: u64,
    took: Duration,
}

fn jitter(rng: &mut StdRng, base: Duration, jitter: f64) -> u64 {
    base.mul_f64(rng.random_range((1.0 - jitter)..=(1.0 + jitter)))
        .as_millis() as u64
}

/// `nodes` healthy nodes for `seconds` of simulated time; every probe (and every fresh attempt
/// of a confirmation) fails with probability `loss`, independently.
fn simulate(mode: Mode, nodes: usize, seconds: u64, seed: u64) -> SimResult {
    let started = Instant::now();
    let config = ProberConfig::new(Deployment::default(), "sim");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut state = State::default();
    let t0: u64 = 1_700_000_000_000;
    let mut seq = 0u64;
    let mut apply = |state: &mut State, at: u64, entry: &LogEntry| {
        seq += 1;
        state
            .apply(EntryId::new(t0 + at, seq), entry)
            .expect("entry applies")
    };
    let ids: Vec<NodeId> = (0..nodes)
        .map(|i| NodeId::new(&format!("n{i}")).expect("id"))
        .collect();
    let mut tracked = Vec::with_capacity(nodes);
    for id in &ids {
        apply(
            &mut state,
            0,
            &LogEntry::new(Command::Join {
                node: id.clone(),
                url: format!("http://127.0.0.1:1/{id}"),
                weight: None,
                handoff: false,
            }),
        );
        let epoch = state.node(id).expect("joined").epoch;
        tracked.push(Tracked::new(epoch, String::new(), Health::Alive, 0));
    }
    let fall = state.policy().fall;
    let base = tokio::time::Instant::now();
    let mut queue: BinaryHeap<Reverse<(u64, usize)>> = (0..nodes)
        .map(|i| Reverse((1 + rng.random_range(0..1000u64), i)))
        .collect();
    let end = seconds * 1000;
    let (mut deaths, mut probes, mut fresh, mut entries) = (0u64, 0u64, 0u64, 0u64);
    while let Some(Reverse((at, i))) = queue.pop() {
        if at >= end {
            break;
        }
        let t = &mut tracked[i];
        let confirm = match mode {
            Mode::Plain => false,
            Mode::Confirm { .. } => next_is_confirmation(t, fall, true),
        };
        let ok = match mode {
            Mode::Confirm { attempts } if confirm => {
                fresh += attempts as u64;
                // Every attempt is sent; the confirmation succeeds if any does.
                let fails = (0..attempts).filter(|_| rng.random_bool(LOSS)).count();
                fails < attempts
            }
            _ => {
                probes += 1;
                !rng.random_bool(LOSS)
            }
        };
        t.observe(ok, base + Duration::from_millis(at));
        if t.should_report(ok) {
            t.reported(ok);
            let result = ProbeResult {
                node: ids[i].clone(),
                epoch: t.epoch,
                ok,
                status: ok.then_some(200),
                latency_ms: if ok { 1 } else { 500 },
                error: (!ok).then_some(ProbeError::Timeout),
                prober: Some("sim".into()),
            };
            let command = match mode {
                Mode::Plain => Command::Probe(result),
                Mode::Confirm { .. } => Command::Checked(CheckedProbe { result, confirm }),
            };
            let applied = apply(&mut state, at, &LogEntry::new(command));
            entries += 1;
            deaths += applied
                .events
                .iter()
                .filter(|e| matches!(e.kind, EventKind::Died { .. }))
                .count() as u64;
            // The prober learns the fold's view from the read model (instantly, here).
            let n = state.node(&ids[i]).expect("node");
            t.health = n.health.health;
            t.fails = n.health.fails;
        }
        // Random loss leaves few nodes suspect at once: re-probes stay at the full pace.
        let fast = config.suspect_interval;
        let next = at + jitter(&mut rng, t.cadence(&config, fast), config.jitter).max(1);
        queue.push(Reverse((next, i)));
    }
    SimResult {
        mode,
        intervals: nodes as u64 * seconds,
        deaths,
        probes,
        fresh,
        entries,
        took: started.elapsed(),
    }
}

fn sim_step(full: bool) {
    let (nodes, short, long) = if full {
        (200usize, 50_000u64, 500_000u64)
    } else {
        (50, 2_000, 2_000)
    };
    println!("\n### False deaths at 5% independent probe loss, simulated through the real fold\n");
    println!(
        "{nodes} healthy nodes, default cadences (1 s ± 10%, 200 ms while suspect or failing, 5 s dead), fall 3, rise 2, seed 11.\n"
    );
    println!(
        "| probing | probe intervals | false `died` | per 10⁶ intervals | pooled probes | fresh-connection attempts | log entries per node-hour | sim time |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let runs = [
        (Mode::Plain, short),
        (Mode::Confirm { attempts: 1 }, short),
        (Mode::Confirm { attempts: 2 }, short),
        (Mode::Confirm { attempts: 3 }, long),
    ];
    for (mode, seconds) in runs {
        let r = simulate(mode, nodes, seconds, 11);
        println!(
            "| {} | {} | {} | {:.2} | {} | {} | {:.0} | {:.1} s |",
            r.mode.name(),
            r.intervals,
            r.deaths,
            r.deaths as f64 * 1e6 / r.intervals as f64,
            r.probes,
            r.fresh,
            r.entries as f64 * 3600.0 / r.intervals as f64,
            r.took.as_secs_f64()
        );
    }
    println!(
        "\nExpected: a false death needs fall − 1 = 2 failed regular probes and a failed confirmation of k attempts: 0.05^(2+k) per interval, ≈ 125 per 10⁶ for k = 1 (the same as plain probes: the confirmation replaces the third probe), ≈ 6 for k = 2, ≈ 0.3 for k = 3."
    );
}

// ---------------------------------------------------------------------------------------------
// Real servers: N health paths on one axum listener.

#[derive(Default)]
struct Fleet {
    /// Every answer is 503 (the prober's own network "broke").
    broken: AtomicBool,
    /// Delay this share (per mille) of requests past the probe timeout.
    loss_per_mille: AtomicU64,
    requests: AtomicU64,
    delayed: AtomicU64,
}

async fn health(AxState(f): AxState<Arc<Fleet>>, Path(_i): Path<u32>) -> StatusCode {
    f.requests.fetch_add(1, Ordering::Relaxed);
    if f.broken.load(Ordering::Relaxed) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let per_mille = f.loss_per_mille.load(Ordering::Relaxed);
    if per_mille > 0 && rand::rng().random_range(0..1000) < per_mille {
        f.delayed.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    StatusCode::OK
}

async fn serve(fleet: Arc<Fleet>, stop: CancellationToken) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = Router::new().route("/h/{i}", get(health)).with_state(fleet);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
    });
    addr
}

/// Events read so far, with the instant each became readable.
#[derive(Clone, Default)]
struct Watcher {
    seen: Arc<Mutex<Vec<(String, String, Instant)>>>,
}

impl Watcher {
    fn spawn(&self, url: String, key: String, stop: CancellationToken) {
        let seen = self.seen.clone();
        follow(url, key, "0-0", 100, stop, move |entries| {
            let at = Instant::now();
            let mut seen = seen.lock().expect("lock");
            for e in entries {
                seen.push((
                    e.get("type").unwrap_or_default().to_owned(),
                    e.get("node").unwrap_or_default().to_owned(),
                    at,
                ));
            }
        });
    }

    fn count_since(&self, kind: &str, since: Instant) -> usize {
        self.seen
            .lock()
            .expect("lock")
            .iter()
            .filter(|(k, _, at)| k == kind && *at >= since)
            .count()
    }

    fn first_since(&self, kind: &str, since: Instant) -> Option<Instant> {
        self.seen
            .lock()
            .expect("lock")
            .iter()
            .find(|(k, _, at)| k == kind && *at >= since)
            .map(|(_, _, at)| *at)
    }
}

struct Env {
    _redis: TestRedis,
    fleet: Arc<Fleet>,
    watcher: Watcher,
    stop: CancellationToken,
    con: MultiplexedConnection,
    layout: Layout,
}

/// A cluster of `nodes` paths on one server, a projector and one prober (`confirm` on/off).
async fn env(nodes: usize, confirm: bool) -> Env {
    let redis = TestRedis::start().await;
    let cluster = redis.namespace().to_owned();
    let layout = Layout::new("pantheon", &cluster);
    let mut con = connect_to(&redis.url).await;
    let stop = CancellationToken::new();
    let fleet = Arc::<Fleet>::default();
    let addr = serve(fleet.clone(), stop.clone()).await;
    let watcher = Watcher::default();
    watcher.spawn(redis.url.clone(), layout.events(), stop.clone());
    let deployment = Deployment::from_url(&redis.url).expect("redis url");
    let mut pc = ProjectorConfig::new(deployment.clone(), cluster.clone());
    pc.instance = "bench-projector".into();
    let t = stop.clone();
    tokio::spawn(async move {
        pantheon_projector::run(pc, t).await.expect("projector run");
    });
    // Rendezvous placement: joining thousands of nodes into the default ring is the join
    // bench's business, not this one's.
    let policy = LogEntry::new(Command::Policy(pantheon_domain::policy::PolicyChange {
        strategy: Some(pantheon_domain::Strategy::Rendezvous),
        ..Default::default()
    }));
    let mut pipe = redis::pipe();
    for entry in std::iter::once(policy).chain((0..nodes).map(|i| {
        LogEntry::new(Command::Join {
            node: NodeId::new(&format!("n{i}")).expect("id"),
            url: format!("http://{addr}/h/{i}"),
            weight: None,
            handoff: false,
        })
    })) {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(layout.log()).arg("*");
        for (k, v) in entry.encode() {
            cmd.arg(k).arg(v);
        }
        pipe.add_command(cmd);
    }
    let ids: Vec<String> = pipe.query_async(&mut con).await.expect("XADD joins");
    let last: EntryId = ids.last().expect("ids").parse().expect("id");
    let deadline = Instant::now() + WAIT;
    while readmodel::load_checkpoint(&mut con, &layout)
        .await
        .expect("checkpoint")
        .and_then(|c| c.last_id)
        .is_none_or(|l| l < last)
    {
        assert!(
            Instant::now() < deadline,
            "joins not applied within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut config = ProberConfig::new(deployment, cluster);
    config.id = "bench-prober".into();
    config.confirm = confirm;
    let t = stop.clone();
    tokio::spawn(async move {
        pantheon_prober::run(config, t).await.expect("prober run");
    });
    Env {
        _redis: redis,
        fleet,
        watcher,
        stop,
        con,
        layout,
    }
}

async fn log_counts(env: &mut Env) -> HashMap<String, u64> {
    let v: redis::Value = redis::cmd("XRANGE")
        .arg(env.layout.log())
        .arg("-")
        .arg("+")
        .query_async(&mut env.con)
        .await
        .expect("XRANGE");
    let mut out = HashMap::new();
    for e in stream::parse_entries(v).expect("log") {
        let kind = match (e.get("type"), e.get("confirm")) {
            (Some("probe"), Some("1")) => "confirmation",
            (Some("probe"), _) => "probe",
            (Some(other), _) => other,
            _ => "?",
        };
        *out.entry(kind.to_owned()).or_default() += 1;
    }
    out
}

async fn lossy_step(full: bool) {
    let (nodes, seconds) = if full { (1000usize, 150u64) } else { (50, 5) };
    println!(
        "\n### False deaths, real lossy HTTP node: {nodes} health paths on one axum server, 5% of requests delayed past the 500 ms timeout, {seconds} s each\n"
    );
    println!(
        "| probing | probe intervals | requests | delayed | false `died` | per 10⁶ intervals | probe entries | confirmations | `prober_degraded` |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for confirm in [false, true] {
        let mut e = env(nodes, confirm).await;
        tokio::time::sleep(Duration::from_secs(3)).await; // first probes spread over 1 s
        e.fleet.loss_per_mille.store(50, Ordering::Relaxed);
        let (r0, d0) = (
            e.fleet.requests.load(Ordering::Relaxed),
            e.fleet.delayed.load(Ordering::Relaxed),
        );
        let from = Instant::now();
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let deaths = e.watcher.count_since("died", from);
        let (r1, d1) = (
            e.fleet.requests.load(Ordering::Relaxed),
            e.fleet.delayed.load(Ordering::Relaxed),
        );
        let counts = log_counts(&mut e).await;
        let intervals = nodes as u64 * seconds;
        println!(
            "| {} | {intervals} | {} | {} ({:.1}%) | {deaths} | {:.0} | {} | {} | {} |",
            if confirm {
                "confirmation (default, 3 fresh attempts)"
            } else {
                "plain probes (`confirm` off)"
            },
            r1 - r0,
            d1 - d0,
            (d1 - d0) as f64 * 100.0 / (r1 - r0).max(1) as f64,
            deaths as f64 * 1e6 / intervals as f64,
            counts.get("probe").copied().unwrap_or(0),
            counts.get("confirmation").copied().unwrap_or(0),
            e.watcher.count_since("prober_degraded", from),
        );
        e.stop.cancel();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The last XREAD-able events with their cause time (ms) and when they became readable.
#[derive(Clone, Default)]
struct Deaths {
    seen: Arc<Mutex<Vec<(u64, Instant)>>>,
}

impl Deaths {
    fn spawn(&self, url: String, key: String, stop: CancellationToken) {
        let seen = self.seen.clone();
        tokio::spawn(async move {
            let mut con = connect_to(&url).await;
            let mut last = "$".to_owned();
            while !stop.is_cancelled() {
                let v: redis::Value = redis::cmd("XREAD")
                    .arg("COUNT")
                    .arg(5000)
                    .arg("BLOCK")
                    .arg(100)
                    .arg("STREAMS")
                    .arg(&key)
                    .arg(&last)
                    .query_async(&mut con)
                    .await
                    .expect("XREAD events");
                let at = Instant::now();
                let entries = stream::parse_read(v).expect("events");
                let mut seen = seen.lock().expect("lock");
                for e in entries {
                    last = e.id.to_string();
                    if e.get("type") == Some("died") {
                        let cause_ms = e.get("at").and_then(|v| v.parse().ok()).unwrap_or_default();
                        seen.push((cause_ms, at));
                    }
                }
            }
        });
    }
}

async fn scale_step(full: bool) {
    use pantheon_test_support::process::{ChildGuard, cpu_time, release_binary};
    let (servers, per_server) = if full { (10usize, 1000usize) } else { (4, 50) };
    let nodes = servers * per_server;
    println!(
        "\n### Scale: {nodes} nodes on {servers} servers at 1 s probes, one server ({per_server} nodes) stops\n"
    );
    if !full {
        // The service binaries are looked up next to a release bench; a smoke run has none.
        println!("(smoke run: the scale step runs with `cargo bench` only)");
        return;
    }
    let projector_bin = release_binary(
        "pantheon-projector-service",
        "pantheon-projector",
        "PANTHEON_PROJECTOR_BIN",
    );
    let prober_bin = release_binary(
        "pantheon-prober-service",
        "pantheon-prober",
        "PANTHEON_PROBER_BIN",
    );
    let (Some(projector_bin), Some(prober_bin)) = (projector_bin, prober_bin) else {
        println!("(skipped: the service binaries could not be built)");
        return;
    };
    let redis = TestRedis::start().await;
    let cluster = redis.namespace().to_owned();
    let layout = Layout::new("pantheon", &cluster);
    let mut con = connect_to(&redis.url).await;
    let stop = CancellationToken::new();
    let child = |bin: &std::path::Path, id: &str| {
        let mut cmd = std::process::Command::new(bin);
        support::services::without_pantheon_env(&mut cmd);
        cmd.env("PANTHEON_REDIS_URL", &redis.url)
            .env("PANTHEON_CLUSTER", &cluster)
            .env("PANTHEON_PROBER__ID", id)
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null());
        ChildGuard(cmd.spawn().expect("spawn service binary"))
    };
    let projector = child(&projector_bin, "unused");
    let mut fleets = Vec::new();
    let mut addrs = Vec::new();
    let mut tokens = Vec::new();
    for _ in 0..servers {
        let fleet = Arc::<Fleet>::default();
        let token = stop.child_token();
        addrs.push(serve(fleet.clone(), token.clone()).await);
        fleets.push(fleet);
        tokens.push(token);
    }
    // Rendezvous placement; vnodes 1024 because the ring-size limit (2^24 points = total
    // weight × vnodes, checked whatever the strategy) admits only 8,192 nodes at 2048.
    let policy = LogEntry::new(Command::Policy(pantheon_domain::policy::PolicyChange {
        strategy: Some(pantheon_domain::Strategy::Rendezvous),
        vnodes: Some(1024),
        ..Default::default()
    }));
    let entries: Vec<LogEntry> = std::iter::once(policy)
        .chain((0..nodes).map(|i| {
            LogEntry::new(Command::Join {
                node: NodeId::new(&format!("n{i}")).expect("id"),
                url: format!("http://{}/h/{i}", addrs[i % servers]),
                weight: None,
                handoff: false,
            })
        }))
        .collect();
    let mut last = None;
    for chunk in entries.chunks(500) {
        let mut pipe = redis::pipe();
        for entry in chunk {
            let mut cmd = redis::cmd("XADD");
            cmd.arg(layout.log()).arg("*");
            for (k, v) in entry.encode() {
                cmd.arg(k).arg(v);
            }
            pipe.add_command(cmd);
        }
        let ids: Vec<String> = pipe.query_async(&mut con).await.expect("XADD joins");
        last = ids.last().cloned();
    }
    let last: EntryId = last.expect("ids").parse().expect("id");
    let deadline = Instant::now() + Duration::from_secs(120);
    while readmodel::load_checkpoint(&mut con, &layout)
        .await
        .expect("checkpoint")
        .and_then(|c| c.last_id)
        .is_none_or(|l| l < last)
    {
        assert!(Instant::now() < deadline, "joins not applied within 120 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let joined = readmodel::node_records(&mut con, &layout)
        .await
        .expect("nodes")
        .len();
    assert_eq!(joined, nodes, "every join applied");
    let prober = child(&prober_bin, "bench-prober");
    let deaths = Deaths::default();
    deaths.spawn(redis.url.clone(), layout.events(), stop.clone());
    let warm = if full { 12 } else { 4 };
    tokio::time::sleep(Duration::from_secs(warm)).await;
    let steady_from = (
        Instant::now(),
        cpu_time(projector.pid()),
        cpu_time(prober.pid()),
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let steady = (
        steady_from.0.elapsed(),
        cpu_time(projector.pid()) - steady_from.1,
        cpu_time(prober.pid()) - steady_from.2,
    );
    let requests_before = fleets[0].requests.load(Ordering::Relaxed);
    let (stopped, stop_wall) = (Instant::now(), wall_ms());
    let cpu0 = (cpu_time(projector.pid()), cpu_time(prober.pid()));
    tokens[0].cancel();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let window = stopped.elapsed();
    let cpu1 = (cpu_time(projector.pid()), cpu_time(prober.pid()));
    let seen = deaths.seen.lock().expect("lock").clone();
    let after: Vec<Duration> = seen
        .iter()
        .map(|(_, at)| at.saturating_duration_since(stopped))
        .collect();
    let within = after
        .iter()
        .filter(|d| **d <= Duration::from_secs(3))
        .count();
    let lag = seen
        .iter()
        .map(|(cause, at)| {
            let readable_wall =
                stop_wall + at.saturating_duration_since(stopped).as_millis() as u64;
            readable_wall.saturating_sub(*cause)
        })
        .max();
    let fmt =
        |d: Option<&Duration>| d.map_or("—".to_owned(), |d| format!("{} ms", d.as_millis()));
    println!(
        "| nodes | stopped | `died` seen (10 s) | within 3 s | first | last | max lag | projector CPU after the stop | projector CPU steady | prober CPU after / steady |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {nodes} | {per_server} | {} | {within} | {} | {} | {} | {:.0}% of a core | {:.0}% | {:.0}% / {:.0}% |",
        seen.len(),
        fmt(after.iter().min()),
        fmt(after.iter().max()),
        lag.map_or("—".into(), |l| format!("{l} ms")),
        (cpu1.0 - cpu0.0).as_secs_f64() * 100.0 / window.as_secs_f64(),
        steady.1.as_secs_f64() * 100.0 / steady.0.as_secs_f64(),
        (cpu1.1 - cpu0.1).as_secs_f64() * 100.0 / window.as_secs_f64(),
        steady.2.as_secs_f64() * 100.0 / steady.0.as_secs_f64(),
    );
    // The stopped server's nodes as the read model shows them after the window.
    let mut states: std::collections::BTreeMap<String, usize> = Default::default();
    for (node, record) in readmodel::node_records(&mut con, &layout)
        .await
        .expect("nodes")
        .into_iter()
        .flatten()
    {
        let i: usize = node.as_str()[1..].parse().unwrap_or(usize::MAX);
        if i.is_multiple_of(servers) {
            *states
                .entry(format!("{} (fails {})", record.health, record.fails.min(9)))
                .or_default() += 1;
        }
    }
    println!(
        "\n(the stopped server had answered {requests_before} probes before the stop; its nodes after the window, by health: {states:?})"
    );
    stop.cancel();
    drop(prober);
    drop(projector);
}

async fn replicas_step(full: bool) {
    let (rounds, per_round) = if full { (4, 5) } else { (1, 2) };
    println!(
        "\n### Two prober replicas: stopped process → `died` ({} trials, {per_round} at a time, next to 20 healthy nodes)\n",
        rounds * per_round
    );
    let redis = TestRedis::start().await;
    let cluster = redis.namespace().to_owned();
    let layout = Layout::new("pantheon", &cluster);
    let mut con = connect_to(&redis.url).await;
    let stop = CancellationToken::new();
    let watcher = Watcher::default();
    watcher.spawn(redis.url.clone(), layout.events(), stop.clone());
    let deployment = Deployment::from_url(&redis.url).expect("redis url");
    let mut pc = ProjectorConfig::new(deployment.clone(), cluster.clone());
    pc.instance = "bench-projector".into();
    let t = stop.clone();
    tokio::spawn(async move {
        pantheon_projector::run(pc, t).await.expect("projector run");
    });
    let xadd = |entry: LogEntry| {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(layout.log()).arg("*");
        for (k, v) in entry.encode() {
            cmd.arg(k).arg(v);
        }
        cmd
    };
    let join = |node: String, url: String| {
        xadd(LogEntry::new(Command::Join {
            node: NodeId::new(&node).expect("id"),
            url,
            weight: None,
            handoff: false,
        }))
    };
    let fillers = Arc::<Fleet>::default();
    let filler_addr = serve(fillers.clone(), stop.clone()).await;
    for i in 0..20 {
        let _: String = join(format!("filler-{i}"), format!("http://{filler_addr}/h/{i}"))
            .query_async(&mut con)
            .await
            .expect("XADD");
    }
    for id in ["prober-a", "prober-b"] {
        let mut config = ProberConfig::new(deployment.clone(), cluster.clone());
        config.id = id.into();
        config.registration_ttl = Duration::from_secs(1);
        let t = stop.clone();
        tokio::spawn(async move {
            pantheon_prober::run(config, t).await.expect("prober run");
        });
    }
    // Both replicas warm and the projector's `probers` entry written.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut times = Vec::new();
    let mut missed = 0;
    let mut confirmers_differ = true;
    for round in 0..rounds {
        let mut trials = Vec::new();
        for i in 0..per_round {
            let name = format!("r{round}-n{i}");
            let token = stop.child_token();
            let addr = serve(Arc::<Fleet>::default(), token.clone()).await;
            let _: String = join(name.clone(), format!("http://{addr}/h/0"))
                .query_async(&mut con)
                .await
                .expect("XADD");
            trials.push((name, token));
        }
        let handles: Vec<_> = trials
            .into_iter()
            .map(|(name, token)| {
                let watcher = watcher.clone();
                tokio::spawn(async move {
                    let warm = rand::rng().random_range(1500..=2500);
                    tokio::time::sleep(Duration::from_millis(warm)).await;
                    let stopped = Instant::now();
                    token.cancel();
                    let deadline = stopped + Duration::from_secs(10);
                    loop {
                        let found = watcher
                            .seen
                            .lock()
                            .expect("lock")
                            .iter()
                            .find(|(k, n, _)| k == "died" && *n == name)
                            .map(|(_, _, at)| at.saturating_duration_since(stopped));
                        if found.is_some() || Instant::now() > deadline {
                            break (name, found);
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
            })
            .collect();
        for h in handles {
            let (name, found) = h.await.expect("trial");
            match found {
                Some(d) => times.push(d),
                None => missed += 1,
            }
            let _: String = xadd(LogEntry::new(Command::Leave {
                node: NodeId::new(&name).expect("id"),
            }))
            .query_async(&mut con)
            .await
            .expect("XADD");
        }
    }
    // Who confirmed: every death's cause must be a confirmation by a replica that did not send
    // the node's regular probes.
    let v: redis::Value = redis::cmd("XRANGE")
        .arg(layout.log())
        .arg("-")
        .arg("+")
        .query_async(&mut con)
        .await
        .expect("XRANGE");
    let log = stream::parse_entries(v).expect("log");
    for e in log.iter().filter(|e| e.get("confirm") == Some("1")) {
        let node = e.get("node");
        let owner = log
            .iter()
            .find(|r| r.get("node") == node && r.get("confirm") == Some("0"))
            .and_then(|r| r.get("prober"));
        if owner == e.get("prober") {
            confirmers_differ = false;
        }
    }
    times.sort();
    let pick = |q: f64| {
        times
            .get(((times.len() as f64 - 1.0) * q).round() as usize)
            .map_or("—".to_owned(), |d| format!("{} ms", d.as_millis()))
    };
    println!("| trials | detected | min | median | p90 | max | confirmed by the other replica |");
    println!("|---:|---:|---:|---:|---:|---:|---|");
    println!(
        "| {} | {} | {} | {} | {} | {} | {} |",
        times.len() + missed,
        times.len(),
        pick(0.0),
        pick(0.5),
        pick(0.9),
        pick(1.0),
        if confirmers_differ {
            "always"
        } else {
            "not always"
        }
    );
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(300)).await;
}

async fn degraded_step(full: bool) {
    let nodes = if full { 200 } else { 40 };
    println!(
        "\n### Self-suspicion: {nodes} nodes, then every node answers 503 at once for 6 s, then healthy\n"
    );
    println!(
        "| run | break → `prober_degraded` | `suspect` | `died` | repair → `prober_recovered` | `revived`/`recovered` after |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let rounds = if full { 3 } else { 1 };
    for round in 1..=rounds {
        let e = env(nodes, true).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let broke = Instant::now();
        e.fleet.broken.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(6)).await;
        let repaired = Instant::now();
        e.fleet.broken.store(false, Ordering::Relaxed);
        let deadline = repaired + Duration::from_secs(10);
        while e
            .watcher
            .first_since("prober_recovered", repaired)
            .is_none()
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = |kind: &str, from: Instant| {
            e.watcher
                .first_since(kind, from)
                .map_or("never".to_owned(), |t| {
                    format!("{} ms", t.duration_since(from).as_millis())
                })
        };
        println!(
            "| {round} | {} | {} | {} | {} | {} |",
            after("prober_degraded", broke),
            e.watcher.count_since("suspect", broke),
            e.watcher.count_since("died", broke),
            after("prober_recovered", repaired),
            e.watcher.count_since("revived", repaired)
                + e.watcher.count_since("recovered", repaired),
        );
        e.stop.cancel();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    if !full {
        println!("smoke run (use `cargo bench` for the real numbers)");
    }
    let steps = std::env::var("PANTHEON_BENCH_STEPS").unwrap_or_default();
    let run = |step: &str| steps.is_empty() || steps.split(',').any(|s| s.trim() == step);
    let started = Instant::now();
    if run("sim") {
        sim_step(full);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        if run("degraded") {
            degraded_step(full).await;
        }
        if run("lossy") {
            lossy_step(full).await;
        }
        if run("scale") {
            scale_step(full).await;
        }
        if run("replicas") {
            replicas_step(full).await;
        }
    });
    println!(
        "\nTotal bench time {:.0} s",
        started.elapsed().as_secs_f64()
    );
}
