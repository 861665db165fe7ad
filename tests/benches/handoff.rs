//! Issue 22's hand-off targets (docs/adr/0016), with the real projector and prober binaries
//! (child processes) against a `redis-server` started for the run (never the machine's shared
//! one), and two `pantheon_worker::Worker`s in this process whose application keeps a 1 KB
//! value per key in memory and hands the values over:
//!
//! 1. **Release → acquire gap** (`gap`): each node owns about 1,000 keys; the second node is
//!    drained and undrained, round after round, so each round hands about 1,000 keys (1 MB
//!    of state) one way and back. A gap is the time from the old owner's `on_handoff` call
//!    (from then on it refuses the keys) to the return of the new owner's `on_acquire` (from
//!    then on it serves them, with their values): the time no node serves the keys. p50 and
//!    p99 over every hand-off line.
//! 2. **Drain of one worker owning 10,000 keys with 1 KB each** (`drain`): from the call of
//!    `Worker::graceful_shutdown` (what the library does on SIGTERM: drain, hand everything
//!    over, leave) to its return, and a check that every value arrived at the other worker.
//!
//! ```text
//! cargo bench -p pantheon-tests --bench handoff
//! ```
//!
//! Without `--bench` (as in `cargo test --benches`) it runs at a small scale as a smoke test.
//! Results and the machine are in `docs/benchmarks.md`, "Hand-offs".

// A benchmark harness: a failed setup step should stop it with its reason.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pantheon_client::Pantheon;
use pantheon_test_support::TestRedis;
use pantheon_test_support::process::load_average;
use pantheon_worker::{AppError, Health, NodeId, Ownership, Worker};
use support::services::{health_server, service};

const PROJECTOR_BIN: &str = env!("CARGO_BIN_EXE_pantheon-projector-under-test");
const PROBER_BIN: &str = env!("CARGO_BIN_EXE_pantheon-prober-under-test");
const VALUE_BYTES: usize = 1024;
const WAIT: Duration = Duration::from_secs(120);

struct Scale {
    full: bool,
    gap_keys: usize,
    gap_rounds: usize,
    drain_keys: usize,
}

fn scale() -> Scale {
    let full = std::env::args().any(|a| a == "--bench");
    if full {
        Scale {
            full,
            gap_keys: 2_000,
            gap_rounds: 25,
            drain_keys: 20_000,
        }
    } else {
        Scale {
            full,
            gap_keys: 200,
            gap_rounds: 2,
            drain_keys: 400,
        }
    }
}

/// What both workers share: when each key's hand-off began (the old owner stopped serving
/// it), and the gaps measured.
#[derive(Default)]
struct Marks {
    asked: HashMap<String, Instant>,
    gaps: Vec<Duration>,
    /// Keys acquired from another node without a value (a forced hand-off): must stay 0.
    without_state: usize,
}

/// The application: a 1 KB value per owned key.
#[derive(Clone)]
struct Cache {
    values: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    marks: Arc<Mutex<Marks>>,
}

impl Cache {
    fn new(marks: Arc<Mutex<Marks>>) -> Self {
        Self {
            values: Arc::default(),
            marks,
        }
    }

    fn len(&self) -> usize {
        self.values.lock().unwrap().len()
    }
}

impl Ownership for Cache {
    async fn on_acquire(
        &self,
        keys: &[String],
        _token: u64,
        from: Option<&NodeId>,
    ) -> Result<(), AppError> {
        let mut missing = 0;
        {
            let mut values = self.values.lock().unwrap();
            for k in keys {
                // New keys start with a value; handed-over ones came with theirs (on_state).
                if !values.contains_key(k) {
                    missing += usize::from(from.is_some());
                    values.insert(k.clone(), vec![b'x'; VALUE_BYTES]);
                }
            }
        }
        self.marks.lock().unwrap().without_state += missing;
        if from.is_some() {
            let now = Instant::now();
            let mut marks = self.marks.lock().unwrap();
            let began = keys.iter().filter_map(|k| marks.asked.remove(k)).min();
            if let Some(began) = began {
                marks.gaps.push(now - began);
            }
        }
        Ok(())
    }

    async fn on_release(
        &self,
        keys: &[String],
        _token: u64,
        _to: Option<&NodeId>,
    ) -> Result<(), AppError> {
        let mut values = self.values.lock().unwrap();
        for k in keys {
            values.remove(k);
        }
        Ok(())
    }

    async fn on_handoff(
        &self,
        keys: &[String],
        _to: &NodeId,
    ) -> Result<Vec<(String, Vec<u8>)>, AppError> {
        let now = Instant::now();
        {
            let mut marks = self.marks.lock().unwrap();
            for k in keys {
                marks.asked.insert(k.clone(), now);
            }
        }
        let values = self.values.lock().unwrap();
        Ok(keys
            .iter()
            .filter_map(|k| Some((k.clone(), values.get(k)?.clone())))
            .collect())
    }

    async fn on_state(
        &self,
        state: Vec<(String, Vec<u8>)>,
        _from: &NodeId,
    ) -> Result<(), AppError> {
        self.values.lock().unwrap().extend(state);
        Ok(())
    }
}

