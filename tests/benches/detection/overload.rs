//! Steps `overload` (ADR 0014) and `loss` (ADR 0019): the node side answers only half the
//! probes the prober sends for a while, then recovers. A node side that cannot keep up must
//! not get its nodes killed, and once it recovers the cluster must settle: no suspects, lag 0.
//!
//! One axum server answers every node's path, as a saturated server does: at most
//! `capacity` answers per second leave on time (per 100 ms). The others ([`Over`]) either
//! wait 2 s in its queue before they are answered, past the prober's default 500 ms timeout
//! (`overload`), or are never answered at all (`loss`: the request is held until the prober
//! gives up on it). The prober and the projector run in this process with default settings
//! but the one the run varies. Every node is alive and answers every probe it can: every
//! death is a false one.

use super::*;

/// How late an answer over capacity comes.
const LATE: Duration = Duration::from_secs(2);
/// How long a request over capacity is held when it is never answered (far past any probe
/// deadline; the prober gives up on it long before).
const NEVER: Duration = Duration::from_secs(120);

/// What becomes of a probe over the node side's capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Over {
    /// Answered [`LATE`].
    Late,
    /// Never answered: pure loss.
    Lost,
}

/// What one run varies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Setup {
    pub over: Over,
    /// `suspect_budget_percent` (0: the bound off).
    pub budget: u32,
    /// `intermittent_percent` (0: the intermittent rule off).
    pub intermittent: u32,
}

/// A health server of limited capacity, and what it answered.
struct Gate {
    base: Instant,
    /// Answers per 100 ms bucket since `base`.
    buckets: Vec<AtomicU32>,
    /// Answers per second on time; 0 is no limit.
    capacity: AtomicU32,
    over: Over,
    answered: AtomicU64,
    late: AtomicU64,
}

impl Gate {
    fn new(over: Over) -> Self {
        Self {
            base: Instant::now(),
            buckets: (0..20_000).map(|_| AtomicU32::new(0)).collect(),
            capacity: AtomicU32::new(0),
            over,
            answered: AtomicU64::new(0),
            late: AtomicU64::new(0),
        }
    }

    fn set_capacity(&self, per_second: u32) {
        self.capacity.store(per_second, Ordering::Relaxed);
    }

    /// Whether this request is answered on time.
    fn on_time(&self) -> bool {
        let capacity = self.capacity.load(Ordering::Relaxed);
        if capacity == 0 {
            return true;
        }
        let i = self.base.elapsed().as_millis() / BUCKET.as_millis();
        self.buckets
            .get(i as usize)
            .is_some_and(|b| b.fetch_add(1, Ordering::Relaxed) < capacity.div_ceil(10))
    }
}

async fn gated_health(
    State(g): State<Arc<Gate>>,
    Path(_n): Path<usize>,
) -> (StatusCode, &'static str) {
    if g.on_time() {
        g.answered.fetch_add(1, Ordering::Relaxed);
    } else {
        g.late.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(match g.over {
            Over::Late => LATE,
            Over::Lost => NEVER,
        })
        .await;
    }
    (StatusCode::OK, "ok")
}

/// Nodes the read model shows suspect, and how far the projector is behind the log.
async fn settled(con: &mut MultiplexedConnection, layout: &Layout) -> (usize, bool) {
    let suspects = readmodel::nodes(con, layout)
        .await
        .expect("nodes")
        .iter()
        .filter(|n| n.state == "suspect")
        .count();
    let newest = pantheon_store::log::before(con, layout, EntryId::new(u64::MAX, u64::MAX), 1)
        .await
        .expect("log")
        .first()
        .map(|e| e.id);
    (suspects, last_applied(con, layout).await >= newest)
}

pub(crate) struct OverloadResult {
    setup: Setup,
    nodes: usize,
    overload: Duration,
    steady_rate: f64,
    capacity: u32,
    overload_answered: f64,
    overload_late: f64,
    /// Every node stayed alive: each death is a false one.
    died: usize,
    suspect_events: usize,
    degraded_entries: usize,
    settled_after: Option<Duration>,
}

