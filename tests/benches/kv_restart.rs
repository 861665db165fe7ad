//! Issue 22's rolling-restart target with `pantheon-kv` (real processes over real HTTP): 4
//! `pantheon-kv worker`s holding 10,000 values of 1 KB and one `pantheon-kv router`, with the
//! projector and prober binaries as child processes against a `redis-server` started for the
//! mode (never the machine's shared one). A steady read load goes through the router while
//! each worker is restarted in turn, in two modes, each on a fresh cluster in the same run:
//!
//! * `handoff`: SIGTERM (the worker drains, hands every value over, leaves, exits 0), then
//!   started again with the same node id, port and state file;
//! * `kill`: SIGKILL, then, once the prober has declared it dead (its keys moved, their values
//!   gone), started again the same way.
//!
//! After each start the next worker waits until the cluster is settled: all 4 alive, and the
//! key map gives every node exactly the keys the ring places on it (no hand-off pending).
//!
//! Every number comes from answers:
//!
//! * each read is a `GET` through the router, paced open-loop at a fixed rate (a read due
//!   while [`MAX_IN_FLIGHT`] are outstanding is not sent, and counted), keys uniform at
//!   random: a 200 with the key's value is a hit, a 404 a miss (the value was PUT, so a miss
//!   is a lost value), anything else (503, another status, a timeout, an error) failed;
//! * the hit rate through the restart counts the reads sent from the first signal to the
//!   last worker settled;
//! * **answered by a non-owner**: every worker answer (200 or 404) carries the node and the
//!   token it holds the key with (`X-Pantheon-Node`, `X-Pantheon-Token`, passed on by the
//!   router). After the run, `Pantheon::explain` gives each key's owners from the log, each
//!   with its token and the time of the entry that made it the owner, until the next one. An
//!   answer is by an owner if that node owned the key during a period that overlaps the read
//!   (from sending it to its answer; entry times are whole milliseconds, so the read's bounds
//!   are taken to the millisecond too), with a token at least the one `explain` gives for
//!   that period and below the next owner's (a newer owner always holds a larger token, ADR
//!   0015). Not the very token: for an ownership that began with a hand-off's release,
//!   `explain` gives the node's membership token while the worker holds the key with the
//!   token floor raised at that release. Anything else counts as answered by a non-owner.
//!   `explain` reads the whole log for each key, so the answers of a uniform sample of
//!   [`CHECKED_KEYS`] keys are checked (every answer of each);
//! * values lost: after the restarts every key is read once through the router; the 404s.
//!
//! ```text
//! cargo bench -p pantheon-tests --bench kv_restart
//! cargo bench --profile dev -p pantheon-tests --bench kv_restart   # reuses the tests' build
//! ```
//!
//! Without `--bench` (as in `cargo test --benches`) it runs at a small scale as a smoke test.
//! Results and the machine are in `docs/benchmarks.md`, "Rolling restart of pantheon-kv".

// A benchmark harness: a failed setup step should stop it with its reason.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pantheon_client::{NodeId, Pantheon};
use pantheon_test_support::TestRedis;
use pantheon_test_support::process::load_average;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::services::service;
use support::wall_ms;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

