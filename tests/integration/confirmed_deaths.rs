//! Confirmed deaths and self-suspicion with real components (ADR 0008): real HTTP servers on
//! loopback, a real projector and prober, a `redis-server` started for the test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, State};
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
