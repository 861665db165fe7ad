//! Issue 23's last target: what load reports (ADR 0018) cost at 10,000 nodes — projector CPU
//! with nodes sending `X-Pantheon-Load` ≤ 1.2× without, in the same run.
//!
//! One `redis-server` started for the run (never the machine's shared Redis), the real
//! `pantheon-projector` and `pantheon-prober` binaries as two child processes, and N nodes
//! (10,000) joined with rendezvous placement and 1,024 vnodes (a policy entry first; joins
//! beyond 2^24 ring points are refused whatever the strategy, 8,192 nodes at the default 2,048
//! vnodes), their health answered by
//! a few axum listeners in this process (`/health/{n}` on 8 listeners). Every answer carries
//! `X-Pantheon-Load` only while the header mode says so:
//!
//! * **off**: no header (a healthy steady state writes nothing to the log);
//! * **noisy**: `base × U(0.8, 1.2)`, drawn per answer (`base` = 100 + n mod 50): most raw
//!   figures leave a 5% band; the prober's smoothed figure seldom does (the worst case);
//! * **steady**: `base`, unchanged: each node's figure is written once.
//!
//! After a warm-up (every node `alive`, the projector caught up), each phase runs windows of
//! 30 s in the order off, noisy, off, noisy, steady, and records for each window the CPU
//! seconds (utime + stime, `/proc`) of the projector, the prober, `redis-server` and this
//! process (the HTTP side), the `loads` entries and node reports appended in the window, and the
//! projector's lag at its end (the time until it applied the log's last entry). Phase one runs
//! with the policy's `load_epsilon` 0 (loads folded into the node records only), phase two with
//! `load_epsilon 10` (a placement round at most every 2 s of log time, too). A mode switch is
//! followed by a few seconds before the window opens, so a window measures the mode's steady
//! state.
//!
//! ```text
//! cargo bench -p pantheon-tests --bench load_cost
//! cargo bench --profile dev -p pantheon-tests --bench load_cost   # reuses the tests' build
//! ```
//!
//! The service binaries are built with `cargo build --release -p pantheon-projector-service -p
//! pantheon-prober-service` into the bench's target directory (or set `PANTHEON_PROJECTOR_BIN`
//! and `PANTHEON_PROBER_BIN`). Knobs: `PANTHEON_BENCH_NODES` (10,000), `PANTHEON_BENCH_WINDOW`
//! (seconds, 30), `PANTHEON_BENCH_SETTLE` (seconds from a mode switch until the window opens,
//! 4: the prober's smoothing takes about a minute to converge after nodes start sending the
//! header, and its noise estimate up to 4 minutes to fade once the header turns exact, so 240
//! measures the steady state), `PANTHEON_BENCH_PHASES` (the `load_epsilon` of
//! each phase, `0,10`). Without
//! `--bench` (as in `cargo test --benches`) it runs 200 nodes and 2 s windows with the tests'
//! own builds of the binaries, as a smoke test.

// A benchmark harness: a failed setup step should stop it with its reason.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::routing::get;
use pantheon_domain::entry::{Command, LogEntry};
use pantheon_domain::policy::PolicyChange;
use pantheon_domain::{EntryId, Strategy};
use pantheon_store::{Layout, RawEntry, readmodel, stream};
use pantheon_test_support::TestRedis;
use pantheon_test_support::process::{ChildGuard, cpu_time, load_average, memory_mib};
use rand::Rng;
use redis::aio::MultiplexedConnection;
use support::append::{joins, xadd, xadd_pipelined};
use support::services::service;
use support::stream::connect_to;
use support::{last_applied, last_id};
use tokio::net::TcpListener;

