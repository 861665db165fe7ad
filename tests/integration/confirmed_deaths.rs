//! Confirmed deaths and self-suspicion with real components (ADR 0008): real HTTP servers on
//! loopback, a real projector and prober, a `redis-server` started for the test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use pantheon_domain::entry::{Command, LogEntry};
use pantheon_domain::{Event, NodeId};
use pantheon_prober::ProberConfig;
use pantheon_projector::ProjectorConfig;
use pantheon_store::{Deployment, Layout, RawEntry, stream};
use pantheon_test_support::TestRedis;
use redis::aio::MultiplexedConnection;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

/// A health server: healthy or failing (500), recording the client port of every request
/// (one port per TCP connection).
#[derive(Default)]
struct Server {
    failing: AtomicBool,
    ports: Mutex<Vec<u16>>,
}

async fn health(
    State(s): State<Arc<Server>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> StatusCode {
    s.ports.lock().unwrap().push(peer.port());
    if s.failing.load(Ordering::Relaxed) {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

async fn serve(stop: &CancellationToken) -> (Arc<Server>, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Arc::<Server>::default();
    let app = Router::new()
        .route("/health", get(health))
        .route("/health/{i}", get(health))
        .with_state(server.clone());
    let stop = stop.clone();
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(stop.cancelled_owned())
        .await;
    });
    (server, addr)
}

struct Cluster {
    _redis: TestRedis,
    con: MultiplexedConnection,
    layout: Layout,
    stop: CancellationToken,
}

impl Cluster {
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A cluster whose prober has the settings `tune` makes.
    async fn start_with(tune: impl FnOnce(&mut ProberConfig)) -> Self {
        let redis = TestRedis::start().await;
        let cluster = redis.namespace().to_owned();
        let layout = Layout::new("pantheon", &cluster);
        let con = redis.connection().await;
        let stop = CancellationToken::new();
        let mut pc = ProjectorConfig::new(Deployment::from_url(&redis.url).unwrap(), &cluster);
        pc.instance = "test-projector".into();
        let t = stop.clone();
        tokio::spawn(async move { pantheon_projector::run(pc, t).await.expect("projector") });
        let mut config = ProberConfig::new(Deployment::from_url(&redis.url).unwrap(), &cluster);
        config.id = "prober-1".into();
        config.registration_ttl = Duration::from_millis(1000);
        tune(&mut config);
        let t = stop.clone();
        tokio::spawn(async move { pantheon_prober::run(config, t).await.expect("prober") });
        Self {
            _redis: redis,
            con,
            layout,
            stop,
        }
    }

    async fn join(&mut self, node: &str, url: String) {
        let entry = LogEntry::new(Command::Join {
            node: NodeId::new(node).unwrap(),
            url,
            weight: None,
            handoff: false,
        });
        let mut cmd = redis::cmd("XADD");
        cmd.arg(self.layout.log()).arg("*");
        for (k, v) in entry.encode() {
            cmd.arg(k).arg(v);
        }
        let _: String = cmd.query_async(&mut self.con).await.unwrap();
    }

    async fn stream(&mut self, key: &str) -> Vec<RawEntry> {
        let v: redis::Value = redis::cmd("XRANGE")
            .arg(key)
            .arg("-")
            .arg("+")
            .query_async(&mut self.con)
            .await
            .unwrap();
        stream::parse_entries(v).unwrap()
    }

    async fn events(&mut self) -> Vec<Event> {
        let key = self.layout.events();
        self.stream(&key)
            .await
            .iter()
            .map(|e| Event::decode(&e.fields).unwrap())
            .collect()
    }

    /// Waits (bounded) for an event matching `pred`.
    async fn wait_event(&mut self, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(e) = self.events().await.into_iter().find(|e| pred(e)) {
                return e;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {what} within {WAIT:?}: {:?}",
                self.events()
                    .await
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn is_node(e: &Event, kind: &str, node: &str) -> bool {
    e.kind.name() == kind && e.kind.node().is_some_and(|(n, _)| n.as_str() == node)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_node_dies_on_a_confirmation_sent_on_new_connections() {
    let mut c = Cluster::start().await;
    let (a, a_addr) = serve(&c.stop).await;
    let (_b, b_addr) = serve(&c.stop).await;
    c.join("a", format!("http://{a_addr}/health")).await;
    c.join("b", format!("http://{b_addr}/health")).await;
    // Healthy, probed on its pooled connection.
    let deadline = tokio::time::Instant::now() + WAIT;
    while a.ports.lock().unwrap().len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "a never probed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pooled: BTreeSet<u16> = a.ports.lock().unwrap().iter().copied().collect();
    a.failing.store(true, Ordering::Relaxed);
    let died = c.wait_event("died of a", |e| is_node(e, "died", "a")).await;

    // The death's cause is a failed confirmation; the failures before it were regular probes.
    let log = c.stream(&c.layout.log()).await;
    let cause = log.iter().find(|e| e.id == died.cause).unwrap();
    assert_eq!(cause.get("type"), Some("probe"));
    assert_eq!(
        (cause.get("confirm"), cause.get("ok")),
        (Some("1"), Some("0"))
    );
    let regular_failures = log
        .iter()
        .filter(|e| e.get("node") == Some("a") && e.get("ok") == Some("0") && e.id < died.cause)
        .filter(|e| e.get("confirm") == Some("0"))
        .count();
    assert_eq!(
        regular_failures, 2,
        "fall - 1 regular failures, then the confirmation"
    );
    // The confirmation used new TCP connections: at least `confirm_attempts` client ports the
    // pooled probes never used.
    let fresh = a
        .ports
        .lock()
        .unwrap()
        .iter()
        .filter(|p| !pooled.contains(p))
        .copied()
        .collect::<BTreeSet<u16>>();
    assert!(
        fresh.len() >= 3,
        "new connections: {fresh:?}, pooled: {pooled:?}"
    );
    // The healthy node never failed.
    assert!(!c.events().await.iter().any(|e| is_node(e, "suspect", "b")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prober_that_sees_most_nodes_fail_at_once_suspects_itself_and_kills_none() {
    let mut c = Cluster::start().await;
    let (s, addr) = serve(&c.stop).await;
    // Enough nodes that 8 of them fail (the least for self-suspicion) well before the first
    // failing node could have been confirmed dead (its third probe, 400 ms after the first).
    for i in 0..60 {
        c.join(&format!("n{i}"), format!("http://{addr}/health/{i}"))
            .await;
    }
    // Every node probed at least once.
    let deadline = tokio::time::Instant::now() + WAIT;
    while s.ports.lock().unwrap().len() < 120 {
        assert!(tokio::time::Instant::now() < deadline, "nodes not probed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Everything fails at once: what a prober whose own network broke sees.
    s.failing.store(true, Ordering::Relaxed);
    let degraded = c
        .wait_event("prober_degraded", |e| e.kind.name() == "prober_degraded")
        .await;
    let text = degraded.to_string();
    assert!(text.contains("prober=prober-1"), "{text}");
    // Long enough for every node to have failed fall times over: nobody dies.
    let hits = s.ports.lock().unwrap().len();
    let deadline = tokio::time::Instant::now() + WAIT;
    while s.ports.lock().unwrap().len() < hits + 60 * 4 {
        assert!(tokio::time::Instant::now() < deadline, "probing stopped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !c.events().await.iter().any(|e| e.kind.name() == "died"),
        "a degraded prober reported deaths"
    );
    // Repaired: it says so, and still nobody died.
    s.failing.store(false, Ordering::Relaxed);
    c.wait_event("prober_recovered", |e| e.kind.name() == "prober_recovered")
        .await;
    assert!(!c.events().await.iter().any(|e| e.kind.name() == "died"));
}

/// A health server that loses a share of the requests: never answers them (held far past
/// any probe deadline), as a node side over its capacity or a lossy network does. The node
/// numbered `dead` answers 500 to every probe.
struct Lossy {
    per_mille: AtomicU32,
    dead: AtomicUsize,
    /// A node whose probes are never lost.
    spared: usize,
    requests: AtomicU32,
}

async fn lossy_health(State(s): State<Arc<Lossy>>, Path(i): Path<usize>) -> StatusCode {
    s.requests.fetch_add(1, Ordering::Relaxed);
    let dead = s.dead.load(Ordering::Relaxed);
    if dead == i {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    // The node that is to stop loses nothing before: its failure streak starts when it stops.
    if i != s.spared && rand::random_range(0..1000) < s.per_mille.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_secs(120)).await;
    }
    StatusCode::OK
}

/// Serves `n` joined nodes from one lossy server (losing nothing yet), and waits until each
/// was probed about twice.
async fn lossy_nodes(c: &mut Cluster, n: usize, spared: Option<usize>) -> Arc<Lossy> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Arc::new(Lossy {
        per_mille: AtomicU32::new(0),
        dead: AtomicUsize::new(usize::MAX),
        spared: spared.unwrap_or(usize::MAX),
        requests: AtomicU32::new(0),
    });
    let app = Router::new()
        .route("/health/{i}", get(lossy_health))
        .with_state(server.clone());
    let stop = c.stop.clone();
    // Not graceful: held requests would keep the server up for minutes.
    tokio::spawn(async move {
        tokio::select! {
            _ = axum::serve(listener, app) => {}
            _ = stop.cancelled() => {}
        }
    });
    for i in 0..n {
        c.join(&format!("n{i}"), format!("http://{addr}/health/{i}"))
            .await;
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while (server.requests.load(Ordering::Relaxed) as usize) < n * 2 {
        assert!(tokio::time::Instant::now() < deadline, "nodes not probed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server
}

/// Raises the share of lost probes by 5% a second up to `per_mille`, as an overload builds
/// up (a sudden loss is a race: see ADR 0019).
async fn ramp_loss(s: &Lossy, per_mille: u32) {
    let mut loss = 0;
    while loss < per_mille {
        loss = (loss + 50).min(per_mille);
        s.per_mille.store(loss, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn deaths(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.kind.name() == "died")
        .map(ToString::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prober_losing_many_probes_suspects_itself_though_most_nodes_answer() {
    // ADR 0019: two probes in five lost, at random. Fewer than half the nodes are failing at
    // any moment (the "most fail" rule stays quiet), yet nodes fail and answer in turn.
    // Without the intermittent rule, a node loses two regular probes and the three attempts
    // of its confirmation about once in a hundred tries: several deaths in this time.
    let mut c = Cluster::start().await;
    let s = lossy_nodes(&mut c, 100, None).await;
    ramp_loss(&s, 400).await;
    c.wait_event("prober_degraded", |e| e.kind.name() == "prober_degraded")
        .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let events = c.events().await;
    assert_eq!(
        deaths(&events),
        Vec::<String>::new(),
        "nodes died of lost probes"
    );
    // The loss ends: the prober says so, and nobody died.
    s.per_mille.store(0, Ordering::Relaxed);
    c.wait_event("prober_recovered", |e| e.kind.name() == "prober_recovered")
        .await;
    assert_eq!(deaths(&c.events().await), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amid_lost_probes_a_node_that_stops_answering_for_good_still_dies() {
    // Degraded by intermittent failures, the prober holds a node back only while its failure
    // streak is younger than 30 intervals: at a 300 ms interval, 9 s.
    let interval = Duration::from_millis(300);
    let mut c = Cluster::start_with(|p| p.interval = interval).await;
    let s = lossy_nodes(&mut c, 100, Some(0)).await;
    ramp_loss(&s, 400).await;
    c.wait_event("prober_degraded", |e| e.kind.name() == "prober_degraded")
        .await;
    let stopped = tokio::time::Instant::now();
    s.dead.store(0, Ordering::Relaxed);
    let died = c
        .wait_event("died of n0", |e| is_node(e, "died", "n0"))
        .await;
    let after = stopped.elapsed();
    assert!(
        after >= interval * pantheon_prober::local_health::INTERMITTENT_HOLD_MAX,
        "n0 died {after:?} after it stopped answering: not held back; {:?}",
        c.events()
            .await
            .iter()
            .filter(|e| e.kind.name().starts_with("prober") || is_node(e, "died", "n0"))
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    );
    let others: Vec<String> = deaths(&c.events().await)
        .into_iter()
        .filter(|d| *d != died.to_string())
        .collect();
    assert_eq!(others, Vec::<String>::new(), "lossy nodes died");
}