/// One run.
pub(crate) async fn overload(
    nodes: usize,
    warmup: Duration,
    overload: Duration,
    setup: Setup,
) -> OverloadResult {
    let redis = TestRedis::start().await;
    let cluster = redis.namespace().to_owned();
    let layout = Layout::new("pantheon", &cluster);
    let log = layout.log();
    let mut con = connect_to(&redis.url).await;
    let stop = CancellationToken::new();
    let watcher = Watcher::default();
    let watch = watcher.spawn(redis.url.clone(), layout.events(), stop.clone());
    let deployment = pantheon_store::Deployment::from_url(&redis.url).expect("redis url");
    let mut pc = ProjectorConfig::new(deployment.clone(), cluster.clone());
    pc.instance = "bench-projector".into();
    let t = stop.clone();
    let projector = tokio::spawn(async move {
        pantheon_projector::run(pc, t).await.expect("projector run");
    });
    // Rendezvous: the prober does not care how keys are placed (see `scale`).
    let policy = LogEntry::new(Command::Policy(PolicyChange {
        strategy: Some(Strategy::Rendezvous),
        ..PolicyChange::default()
    }));
    let id = xadd(&mut con, &log, &policy).await;
    wait_applied(&mut con, &layout, id).await;

    let gate = Arc::new(Gate::new(setup.over));
    let app = Router::new()
        .route("/health/{n}", get(gated_health))
        .with_state(gate.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let urls: Vec<String> = (0..nodes)
        .map(|n| format!("http://{addr}/health/{n}"))
        .collect();
    join_all(&mut con, &layout, &urls, WAIT)
        .await
        .expect("joins applied in time");

    let mut config = ProberConfig::new(deployment, cluster.clone());
    config.id = "bench-prober".into();
    config.suspect_budget_percent = setup.budget;
    config.intermittent_percent = setup.intermittent;
    let prober_stop = CancellationToken::new();
    let t = prober_stop.clone();
    let prober = tokio::spawn(async move {
        pantheon_prober::run(config, t).await.expect("prober run");
    });

    // Steady state without a limit.
    tokio::time::sleep(warmup).await;
    let answered0 = gate.answered.load(Ordering::Relaxed);
    tokio::time::sleep(warmup).await;
    let steady_rate =
        (gate.answered.load(Ordering::Relaxed) - answered0) as f64 / warmup.as_secs_f64();

    // Overload: the node side answers half the steady rate.
    let capacity = ((steady_rate / 2.0) as u32).max(1);
    let died_before = watcher.count("died");
    let suspects_before = watcher.count("suspect");
    gate.set_capacity(capacity);
    let (a0, l0) = (
        gate.answered.load(Ordering::Relaxed),
        gate.late.load(Ordering::Relaxed),
    );
    tokio::time::sleep(overload).await;
    gate.set_capacity(0);
    let dropped_at = Instant::now();
    let secs = overload.as_secs_f64();
    let overload_answered = (gate.answered.load(Ordering::Relaxed) - a0) as f64 / secs;
    let overload_late = (gate.late.load(Ordering::Relaxed) - l0) as f64 / secs;

    // Recovery: no suspects and lag 0, within 60 s.
    let mut settled_after = None;
    while dropped_at.elapsed() < Duration::from_secs(60) {
        let (suspects, caught_up) = settled(&mut con, &layout).await;
        if suspects == 0 && caught_up {
            settled_after = Some(dropped_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    prober_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), prober).await;

    let degraded_entries = xrange(&mut con, &log)
        .await
        .iter()
        .filter(|e| e.get("type") == Some("prober_degraded"))
        .count();
    let result = OverloadResult {
        setup,
        nodes,
        overload,
        steady_rate,
        capacity,
        overload_answered,
        overload_late,
        died: watcher.count("died") - died_before,
        suspect_events: watcher.count("suspect") - suspects_before,
        degraded_entries,
        settled_after,
    };
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), projector).await;
    let _ = watch.await;
    server.abort();
    result
}

pub(crate) fn overload_report(runs: &[OverloadResult]) {
    let Some(first) = runs.first() else {
        return;
    };
    println!();
    let lost = first.setup.over == Over::Lost;
    println!(
        "### Overload: the node side answers half the steady probe rate for {} s{}",
        first.overload.as_secs(),
        if lost { ", the rest never" } else { "" }
    );
    println!();
    println!(
        "{} nodes, default prober settings (interval 1 s, suspect_interval 200 ms, timeout \
         500 ms) but as in each column; one axum health server that answers at most half the \
         steady rate on time and {}, then all on time again. Every node stays alive and \
         answers every probe it can: every death is a false one.",
        first.nodes,
        if lost {
            "never answers the rest (pure loss)"
        } else {
            "the rest 2 s late"
        }
    );
    println!();
    let header: Vec<String> = runs
        .iter()
        .map(|r| match (r.setup.budget, r.setup.intermittent) {
            (0, _) => "bound off (0, as before)".to_owned(),
            (b, _) if !lost => format!("suspect_budget_percent {b}"),
            (_, 0) => "intermittent rule off (0, as before)".to_owned(),
            (_, i) => format!("intermittent_percent {i}"),
        })
        .collect();
    println!("| measure | {} |", header.join(" | "));
    println!("|---|{}", "---|".repeat(runs.len()));
    let row = |name: &str, f: &dyn Fn(&OverloadResult) -> String| {
        let cells: Vec<String> = runs.iter().map(f).collect();
        println!("| {name} | {} |", cells.join(" | "));
    };
    row("steady probes/s (answered, no limit)", &|r| {
        format!("{:.0}", r.steady_rate)
    });
    row("capacity during the overload (answers/s)", &|r| {
        r.capacity.to_string()
    });
    row("answered on time / late or never per s during it", &|r| {
        format!("{:.0} / {:.0}", r.overload_answered, r.overload_late)
    });
    row("false deaths", &|r| r.died.to_string());
    row("suspect events", &|r| r.suspect_events.to_string());
    row("`prober_degraded` entries", &|r| {
        r.degraded_entries.to_string()
    });
    row("no suspects and lag 0 after the limit is lifted", &|r| {
        r.settled_after.map_or("not within 60 s".into(), |d| {
            format!("{:.1} s", d.as_secs_f64())
        })
    });
}