/// The tests' own builds of the binaries (the smoke run).
const PROJECTOR_UNDER_TEST: &str = env!("CARGO_BIN_EXE_pantheon-projector-under-test");
const PROBER_UNDER_TEST: &str = env!("CARGO_BIN_EXE_pantheon-prober-under-test");
/// The header the prober reads (`pantheon_prober::load_reports::HEADER`).
const HEADER: &str = "x-pantheon-load";
const LISTENERS: usize = 8;
const JOINS_PER_PIPE: usize = 500;
/// The longest any wait of the set-up may take.
const SETUP_WAIT: Duration = Duration::from_secs(300);
/// How long the end of a window waits for the projector to catch up.
const LAG_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Off = 0,
    Noisy = 1,
    Steady = 2,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Noisy => "noisy ±20%",
            Mode::Steady => "steady",
        }
    }
}

/// The order of the windows in a phase.
const WINDOWS: [Mode; 5] = [Mode::Off, Mode::Noisy, Mode::Off, Mode::Noisy, Mode::Steady];

#[derive(Debug, Clone)]
struct Plan {
    full: bool,
    nodes: usize,
    window: Duration,
    /// After a mode switch, before the window opens.
    settle: Duration,
    phases: Vec<u32>,
}

fn knob(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Plan {
    fn from_env() -> Plan {
        let full = std::env::args().any(|a| a == "--bench");
        let nodes = knob("PANTHEON_BENCH_NODES")
            .map(|v| v.parse().expect("PANTHEON_BENCH_NODES: a number"))
            .unwrap_or(if full { 10_000 } else { 200 });
        let window = knob("PANTHEON_BENCH_WINDOW")
            .map(|v| Duration::from_secs(v.parse().expect("PANTHEON_BENCH_WINDOW: seconds")))
            .unwrap_or(Duration::from_secs(if full { 30 } else { 2 }));
        let phases = knob("PANTHEON_BENCH_PHASES")
            .map(|v| {
                v.split(',')
                    .map(|e| e.trim().parse().expect("PANTHEON_BENCH_PHASES: 0,10"))
                    .collect()
            })
            .unwrap_or_else(|| vec![0, 10]);
        Plan {
            full,
            nodes,
            window,
            settle: knob("PANTHEON_BENCH_SETTLE")
                .map(|v| Duration::from_secs(v.parse().expect("PANTHEON_BENCH_SETTLE: seconds")))
                .unwrap_or(if full {
                    Duration::from_secs(4)
                } else {
                    Duration::from_millis(500)
                }),
            phases,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The node side: every node's health answer, with or without its load.

#[derive(Debug)]
struct Nodes {
    mode: AtomicU8,
    answers: AtomicU64,
    with_load: AtomicU64,
    /// Answers per node.
    per_node: Vec<AtomicU32>,
}

impl Nodes {
    fn answered(&self) -> usize {
        self.per_node
            .iter()
            .filter(|c| c.load(Ordering::Relaxed) > 0)
            .count()
    }
}

async fn health(State(s): State<Arc<Nodes>>, Path(n): Path<u64>) -> (HeaderMap, &'static str) {
    s.answers.fetch_add(1, Ordering::Relaxed);
    if let Some(c) = s.per_node.get(n as usize) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    let mut headers = HeaderMap::new();
    let base = 100 + n % 50;
    let text = match s.mode.load(Ordering::Relaxed) {
        1 => Some(format!(
            "{:.2}",
            base as f64 * rand::rng().random_range(0.8..=1.2)
        )),
        2 => Some(base.to_string()),
        _ => None,
    };
    if let Some(text) = text {
        s.with_load.fetch_add(1, Ordering::Relaxed);
        headers.insert(HEADER, HeaderValue::from_str(&text).unwrap());
    }
    (headers, "ok")
}

/// `LISTENERS` axum servers on 127.0.0.1 answering `/health/{n}`; their addresses.
async fn serve_nodes(nodes: Arc<Nodes>) -> Vec<String> {
    let app = Router::new()
        .route("/health/{n}", get(health))
        .with_state(nodes);
    let mut addrs = Vec::new();
    for _ in 0..LISTENERS {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        addrs.push(listener.local_addr().expect("local addr").to_string());
        let app = app.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
    }
    addrs
}

// ---------------------------------------------------------------------------------------------
// The binaries.

/// The projector and prober binaries: the variables if set; else, for `--bench`, release builds
/// (`cargo build --release`, into this bench's target directory, whatever profile the bench
/// itself was built in); else the tests' own builds.
fn binaries(full: bool) -> (PathBuf, PathBuf) {
    let (projector, prober) = (knob("PANTHEON_PROJECTOR_BIN"), knob("PANTHEON_PROBER_BIN"));
    if let (Some(a), Some(b)) = (&projector, &prober) {
        return (a.into(), b.into());
    }
    if !full {
        return (PROJECTOR_UNDER_TEST.into(), PROBER_UNDER_TEST.into());
    }
    // <target>/<profile>/deps/load_cost-<hash>
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    let workspace = FsPath::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!(
        "building: cargo build --release -p pantheon-projector-service -p pantheon-prober-service"
    );
    let built = std::process::Command::new(cargo)
        .args([
            "build",
            "--release",
            "-p",
            "pantheon-projector-service",
            "-p",
            "pantheon-prober-service",
        ])
        .current_dir(workspace)
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .unwrap();
    assert!(built.success(), "the release build failed");
    let release = target.join("release");
    (
        projector.map_or_else(|| release.join("pantheon-projector"), PathBuf::from),
        prober.map_or_else(|| release.join("pantheon-prober"), PathBuf::from),
    )
}

// ---------------------------------------------------------------------------------------------
// Redis helpers.

/// Waits (bounded) until the projector applied `id`; how long that took, `None` if not within.
async fn applied_within(
    con: &mut MultiplexedConnection,
    layout: &Layout,
    id: EntryId,
    within: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    while last_applied(con, layout).await.is_none_or(|l| l < id) {
        if started.elapsed() > within {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Some(started.elapsed())
}

/// The log's entries after `from` (exclusive).
async fn entries_after(
    con: &mut MultiplexedConnection,
    layout: &Layout,
    from: EntryId,
) -> Vec<RawEntry> {
    let v: redis::Value = redis::cmd("XRANGE")
        .arg(layout.log())
        .arg(format!("({from}"))
        .arg("+")
        .query_async(con)
        .await
        .expect("XRANGE");
    stream::parse_entries(v).expect("stream entries")
}

/// Nodes `alive`, and nodes whose record carries a load.
async fn node_counts(con: &mut MultiplexedConnection, layout: &Layout) -> (usize, usize) {
    let records = readmodel::nodes(con, layout).await.expect("node records");
    (
        records.iter().filter(|r| r.state == "alive").count(),
        records.iter().filter(|r| r.load.is_some()).count(),
    )
}

/// Time on CPU of every current thread of `pid`, in ns (`/proc/<pid>/task/*/schedstat`): finer
/// than `cpu_time`'s 10 ms ticks, for a process that is nearly idle (a thread that exits
/// between two readings takes its time with it).
fn run_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// How many nodes are in each state, as text.
async fn node_states(con: &mut MultiplexedConnection, layout: &Layout) -> String {
    let mut by: Vec<(String, usize)> = Vec::new();
    for r in readmodel::nodes(con, layout).await.expect("node records") {
        match by.iter_mut().find(|(k, _)| *k == r.state) {
            Some((_, n)) => *n += 1,
            None => by.push((r.state.clone(), 1)),
        }
    }
    by.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// From the `loads` hash: the last round's log time (ms, its `round` field), the nodes above
/// the band and the size in bytes of the `meta` field that lists them.
async fn load_meta(
    con: &mut MultiplexedConnection,
    layout: &Layout,
) -> (Option<u64>, usize, usize) {
    let (meta, round): (Option<String>, Option<u64>) = redis::cmd("HMGET")
        .arg(layout.loads())
        .arg("meta")
        .arg("round")
        .query_async(con)
        .await
        .expect("HMGET meta round");
    let Some(meta) = meta else {
        return (round, 0, 0);
    };
    let v: serde_json::Value = serde_json::from_str(&meta).unwrap_or_default();
    (
        round,
        v.get("above")
            .and_then(serde_json::Value::as_array)
            .map_or(0, Vec::len),
        meta.len(),
    )
}

async fn join_all(con: &mut MultiplexedConnection, layout: &Layout, urls: &[String]) -> Duration {
    let started = Instant::now();
    let joins = joins(urls, |i| format!("node-{i}"));
    let last = xadd_pipelined(con, &layout.log(), &joins, JOINS_PER_PIPE).await;
    applied_within(con, layout, last, SETUP_WAIT)
        .await
        .expect("joins applied in time");
    started.elapsed()
}

async fn policy(con: &mut MultiplexedConnection, layout: &Layout, change: PolicyChange) {
    let id = xadd(con, &layout.log(), &LogEntry::new(Command::Policy(change))).await;
    applied_within(con, layout, id, SETUP_WAIT)
        .await
        .expect("policy applied in time");
}

// ---------------------------------------------------------------------------------------------
// One window.

#[derive(Debug, Clone)]
struct Window {
    epsilon: u32,
    mode: Mode,
    secs: f64,
    projector: Duration,
    /// The projector's time on CPU from `schedstat` (ns precision).
    projector_ns: u64,
    prober: Duration,
    redis: Duration,
    bench: Duration,
    /// `loads` entries appended in the window, and the node reports they carry.
    loads_entries: usize,
    reports: usize,
    /// Every other entry appended in the window, by type.
    other: Vec<(String, usize)>,
    answers: u64,
    with_load: u64,
    /// From the window's end until the projector applied the log's last entry.
    lag: Option<Duration>,
    /// The last round's age at the window's end (log time), and nodes above the band.
    round_age: Option<u64>,
    above: usize,
    meta_bytes: usize,
    records_with_load: usize,
}

struct Pids {
    projector: u32,
    prober: u32,
    redis: u32,
}

async fn window(
    con: &mut MultiplexedConnection,
    layout: &Layout,
    pids: &Pids,
    nodes: &Nodes,
    epsilon: u32,
    mode: Mode,
    plan: &Plan,
) -> Window {
    nodes.mode.store(mode as u8, Ordering::Relaxed);
    tokio::time::sleep(plan.settle).await;
    let from = last_id(con, layout).await;
    let me = std::process::id();
    let (a0, w0) = (
        nodes.answers.load(Ordering::Relaxed),
        nodes.with_load.load(Ordering::Relaxed),
    );
    let t0 = Instant::now();
    let ns0 = run_ns(pids.projector);
    let cpu0 = [
        cpu_time(pids.projector),
        cpu_time(pids.prober),
        cpu_time(pids.redis),
        cpu_time(me),
    ];
    tokio::time::sleep(plan.window).await;
    let cpu1 = [
        cpu_time(pids.projector),
        cpu_time(pids.prober),
        cpu_time(pids.redis),
        cpu_time(me),
    ];
    let ns1 = run_ns(pids.projector);
    let secs = t0.elapsed().as_secs_f64();
    let (a1, w1) = (
        nodes.answers.load(Ordering::Relaxed),
        nodes.with_load.load(Ordering::Relaxed),
    );
    let end = last_id(con, layout).await;
    let lag = applied_within(con, layout, end, LAG_WAIT).await;
    let entries: Vec<RawEntry> = entries_after(con, layout, from)
        .await
        .into_iter()
        .filter(|e| e.id <= end)
        .collect();
    let mut loads_entries = 0;
    let mut reports = 0;
    let mut other: Vec<(String, usize)> = Vec::new();
    for e in &entries {
        let kind = e.get("type").unwrap_or("?");
        if kind == "loads" {
            loads_entries += 1;
            reports += e.fields.iter().filter(|(k, _)| k == b"node").count();
        } else {
            match other.iter_mut().find(|(k, _)| k == kind) {
                Some((_, n)) => *n += 1,
                None => other.push((kind.to_owned(), 1)),
            }
        }
    }
    let (round, above, meta_bytes) = load_meta(con, layout).await;
    let (_, records_with_load) = node_counts(con, layout).await;
    let w = Window {
        epsilon,
        mode,
        secs,
        projector: cpu1[0].saturating_sub(cpu0[0]),
        projector_ns: ns1.saturating_sub(ns0),
        prober: cpu1[1].saturating_sub(cpu0[1]),
        redis: cpu1[2].saturating_sub(cpu0[2]),
        bench: cpu1[3].saturating_sub(cpu0[3]),
        loads_entries,
        reports,
        other,
        answers: a1 - a0,
        with_load: w1 - w0,
        lag,
        round_age: round.map(|r| end.ms.saturating_sub(r)),
        above,
        meta_bytes,
        records_with_load,
    };
    eprintln!(
        "  ε {epsilon}, {}: projector {:.2} s, prober {:.2} s, redis {:.2} s, {} loads entries \
         ({} reports), lag {}",
        mode.name(),
        w.projector.as_secs_f64(),
        w.prober.as_secs_f64(),
        w.redis.as_secs_f64(),
        w.loads_entries,
        w.reports,
        w.lag
            .map_or("not caught up".into(), |l| format!("{} ms", l.as_millis()))
    );
    w
}

// ---------------------------------------------------------------------------------------------
// Report.

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1048576.0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("?", |(_, m)| m.trim())
        .to_owned();
    format!("{cores} cores ({model}), {mem_gib:.1} GiB")
}

fn cores(d: Duration, secs: f64) -> String {
    format!("{:.2} s ({:.3})", d.as_secs_f64(), d.as_secs_f64() / secs)
}

/// Summed CPU per second of window over the windows `pick` selects.
fn rate(
    windows: &[&Window],
    pick: impl Fn(&Window) -> bool,
    cpu: impl Fn(&Window) -> Duration,
) -> f64 {
    let (mut s, mut t) = (0.0, 0.0);
    for w in windows.iter().filter(|w| pick(w)) {
        s += cpu(w).as_secs_f64();
        t += w.secs;
    }
    if t > 0.0 { s / t } else { f64::NAN }
}

fn ratio(on: f64, off: f64) -> String {
    if off > 0.0 {
        format!("{:.2}×", on / off)
    } else if on > 0.0 {
        "∞ (0 without)".into()
    } else {
        "– (0 both)".into()
    }
}

fn report(windows: &[Window], plan: &Plan) {
    println!();
    println!(
        "### Load reports at {} nodes: CPU per {} s window",
        plan.nodes,
        plan.window.as_secs()
    );
    println!();
    println!(
        "CPU seconds (utime + stime) in the window, in parentheses as cores (the projector's also \
         from its threads' `schedstat`, ns precision). Reports: the node \
         loads carried by the window's `loads` entries; lag: from the window's end until the \
         projector applied the log's last entry; round age: the log time since the last \
         placement round at the window's end."
    );
    println!();
    println!(
        "| # | load_epsilon | header | projector | projector, schedstat | prober | redis-server | bench (HTTP side) | \
         `loads` entries | reports | other entries | answers/s (with load) | lag | round age | \
         above band (`meta` bytes) | records with load |"
    );
    println!("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|");
    for (i, w) in windows.iter().enumerate() {
        println!(
            "| {} | {} | {} | {} | {:.1} ms | {} | {} | {} | {} | {} | {} | {:.0} ({:.0}) | {} | {} | {} ({} B) | {} |",
            i + 1,
            w.epsilon,
            w.mode.name(),
            cores(w.projector, w.secs),
            w.projector_ns as f64 / 1e6,
            cores(w.prober, w.secs),
            cores(w.redis, w.secs),
            cores(w.bench, w.secs),
            w.loads_entries,
            w.reports,
            if w.other.is_empty() {
                "–".to_owned()
            } else {
                w.other
                    .iter()
                    .map(|(k, n)| format!("{k} × {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            w.answers as f64 / w.secs,
            w.with_load as f64 / w.secs,
            w.lag.map_or("not within 60 s".into(), |l| format!(
                "{} ms",
                l.as_millis()
            )),
            w.round_age.map_or("–".into(), |a| format!("{a} ms")),
            w.above,
            w.meta_bytes,
            w.records_with_load,
        );
    }
    println!();
    println!("### Ratios (CPU per second of window, with ÷ without)");
    println!();
    println!(
        "| load_epsilon | with | projector: ÷ all off windows | ÷ first off window | projector \
         (schedstat): ÷ all off | projector + prober: ÷ all off | ÷ first off | + redis-server: \
         ÷ all off |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    for &eps in &plan.phases {
        let ws: Vec<&Window> = windows.iter().filter(|w| w.epsilon == eps).collect();
        let first_off = ws.iter().position(|w| w.mode == Mode::Off);
        let is_first_off = |w: &Window| first_off.is_some_and(|i| std::ptr::eq(w, ws[i]));
        let proj = |w: &Window| w.projector;
        let proj_ns = |w: &Window| Duration::from_nanos(w.projector_ns);
        let both = |w: &Window| w.projector + w.prober;
        let all = |w: &Window| w.projector + w.prober + w.redis;
        for mode in [Mode::Noisy, Mode::Steady] {
            let on = |w: &Window| w.mode == mode;
            let off = |w: &Window| w.mode == Mode::Off;
            println!(
                "| {eps} | {} | **{}** ({:.4} / {:.4} cores) | {} | {} ({:.4} / {:.4}) | {} ({:.3} / {:.3}) | {} | {} |",
                mode.name(),
                ratio(rate(&ws, on, proj), rate(&ws, off, proj)),
                rate(&ws, on, proj),
                rate(&ws, off, proj),
                ratio(rate(&ws, on, proj), rate(&ws, is_first_off, proj)),
                ratio(rate(&ws, on, proj_ns), rate(&ws, off, proj_ns)),
                rate(&ws, on, proj_ns),
                rate(&ws, off, proj_ns),
                ratio(rate(&ws, on, both), rate(&ws, off, both)),
                rate(&ws, on, both),
                rate(&ws, off, both),
                ratio(rate(&ws, on, both), rate(&ws, is_first_off, both)),
                ratio(rate(&ws, on, all), rate(&ws, off, all)),
            );
        }
    }
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
    let (projector_bin, prober_bin) = binaries(plan.full);
    let command: Vec<String> = std::env::args().collect();
    // <target>/<profile dir>/deps/load_cost-<hash>
    let exe = std::env::current_exe().unwrap();
    let profile = exe
        .ancestors()
        .nth(2)
        .and_then(|p| p.file_name())
        .map_or(String::new(), |p| p.to_string_lossy().into_owned());
    let knobs: Vec<String> = std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("PANTHEON_BENCH_")
                || k == "PANTHEON_PROJECTOR_BIN"
                || k == "PANTHEON_PROBER_BIN"
        })
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let load_start = load_average();
    let started = Instant::now();
    let windows = runtime.block_on(run(&plan, &projector_bin, &prober_bin));
    let load_end = load_average();
    println!();
    println!("### Run");
    println!();
    println!("- machine: {}", machine());
    println!(
        "- binaries: `{}`, `{}`",
        projector_bin.display(),
        prober_bin.display()
    );
    println!(
        "- command: `{}{}` (bench binary argv: `{}`)",
        if knobs.is_empty() {
            String::new()
        } else {
            format!("{} ", knobs.join(" "))
        },
        if plan.full && profile == "debug" {
            "cargo bench --profile dev -p pantheon-tests --bench load_cost"
        } else if plan.full {
            "cargo bench -p pantheon-tests --bench load_cost"
        } else {
            "cargo test -p pantheon-tests --bench load_cost"
        },
        command.join(" ")
    );
    println!("- load average at start: {load_start}; at the end: {load_end}");
    println!("- total time {:.0} s", started.elapsed().as_secs_f64());
    report(&windows, &plan);
}

async fn run(plan: &Plan, projector_bin: &FsPath, prober_bin: &FsPath) -> Vec<Window> {
    let redis = TestRedis::start().await;
    let cluster = redis.namespace().to_owned();
    let layout = Layout::new("pantheon", &cluster);
    let mut con = connect_to(&redis.url).await;
    let redis_pid = pantheon_test_support::server_pid(&mut con).await;

    let projector: ChildGuard = service(
        &projector_bin.to_string_lossy(),
        &redis.url,
        &cluster,
        &[("PANTHEON_PROJECTOR__INSTANCE", "bench-projector")],
    );
    // Rendezvous: folding 10,000 single joins into the default ring rebuilds it per join.
    // Joins are refused beyond 2^24 ring points (weight × vnodes) whatever the strategy: at
    // the default 2,048 vnodes that is 8,192 nodes, so 1,024 (as the locate bench).
    policy(
        &mut con,
        &layout,
        PolicyChange {
            strategy: Some(Strategy::Rendezvous),
            vnodes: Some(1024),
            ..PolicyChange::default()
        },
    )
    .await;

    let nodes = Arc::new(Nodes {
        mode: AtomicU8::new(Mode::Off as u8),
        answers: AtomicU64::new(0),
        with_load: AtomicU64::new(0),
        per_node: (0..plan.nodes).map(|_| AtomicU32::new(0)).collect(),
    });
    let addrs = serve_nodes(nodes.clone()).await;
    let urls: Vec<String> = (0..plan.nodes)
        .map(|n| format!("http://{}/health/{n}", addrs[n % addrs.len()]))
        .collect();
    let joined = join_all(&mut con, &layout, &urls).await;
    eprintln!(
        "  {} joins applied after {} ms",
        plan.nodes,
        joined.as_millis()
    );
    let records: usize = redis::cmd("HLEN")
        .arg(layout.nodes())
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(
        records, plan.nodes,
        "joins refused (see the `rejected` stream)"
    );

    let prober: ChildGuard = service(
        &prober_bin.to_string_lossy(),
        &redis.url,
        &cluster,
        &[("PANTHEON_PROBER__ID", "bench-prober")],
    );
    let pids = Pids {
        projector: projector.pid(),
        prober: prober.pid(),
        redis: redis_pid,
    };

    // Warm-up: every node alive, the projector caught up.
    let warm = Instant::now();
    let mut said = Instant::now();
    loop {
        let (alive, _) = node_counts(&mut con, &layout).await;
        if alive == plan.nodes {
            break;
        }
        let states = node_states(&mut con, &layout).await;
        assert!(
            warm.elapsed() < SETUP_WAIT,
            "only {alive} of {} nodes alive after {SETUP_WAIT:?} ({states}; {} nodes answered \
             a probe)",
            plan.nodes,
            nodes.answered()
        );
        if said.elapsed() > Duration::from_secs(10) {
            said = Instant::now();
            eprintln!(
                "  warm-up: {alive} alive ({states}), {} nodes answered a probe",
                nodes.answered()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let end = last_id(&mut con, &layout).await;
    applied_within(&mut con, &layout, end, SETUP_WAIT)
        .await
        .expect("projector caught up after the warm-up");
    eprintln!(
        "  every node alive after {} ms of probing",
        warm.elapsed().as_millis()
    );

    let mut windows = Vec::new();
    for &epsilon in &plan.phases {
        policy(
            &mut con,
            &layout,
            PolicyChange {
                load_epsilon: Some(epsilon),
                ..PolicyChange::default()
            },
        )
        .await;
        for mode in WINDOWS {
            windows.push(window(&mut con, &layout, &pids, &nodes, epsilon, mode, plan).await);
        }
    }
    nodes.mode.store(Mode::Off as u8, Ordering::Relaxed);
    eprintln!(
        "  RSS at the end: projector {:.0} MiB, prober {:.0} MiB",
        memory_mib(pids.projector).0,
        memory_mib(pids.prober).0
    );
    drop(prober);
    drop(projector);
    windows
}