const KV_BIN: &str = env!("CARGO_BIN_EXE_pantheon-kv-under-test");
const PROJECTOR_BIN: &str = env!("CARGO_BIN_EXE_pantheon-projector-under-test");
const PROBER_BIN: &str = env!("CARGO_BIN_EXE_pantheon-prober-under-test");
const NODES: [&str; 4] = ["kv-1", "kv-2", "kv-3", "kv-4"];
const VALUE_BYTES: usize = 1024;
/// Every wait for the cluster (a state, an exit, a settled key map) is bounded by this.
const WAIT: Duration = Duration::from_secs(60);
/// A read not answered within this failed. The router retries for 2 s, each forward taking
/// at most 1 s, so it always answers before.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Reads outstanding at most.
const MAX_IN_FLIGHT: usize = 512;
/// The load stops after this whatever happens.
const MAX_LOAD: Duration = Duration::from_secs(600);
/// Keys whose answers are checked against their owners (a uniform sample): `explain` reads
/// the whole log for each.
const CHECKED_KEYS: usize = 1_000;
/// Requests in flight when filling, reading every key back and explaining.
const PARALLEL: usize = 16;
/// The prober's cadence of the integration tests (`Ctl::up`): a stopped node is dead in
/// about 1.5 s.
const PROBER_ENV: [(&str, &str); 6] = [
    ("PANTHEON_PROBER__ID", "bench-prober"),
    ("PANTHEON_PROBER__INTERVAL_MS", "200"),
    ("PANTHEON_PROBER__SUSPECT_INTERVAL_MS", "100"),
    ("PANTHEON_PROBER__DEAD_INTERVAL_MS", "200"),
    ("PANTHEON_PROBER__TIMEOUT_MS", "300"),
    ("PANTHEON_PROBER__GRACE_MS", "300"),
];
const PROJECTOR_ENV: [(&str, &str); 2] = [
    ("PANTHEON_PROJECTOR__INSTANCE", "bench"),
    ("PANTHEON_PROJECTOR__BLOCK_MS", "100"),
];

struct Scale {
    full: bool,
    keys: usize,
    /// Reads per second through the router.
    rate: u64,
    /// Load before the first restart and after the last.
    calm: Duration,
}

fn scale() -> Scale {
    if std::env::args().any(|a| a == "--bench") {
        Scale {
            full: true,
            keys: 10_000,
            rate: 2_000,
            calm: Duration::from_secs(3),
        }
    } else {
        Scale {
            full: false,
            keys: 200,
            rate: 100,
            calm: Duration::from_millis(500),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Handoff,
    Kill,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Handoff => "handoff (SIGTERM)",
            Mode::Kill => "kill (SIGKILL)",
        }
    }
}

/// The value of key number `i`: 1 KB, different for every key, so a wrong value shows.
fn value(key: &str) -> Vec<u8> {
    let mut v = format!("{key}=").into_bytes();
    v.resize(VALUE_BYTES, b'v');
    v
}