/// Polls `ok` every 5 ms until it holds (bounded by [`WAIT`]).
async fn until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !ok() {
        assert!(Instant::now() < deadline, "not within {WAIT:?}: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn until_alive(client: &Pantheon, node: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let rec = client.node_health(node).await.unwrap();
        if rec.is_some_and(|r| r.state == "alive") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{node} not alive within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start(
    client: &Pantheon,
    node: &str,
    port: u16,
    dir: &std::path::Path,
    app: Cache,
) -> Worker {
    Worker::builder(client.clone(), node, dir.join(format!("{node}.json")))
        .health(Health::external(&format!(
            "http://127.0.0.1:{port}/{node}/health"
        )))
        .join_timeout(WAIT)
        .start(app)
        .await
        .unwrap()
}

async fn distribute(client: &Pantheon, from: usize, to: usize) {
    let ids = client
        .distribute((from..to).map(|i| format!("tenant:{i:06}")))
        .await
        .unwrap();
    if let Some(last) = ids.last() {
        client.wait_applied(*last, WAIT).await.unwrap();
    }
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn main() {
    let s = scale();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "machine: {} cores; load average at start {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    if !s.full {
        println!("smoke run at a small scale (use `cargo bench` for the real numbers)");
    }
    runtime.block_on(run(&s));
}

async fn run(s: &Scale) {
    let started = Instant::now();
    let redis = TestRedis::start().await;
    let cluster = redis.namespace().to_owned();
    let _projector = service(
        PROJECTOR_BIN,
        &redis.url,
        &cluster,
        &[("PANTHEON_PROJECTOR__INSTANCE", "bench")],
    );
    let _prober = service(
        PROBER_BIN,
        &redis.url,
        &cluster,
        &[("PANTHEON_PROBER__ID", "bench-prober")],
    );
    let client = Pantheon::connect(&redis.url, &cluster).await.unwrap();
    let port = health_server().await;
    let dir = tempfile::tempdir().unwrap();
    let marks: Arc<Mutex<Marks>> = Arc::default();
    let (c1, c2) = (Cache::new(marks.clone()), Cache::new(marks.clone()));
    let w1 = start(&client, "w1", port, dir.path(), c1.clone()).await;
    let w2 = start(&client, "w2", port, dir.path(), c2.clone()).await;
    until_alive(&client, "w1").await;
    until_alive(&client, "w2").await;

    // 1. The gap: w2 drained and undrained, round after round.
    distribute(&client, 0, s.gap_keys).await;
    until("both hold every key", || {
        w1.held() + w2.held() == s.gap_keys
    })
    .await;
    let share = w2.held();
    for _ in 0..s.gap_rounds {
        let id = client.drain("w2").await.unwrap();
        client.wait_applied(id, WAIT).await.unwrap();
        until("w2 handed everything to w1", || {
            w2.held() == 0 && c1.len() == s.gap_keys
        })
        .await;
        let id = client.undrain("w2").await.unwrap();
        client.wait_applied(id, WAIT).await.unwrap();
        until("w1 handed w2's share back", || {
            w2.held() == share && c2.len() == share && c1.len() == s.gap_keys - share
        })
        .await;
    }
    let mut gaps = std::mem::take(&mut marks.lock().unwrap().gaps);
    gaps.sort();
    println!(
        "\nrelease → acquire gap: {} hand-offs of ~{} keys (1 KB each) between 2 workers: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (target p99 ≤ 50 ms)",
        gaps.len(),
        s.gap_keys / 2,
        pct(&gaps, 0.5),
        pct(&gaps, 0.99),
        pct(&gaps, 1.0)
    );

    // 2. The drain: w1 owns about half of all keys, 1 KB each, and shuts down gracefully.
    distribute(&client, s.gap_keys, s.drain_keys).await;
    until("both hold every key", || {
        w1.held() + w2.held() == s.drain_keys && c1.len() + c2.len() == s.drain_keys
    })
    .await;
    let owned = w1.held();
    let t = Instant::now();
    w1.graceful_shutdown(WAIT).await.unwrap();
    let took = t.elapsed();
    // The new owner may still be reading its last acquire.
    until("w2 holds every value", || c2.len() == s.drain_keys).await;
    let arrived = c2.len();
    let intact = c2
        .values
        .lock()
        .unwrap()
        .values()
        .all(|v| v.len() == VALUE_BYTES);
    println!(
        "graceful shutdown of a worker owning {owned} keys with 1 KB each (drain, hand-off, leave): {:.2} s (target ≤ 5 s); the other worker now holds {arrived} of {} values, all 1 KB: {intact}",
        took.as_secs_f64(),
        s.drain_keys
    );
    assert_eq!(arrived, s.drain_keys, "every value arrived");
    assert!(intact);
    let without = marks.lock().unwrap().without_state;
    println!("keys that moved without their value (forced): {without}");
    assert_eq!(without, 0, "no hand-off was forced");
    w2.shutdown().await.unwrap();
    println!(
        "\nload average at the end {}; whole run {:.0} s",
        load_average(),
        started.elapsed().as_secs_f64()
    );
}