fn key(i: usize) -> String {
    format!("item:{i:05}")
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// One `pantheon-kv` process, its stderr in a file; killed if still running when dropped.
struct Kv {
    child: Child,
    log: PathBuf,
}

impl Kv {
    fn spawn(redis: &str, cluster: &str, dir: &Path, name: &str, args: &[&str]) -> Self {
        let log = dir.join(format!("{name}.log"));
        let mut cmd = Command::new(KV_BIN);
        support::services::without_pantheon_env(&mut cmd);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = cmd
            .args(args)
            .args(["--redis-url", redis, "--cluster", cluster])
            .env("RUST_LOG", "warn")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {KV_BIN}: {e}"));
        Self { child, log }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig} {}", self.child.id());
    }

    /// Waits (bounded by [`WAIT`]) for the process to exit: its exit code, -1 for a signal.
    async fn exited(&mut self) -> i32 {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "did not exit within {WAIT:?}; log {}",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Kv {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The cluster of one mode: its own Redis, projector, prober, workers and router.
struct Cluster {
    redis: TestRedis,
    cluster: String,
    _services: Vec<pantheon_test_support::process::ChildGuard>,
    client: Pantheon,
    dir: tempfile::TempDir,
    ports: Vec<u16>,
    workers: Vec<Kv>,
    _router: Kv,
    router_url: String,
    http: reqwest::Client,
}

impl Cluster {
    async fn start() -> Self {
        let redis = TestRedis::start().await;
        let cluster = redis.namespace().to_owned();
        let services = vec![
            service(PROJECTOR_BIN, &redis.url, &cluster, &PROJECTOR_ENV),
            service(PROBER_BIN, &redis.url, &cluster, &PROBER_ENV),
        ];
        let client = Pantheon::connect(&redis.url, &cluster).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<u16> = NODES.iter().map(|_| free_port()).collect();
        let router_port = free_port();
        let http = reqwest::Client::builder()
            .timeout(READ_TIMEOUT)
            .pool_max_idle_per_host(MAX_IN_FLIGHT)
            .build()
            .unwrap();
        let router = Kv::spawn(
            &redis.url,
            &cluster,
            dir.path(),
            "router",
            &["router", "--listen", &format!("127.0.0.1:{router_port}")],
        );
        let mut c = Self {
            redis,
            cluster,
            _services: services,
            client,
            dir,
            ports,
            workers: Vec::new(),
            _router: router,
            router_url: format!("http://127.0.0.1:{router_port}"),
            http,
        };
        for i in 0..NODES.len() {
            let w = c.worker(i);
            c.workers.push(w);
        }
        for n in NODES {
            c.until_state(n, "alive").await;
        }
        c.until_serving().await;
        c
    }

    /// Worker `i` with its fixed node id, port and state file.
    fn worker(&self, i: usize) -> Kv {
        let node = NODES[i];
        let listen = format!("127.0.0.1:{}", self.ports[i]);
        let state = self.dir.path().join(format!("{node}.state"));
        Kv::spawn(
            &self.redis.url,
            &self.cluster,
            self.dir.path(),
            node,
            &[
                "worker",
                "--node",
                node,
                "--listen",
                &listen,
                "--state-file",
                state.to_str().unwrap(),
            ],
        )
    }

    async fn until_state(&self, node: &str, state: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let rec = self.client.node_health(node).await.unwrap();
            if rec.as_ref().is_some_and(|r| r.state == state) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{node} not {state} within {WAIT:?}: {rec:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn until_serving(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let ok = self
                .http
                .get(format!("{}/health", self.router_url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "the router is not serving");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the cluster is settled: every node alive, and the key map gives each node
    /// exactly the keys the current ring places on it (no hand-off or move pending).
    async fn until_settled(&self, keys: &[String]) -> Duration {
        let started = Instant::now();
        let ids: Vec<NodeId> = NODES.iter().map(|n| NodeId::new(n).unwrap()).collect();
        let deadline = started + WAIT;
        loop {
            let nodes = self.client.nodes().await.unwrap();
            let alive = NODES.iter().all(|n| {
                nodes
                    .iter()
                    .any(|r| r.node == *n && r.state == "alive" && !r.draining)
            });
            let mut why = format!("not all alive: {nodes:?}");
            if alive {
                let ring = self.client.refresh_ring().await.unwrap();
                let mut placed: HashMap<&NodeId, u64> = HashMap::new();
                for k in keys {
                    if let Some(n) = ring.owner(k) {
                        *placed.entry(n).or_default() += 1;
                    }
                }
                let want: Vec<u64> = ids
                    .iter()
                    .map(|n| placed.get(n).copied().unwrap_or(0))
                    .collect();
                let have = self.client.node_key_counts(&ids).await.unwrap();
                if have == want && ring.members().len() == NODES.len() {
                    return started.elapsed();
                }
                why = format!("keys per node {have:?}, placed {want:?}");
            }
            assert!(
                Instant::now() < deadline,
                "not settled within {WAIT:?}: {why}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// What one read got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// 200 with the key's value.
    Hit,
    /// 200 with another value.
    Wrong,
    /// 404: the value is gone.
    Miss,
    /// 503 from the router: no owner answered within its retry time.
    Unavailable,
    /// Another status.
    Status(u16),
    Timeout,
    Error,
    /// Not sent: [`MAX_IN_FLIGHT`] reads were outstanding.
    NotSent,
}

impl Outcome {
    fn failed(self) -> bool {
        matches!(
            self,
            Outcome::Unavailable | Outcome::Status(_) | Outcome::Timeout | Outcome::Error
        )
    }
}

/// One read, with the worker that answered if one did.
#[derive(Debug, Clone, Copy)]
struct Read {
    key: u32,
    sent_ms: u64,
    answered_ms: u64,
    outcome: Outcome,
    /// Index in [`NODES`] and token of the answering worker (from its headers).
    by: Option<(u8, u64)>,
}

async fn read_one(http: &reqwest::Client, base: &str, i: usize) -> Read {
    let k = key(i);
    let sent_ms = wall_ms();
    let resp = http.get(format!("{base}/kv/{k}")).send().await;
    let (outcome, by) = match resp {
        Err(e) if e.is_timeout() => (Outcome::Timeout, None),
        Err(_) => (Outcome::Error, None),
        Ok(resp) => {
            let header = |name: &str| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let node = header("x-pantheon-node")
                .and_then(|n| NODES.iter().position(|m| *m == n))
                .map(|n| n as u8);
            let token = header("x-pantheon-token").and_then(|t| t.parse::<u64>().ok());
            let by = node.zip(token);
            let status = resp.status().as_u16();
            match (status, resp.bytes().await) {
                (200, Ok(body)) if body.as_ref() == value(&k).as_slice() => (Outcome::Hit, by),
                (200, Ok(_)) => (Outcome::Wrong, by),
                (404, Ok(_)) => (Outcome::Miss, by),
                (503, Ok(_)) => (Outcome::Unavailable, None),
                (_, Err(e)) if e.is_timeout() => (Outcome::Timeout, None),
                (_, Err(_)) => (Outcome::Error, None),
                (s, Ok(_)) => (Outcome::Status(s), None),
            }
        }
    };
    Read {
        key: i as u32,
        sent_ms,
        answered_ms: wall_ms(),
        outcome,
        by,
    }
}

/// The read load: `rate` reads per second, open loop, until `stop` (or [`MAX_LOAD`]).
async fn load(
    http: reqwest::Client,
    base: String,
    keys: usize,
    rate: u64,
    stop: Arc<AtomicBool>,
) -> Vec<Read> {
    let reads: Arc<Mutex<Vec<Read>>> = Arc::default();
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let base = Arc::new(base);
    let mut rng = StdRng::seed_from_u64(22);
    let started = Instant::now();
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while !stop.load(Ordering::Relaxed) && started.elapsed() < MAX_LOAD {
        tick.tick().await;
        // Open loop: as many reads as are due by now, however the earlier ones fare.
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due {
            sent += 1;
            let i = rng.random_range(0..keys);
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                let now = wall_ms();
                reads.lock().unwrap().push(Read {
                    key: i as u32,
                    sent_ms: now,
                    answered_ms: now,
                    outcome: Outcome::NotSent,
                    by: None,
                });
                continue;
            };
            let (http, base, reads) = (http.clone(), base.clone(), reads.clone());
            tokio::spawn(async move {
                let r = read_one(&http, &base, i).await;
                reads.lock().unwrap().push(r);
                drop(slot);
            });
        }
    }
    // The reads still out end within their timeout.
    let all = tokio::time::timeout(
        READ_TIMEOUT + Duration::from_secs(5),
        slots.acquire_many(MAX_IN_FLIGHT as u32),
    )
    .await;
    assert!(all.is_ok(), "reads still outstanding after their timeout");
    std::mem::take(&mut *reads.lock().unwrap())
}

/// Runs `f` on every item, [`PARALLEL`] at a time; the results in any order.
async fn each<T, R, F>(items: Vec<T>, f: impl Fn(T) -> F) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
    F: std::future::Future<Output = R> + Send + 'static,
{
    let mut set = JoinSet::new();
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        if set.len() >= PARALLEL {
            out.push(set.join_next().await.unwrap().unwrap());
        }
        set.spawn(f(item));
    }
    while let Some(r) = set.join_next().await {
        out.push(r.unwrap());
    }
    out
}

/// One restart of one worker: how long it took to exit, and from its start until settled.
struct Restart {
    exit_code: i32,
    exit_ms: u128,
    /// From the signal to the prober's `dead` (kill mode).
    dead_ms: Option<u128>,
    settled_ms: u128,
}

/// What one mode measured.
struct Report {
    mode: Mode,
    restarts: Vec<Restart>,
    reads: Vec<Read>,
    window: (u64, u64),
    /// Worker answers checked against the key's history (of `sampled_keys` keys, out of
    /// `answered` worker answers), and those by a non-owner.
    checked: usize,
    answered: usize,
    sampled_keys: usize,
    non_owner: Vec<String>,
    explain_s: f64,
    /// After the restarts, every key read once: 200 with its value, 404, other.
    end: (usize, usize, usize),
    log_entries: u64,
}

async fn run_mode(s: &Scale, mode: Mode) -> Report {
    println!("\n== {} ==", mode.name());
    let mut c = Cluster::start().await;
    let keys: Vec<String> = (0..s.keys).map(key).collect();

    // Assigned in bulk (a few large log entries, so `explain` reads a short log), then the
    // values PUT through the router, each answered 204 by a worker.
    let ids = c.client.distribute(keys.iter()).await.unwrap();
    c.client
        .wait_applied(*ids.last().unwrap(), WAIT)
        .await
        .unwrap();
    c.until_settled(&keys).await;
    let t = Instant::now();
    let (http, base) = (c.http.clone(), c.router_url.clone());
    let puts = each(keys.clone(), move |k| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let r = http
                .put(format!("{base}/kv/{k}"))
                .body(value(&k))
                .send()
                .await;
            (k, r.map(|r| r.status().as_u16()).unwrap_or(0))
        }
    })
    .await;
    let bad: Vec<_> = puts.iter().filter(|(_, s)| *s != 204).take(5).collect();
    assert!(bad.is_empty(), "PUTs not answered 204: {bad:?}");
    println!(
        "{} values of {VALUE_BYTES} B PUT through the router in {:.1} s",
        keys.len(),
        t.elapsed().as_secs_f64()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let loader = tokio::spawn(load(
        c.http.clone(),
        c.router_url.clone(),
        keys.len(),
        s.rate,
        stop.clone(),
    ));
    tokio::time::sleep(s.calm).await;

    let from = wall_ms();
    let mut restarts = Vec::new();
    for (i, node) in NODES.iter().copied().enumerate() {
        let signalled = Instant::now();
        c.workers[i].signal(match mode {
            Mode::Handoff => "TERM",
            Mode::Kill => "KILL",
        });
        let exit_code = c.workers[i].exited().await;
        let exit_ms = signalled.elapsed().as_millis();
        let dead_ms = if mode == Mode::Kill {
            c.until_state(node, "dead").await;
            Some(signalled.elapsed().as_millis())
        } else {
            None
        };
        let started = Instant::now();
        c.workers[i] = c.worker(i);
        c.until_state(node, "alive").await;
        c.until_settled(&keys).await;
        let settled_ms = started.elapsed().as_millis();
        println!(
            "{node}: exit {exit_code} after {exit_ms} ms{}; started again, settled after {settled_ms} ms",
            dead_ms.map_or(String::new(), |d| format!(", dead after {d} ms"))
        );
        restarts.push(Restart {
            exit_code,
            exit_ms,
            dead_ms,
            settled_ms,
        });
    }
    let to = wall_ms();
    tokio::time::sleep(s.calm).await;
    stop.store(true, Ordering::Relaxed);
    let reads = loader.await.unwrap();

    // Every key once, after the restarts.
    let (http, base) = (c.http.clone(), c.router_url.clone());
    let end_reads = each((0..keys.len()).collect(), move |i| {
        let (http, base) = (http.clone(), base.clone());
        async move { read_one(&http, &base, i).await }
    })
    .await;
    let end = (
        end_reads
            .iter()
            .filter(|r| r.outcome == Outcome::Hit)
            .count(),
        end_reads
            .iter()
            .filter(|r| r.outcome == Outcome::Miss)
            .count(),
        end_reads
            .iter()
            .filter(|r| !matches!(r.outcome, Outcome::Hit | Outcome::Miss))
            .count(),
    );

    // Every worker answer (of the load and of the final reads) against the key's owners.
    let t = Instant::now();
    let log_entries = c.client.admin().log_len().await.unwrap();
    let answered: Vec<Read> = reads
        .iter()
        .chain(&end_reads)
        .filter(|r| r.by.is_some())
        .copied()
        .collect();
    // `explain` reads the whole log per key: a uniform sample of the keys, every answer of each.
    let mut rng = StdRng::seed_from_u64(16);
    let sample: BTreeSet<u32> = (0..CHECKED_KEYS.min(keys.len()))
        .map(|_| rng.random_range(0..keys.len()) as u32)
        .collect();
    let mut by_key: BTreeMap<u32, Vec<Read>> = BTreeMap::new();
    for r in answered.iter().filter(|r| sample.contains(&r.key)) {
        by_key.entry(r.key).or_default().push(*r);
    }
    let sampled_keys = by_key.len();
    let checked = by_key.values().map(Vec::len).sum();
    let client = c.client.clone();
    let verdicts = each(by_key.into_iter().collect(), move |(k, reads)| {
        let client = client.clone();
        async move { non_owner_answers(&client, &key(k as usize), &reads).await }
    })
    .await;
    let non_owner: Vec<String> = verdicts.into_iter().flatten().collect();
    let explain_s = t.elapsed().as_secs_f64();
    Report {
        mode,
        restarts,
        reads,
        window: (from, to),
        checked,
        answered: answered.len(),
        sampled_keys,
        non_owner,
        explain_s,
        end,
        log_entries,
    }
}

/// The answers among `reads` (all of key `k`) that no owner of `k` could have given: the
/// answering node did not hold the key with that token at any time during the read.
async fn non_owner_answers(client: &Pantheon, k: &str, reads: &[Read]) -> Vec<String> {
    let x = tokio::time::timeout(WAIT, client.explain(k))
        .await
        .expect("explain within the wait")
        .unwrap();
    // (node, token, from_ms, until_ms): each owner of the key, until the next one.
    let held: Vec<(String, u64, u64, u64)> = x
        .history
        .iter()
        .enumerate()
        .filter_map(|(i, o)| {
            let until = x.history.get(i + 1).map_or(u64::MAX, |n| n.at_ms);
            Some((o.node.as_ref()?.to_string(), o.token?, o.at_ms, until))
        })
        .collect();
    reads
        .iter()
        .filter_map(|r| {
            let (n, token) = r.by?;
            let node = NODES[n as usize];
            let owned = held.iter().enumerate().any(|(i, (h, t, from, until))| {
                let next = held.get(i + 1).map_or(u64::MAX, |n| n.1);
                h == node
                    && *t <= token
                    && token < next
                    && *from <= r.answered_ms
                    && r.sent_ms <= *until
            });
            (!owned).then(|| {
                format!(
                    "{k}: {node} answered with token {token} between {} and {} ms; owners: {held:?}",
                    r.sent_ms, r.answered_ms
                )
            })
        })
        .collect()
}

struct Counts {
    sent: usize,
    hits: usize,
    wrong: usize,
    misses: usize,
    failed: usize,
    unavailable: usize,
    timeouts: usize,
    not_sent: usize,
}

fn counts<'a>(reads: impl Iterator<Item = &'a Read>) -> Counts {
    let mut c = Counts {
        sent: 0,
        hits: 0,
        wrong: 0,
        misses: 0,
        failed: 0,
        unavailable: 0,
        timeouts: 0,
        not_sent: 0,
    };
    for r in reads {
        match r.outcome {
            Outcome::NotSent => {
                c.not_sent += 1;
                continue;
            }
            Outcome::Hit => c.hits += 1,
            Outcome::Wrong => c.wrong += 1,
            Outcome::Miss => c.misses += 1,
            Outcome::Unavailable => c.unavailable += 1,
            Outcome::Timeout => c.timeouts += 1,
            _ => {}
        }
        c.failed += usize::from(r.outcome.failed());
        c.sent += 1;
    }
    c
}

fn pct(n: usize, of: usize) -> f64 {
    if of == 0 {
        f64::NAN
    } else {
        100.0 * n as f64 / of as f64
    }
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
    let started = Instant::now();
    let reports = runtime.block_on(async {
        let mut reports = Vec::new();
        for mode in [Mode::Handoff, Mode::Kill] {
            reports.push(run_mode(&s, mode).await);
            println!("load average {}", load_average());
        }
        reports
    });
    print(&s, &reports);
    println!(
        "\nload average at the end {}; whole run {:.0} s",
        load_average(),
        started.elapsed().as_secs_f64()
    );
    let handoff = &reports[0];
    assert_eq!(
        handoff.end.1, 0,
        "values lost in a rolling restart with hand-off"
    );
    assert!(handoff.non_owner.is_empty(), "answers by a non-owner");
    assert!(
        handoff.restarts.iter().all(|r| r.exit_code == 0),
        "a SIGTERMed worker did not exit 0"
    );
}

fn print(s: &Scale, reports: &[Report]) {
    println!(
        "\nRolling restart of {} workers, {} values of {VALUE_BYTES} B, {} reads/s through the router\n",
        NODES.len(),
        s.keys,
        s.rate
    );
    let head: Vec<&str> = reports.iter().map(|r| r.mode.name()).collect();
    println!("| | {} |", head.join(" | "));
    println!("|---|{}", "---:|".repeat(reports.len()));
    let row = |label: &str, f: &dyn Fn(&Report) -> String| {
        let cells: Vec<String> = reports.iter().map(f).collect();
        println!("| {label} | {} |", cells.join(" | "));
    };
    let during = |r: &Report| {
        counts(
            r.reads
                .iter()
                .filter(|x| x.sent_ms >= r.window.0 && x.sent_ms <= r.window.1),
        )
    };
    let all = |r: &Report| counts(r.reads.iter());
    row(
        "restart window (first signal → last worker settled)",
        &|r| format!("{:.1} s", (r.window.1 - r.window.0) as f64 / 1000.0),
    );
    row("reads sent, whole load / during the restarts", &|r| {
        format!("{} / {}", all(r).sent, during(r).sent)
    });
    row(
        "**hit rate during the restarts** (200 with the value)",
        &|r| {
            let c = during(r);
            format!("**{:.2}%** ({} of {})", pct(c.hits, c.sent), c.hits, c.sent)
        },
    );
    row("misses (404: value lost) during the restarts", &|r| {
        let c = during(r);
        format!("{} ({:.2}%)", c.misses, pct(c.misses, c.sent))
    });
    row("**failed** (503, timeouts, errors), whole load", &|r| {
        let c = all(r);
        format!(
            "**{} ({:.3}%)**: {} × 503, {} timeouts",
            c.failed,
            pct(c.failed, c.sent),
            c.unavailable,
            c.timeouts
        )
    });
    row("200 with a wrong value", &|r| all(r).wrong.to_string());
    row("not sent (client at its in-flight bound)", &|r| {
        all(r).not_sent.to_string()
    });
    row(
        "**answered by a non-owner** / worker answers checked",
        &|r| {
            format!(
                "**{}** / {} (all answers for {} sampled keys; {} worker answers in all)",
                r.non_owner.len(),
                r.checked,
                r.sampled_keys,
                r.answered
            )
        },
    );
    row(
        "**values lost**: every key read after the restarts, 404",
        &|r| {
            format!(
                "**{}** of {} ({} 200, {} other)",
                r.end.1, s.keys, r.end.0, r.end.2
            )
        },
    );
    row("worker exit after the signal (ms, each)", &|r| {
        let v: Vec<String> = r
            .restarts
            .iter()
            .map(|x| format!("{} (code {})", x.exit_ms, x.exit_code))
            .collect();
        v.join(", ")
    });
    row("dead after the signal (ms, each)", &|r| {
        let v: Vec<String> = r
            .restarts
            .iter()
            .map(|x| x.dead_ms.map_or("–".into(), |d| d.to_string()))
            .collect();
        v.join(", ")
    });
    row("started again → settled (ms, each)", &|r| {
        let v: Vec<String> = r
            .restarts
            .iter()
            .map(|x| x.settled_ms.to_string())
            .collect();
        v.join(", ")
    });
    row("owner check: log entries, time", &|r| {
        format!("{}, {:.1} s", r.log_entries, r.explain_s)
    });
    for r in reports {
        for line in r.non_owner.iter().take(10) {
            println!("non-owner answer ({}): {line}", r.mode.name());
        }
    }
    if let [h, k] = reports {
        let (ch, ck) = (during(h), during(k));
        println!(
            "\nhit rate during the restarts, handoff ÷ kill: {:.2}% ÷ {:.2}% = {:.2}×; values lost {} vs {}",
            pct(ch.hits, ch.sent),
            pct(ck.hits, ck.sent),
            pct(ch.hits, ch.sent) / pct(ck.hits, ck.sent),
            h.end.1,
            k.end.1
        );
    }
}
