//! Issue 19 ("Big clusters on one host"): leading again after a restart or a crash when the
//! state holds millions of keys. Real `pantheon-projector` release binaries (leader and
//! standbys, killed with SIGKILL), a real Redis started for the run (never the machine's
//! shared one), probe results appended through the service's attested append as a prober
//! would. Loopback only; every wait is bounded.
//!
//! One Redis, one story, in order:
//! 1. **distribute** — `KEYS` keys over 100 nodes in `assign` entries of 10,000: keys/s until
//!    applied, and Redis bytes per key.
//! 2. **warm takeover** — a standby starts and warms (its load time); kill -9 of the leader;
//!    time until the standby applied a new entry (default lease TTL 5 s).
//! 3. **cold takeover** — for comparison, in the same run: a replacement started at the
//!    moment the leader is killed -9 (no warm standby): time until it applied a new entry.
//! 4. **failover + kill** — 10% of the nodes fail (3 failed probes each); the leader is
//!    killed -9 while it commits the moves; the warm standby finishes. Checked: every key is
//!    still owned, none by a dead node, and `pantheon rebuild --verify` (the release CLI, its
//!    peak RSS sampled) finds the read models equal to a fold of the log.
//! 5. **cold restart** — the cluster grows to `BIG` keys; every projector is killed -9 and one
//!    starts with default settings: its reported load time and the time until it applied a
//!    new entry.
//! 6. **failover at `BIG` keys** — with that restarted projector leading, 10% more of the
//!    nodes fail (3 failed probes each): the lag from the append until the last failure is
//!    applied (target ≤ 10 s), the keys moved, the projector's RSS. Checked: every key is
//!    still owned and none by the newly dead nodes.
//!
//! ```text
//! cargo bench -p pantheon-tests --bench scale        # 5M then 10M keys, 3–4 min after the builds
//! # release binaries: PANTHEON_PROJECTOR_BIN, PANTHEON_BIN (the CLI), else built here
//! PANTHEON_BENCH_KEYS=1000000 PANTHEON_BENCH_BIG=2000000 cargo bench -p pantheon-tests --bench scale
//! ```
//!
//! Without `--bench` (as in `cargo test --benches`) it runs with 20,000 and 40,000 keys.

// A benchmark harness: a failed setup step should stop it with its reason.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pantheon_domain::entry::{Command, LogEntry, ProbeResult};
use pantheon_domain::{EntryId, NodeId};
use pantheon_store::Layout;
use pantheon_test_support::TestRedis;
use pantheon_test_support::process::{ChildGuard, load_average, memory_mib, release_binary};
use redis::aio::MultiplexedConnection;
use support::server::used_memory;
use support::services::without_pantheon_env;

mod support;

const NODES: usize = 100;
const PER_ENTRY: usize = 10_000;
const CLUSTER: &str = "scale";
/// Longest any single step may take before the bench gives up.
const STEP_MAX: Duration = Duration::from_secs(900);

fn count(var: &str, bench: usize, smoke: usize) -> usize {
    if let Ok(v) = std::env::var(var) {
        return v.parse().expect("a number of keys");
    }
    if std::env::args().any(|a| a == "--bench") {
        bench
    } else {
        smoke
    }
}

fn node(i: usize) -> NodeId {
    NodeId::new(&format!("n{i}")).unwrap()
}

/// One projector process, its log in a file.
struct Projector {
    child: ChildGuard,
    log: PathBuf,
}

impl Projector {
    fn start(bin: &Path, url: &str, instance: &str, dir: &Path) -> Projector {
        let log = dir.join(format!("{instance}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = std::process::Command::new(bin);
        without_pantheon_env(&mut cmd);
        let child = cmd
            .env("PANTHEON_REDIS_URL", url)
            .env("PANTHEON_CLUSTER", CLUSTER)
            .env("PANTHEON_PROJECTOR__INSTANCE", instance)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn pantheon-projector");
        Projector {
            child: ChildGuard(child),
            log,
        }
    }

    fn pid(&self) -> u32 {
        self.child.pid()
    }

    fn kill(mut self) {
        self.child.0.kill().unwrap();
        let _ = self.child.0.wait();
    }

    /// How many leading terms this projector's log says it lost.
    fn terms_lost(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("lost the lease: standing by"))
            .count()
    }

    /// The first log line containing `text`, waiting for it (bounded).
    async fn line(&self, text: &str) -> String {
        self.first_of(&[text]).await
    }

    /// The first log line containing any of `texts`, waiting for one (bounded).
    async fn first_of(&self, texts: &[&str]) -> String {
        let deadline = Instant::now() + STEP_MAX;
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(line) = log.lines().find(|l| texts.iter().any(|t| l.contains(t))) {
                return line.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "none of {texts:?} in {}",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The value of `name=` in a log line.
fn field(line: &str, name: &str) -> String {
    let at = line
        .find(&format!("{name}="))
        .map_or("", |i| &line[i + name.len() + 1..]);
    at.split_whitespace().next().unwrap_or("").to_owned()
}

async fn append(con: &mut MultiplexedConnection, layout: &Layout, entry: &LogEntry) -> EntryId {
    let id: String = pantheon_store::log::xadd(layout, entry)
        .query_async(con)
        .await
        .unwrap();
    id.parse().unwrap()
}

/// Waits until the checkpoint reached `id`; returns how long that took.
async fn wait_applied(con: &mut MultiplexedConnection, layout: &Layout, id: EntryId) -> Duration {
    let started = Instant::now();
    loop {
        let got: Option<String> = redis::cmd("HGET")
            .arg(layout.checkpoint())
            .arg("last_id")
            .query_async(con)
            .await
            .unwrap();
        if got.and_then(|g| g.parse::<EntryId>().ok()) >= Some(id) {
            return started.elapsed();
        }
        assert!(started.elapsed() < STEP_MAX, "{id} not applied in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Appends `assign` entries for keys `from..to` (pipelined) and waits until applied.
/// Returns keys per second, end to end.
async fn distribute(
    con: &mut MultiplexedConnection,
    layout: &Layout,
    from: usize,
    to: usize,
) -> f64 {
    let started = Instant::now();
    let mut last = EntryId::ZERO;
    for chunk_start in (from..to).step_by(PER_ENTRY * 10) {
        let mut pipe = redis::pipe();
        for start in (chunk_start..(chunk_start + PER_ENTRY * 10).min(to)).step_by(PER_ENTRY) {
            let keys = (start..(start + PER_ENTRY).min(to))
                .map(|i| format!("tenant:{i}"))
                .collect();
            pipe.add_command(pantheon_store::log::xadd(
                layout,
                &LogEntry::new(Command::Assign { keys }),
            ));
        }
        let ids: Vec<String> = pipe.query_async(con).await.unwrap();
        last = ids.last().unwrap().parse().unwrap();
    }
    wait_applied(con, layout, last).await;
    (to - from) as f64 / started.elapsed().as_secs_f64()
}

/// Three failed probes of each of `dying` (node `i` joined in epoch `i + 1`), in rounds.
fn failing(dying: &[usize]) -> Vec<LogEntry> {
    (0..3)
        .flat_map(|_| dying.iter().map(|&i| failed(node(i), i as u64 + 1)))
        .collect()
}

/// Keys owned by `nodes`, from their key sets.
async fn keys_on(con: &mut MultiplexedConnection, layout: &Layout, nodes: &[usize]) -> usize {
    let mut total = 0usize;
    for &i in nodes {
        let n: usize = redis::cmd("SCARD")
            .arg(layout.node_keys(&node(i)))
            .query_async(con)
            .await
            .unwrap();
        total += n;
    }
    total
}

/// Keys owned by any node (the key map's size).
async fn owned_keys(con: &mut MultiplexedConnection, layout: &Layout) -> usize {
    redis::cmd("HLEN")
        .arg(layout.keymap())
        .query_async(con)
        .await
        .unwrap()
}

fn failed(node: NodeId, epoch: u64) -> LogEntry {
    LogEntry::new(Command::Probe(ProbeResult {
        node,
        epoch,
        ok: false,
        status: None,
        latency_ms: 1000,
        error: Some(pantheon_domain::health::ProbeError::Timeout),
        prober: Some("bench-prober".into()),
    }))
}

/// What one `pantheon rebuild --verify` run printed and how much memory it took.
#[derive(Debug)]
struct Verified {
    matches: bool,
    compared: u64,
    took: Duration,
    peak_mib: f64,
}

/// Runs the release CLI's `rebuild --verify --json`, sampling its peak RSS (`VmHWM`) every
/// 10 ms until it exits (the last sample is at most 10 ms before its end).
async fn verify_cli(cli: &Path, url: &str) -> Verified {
    let out = tempfile::NamedTempFile::new().unwrap();
    let started = Instant::now();
    let mut cmd = std::process::Command::new(cli);
    let mut child = without_pantheon_env(&mut cmd)
        .args([
            "--redis-url",
            url,
            "--cluster",
            CLUSTER,
            "rebuild",
            "--verify",
            "--json",
        ])
        .stdout(out.reopen().unwrap())
        .spawn()
        .unwrap();
    let mut peak_mib = 0f64;
    let status = loop {
        peak_mib = peak_mib.max(memory_mib(child.id()).1);
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < STEP_MAX, "verify did not end");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let took = started.elapsed();
    let printed = std::fs::read_to_string(out.path()).unwrap();
    let json: serde_json::Value = serde_json::from_str(&printed)
        .unwrap_or_else(|e| panic!("verify printed {printed:?} ({e}), exit {status}"));
    Verified {
        matches: status.success() && json["matches"] == true,
        compared: json["compared"].as_u64().unwrap_or(0),
        took,
        peak_mib,
    }
}

#[tokio::main]
async fn main() {
    let keys = count("PANTHEON_BENCH_KEYS", 5_000_000, 20_000);
    let big = count("PANTHEON_BENCH_BIG", 10_000_000, 40_000).max(keys);
    let Some(bin) = release_binary(
        "pantheon-projector-service",
        "pantheon-projector",
        "PANTHEON_PROJECTOR_BIN",
    ) else {
        return;
    };
    let Some(cli) = release_binary("pantheon", "pantheon", "PANTHEON_BIN") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    println!(
        "machine: {} cores; load average at start {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    let redis = TestRedis::start().await;
    let mut con = redis.connection().await;
    let layout = Layout::new("pantheon", CLUSTER);
    let mut results = Vec::new();

    // Set-up: 100 nodes that answered.
    let leader = Projector::start(&bin, &redis.url, "p1", dir.path());
    for i in 0..NODES {
        let join = LogEntry::new(Command::Join {
            node: node(i),
            url: format!("http://127.0.0.1:9/n{i}/health"),
            weight: None,
            handoff: false,
        });
        append(&mut con, &layout, &join).await;
    }
    let answered = (0..NODES).map(|i| (node(i), i as u64 + 1));
    let last = support::answer_all(&mut con, &layout, answered).await;
    wait_applied(&mut con, &layout, last).await;

    // 1. distribute
    let mem0 = used_memory(&mut con).await;
    let rate = distribute(&mut con, &layout, 0, keys).await;
    let per_key = (used_memory(&mut con).await - mem0) as f64 / keys as f64;
    results.push(format!(
        "distribute {keys} keys: **{rate:.0} keys/s** (log to read models, end to end); Redis \
         {per_key:.0} B/key"
    ));

    // 2. warm takeover
    let started = Instant::now();
    let standby = Projector::start(&bin, &redis.url, "p2", dir.path());
    let warm = standby.line("standby warm").await;
    results.push(format!(
        "standby warm after {:.1} s ({})",
        started.elapsed().as_secs_f64(),
        warm.split(": ").last().unwrap_or("").trim()
    ));
    let killed = Instant::now();
    leader.kill();
    let probe = append(
        &mut con,
        &layout,
        &LogEntry::new(Command::Leave { node: node(0) }),
    )
    .await;
    wait_applied(&mut con, &layout, probe).await;
    let took = standby.line("took over with the standby's state").await;
    results.push(format!(
        "kill -9 of the leader, warm standby: new entry applied **{:.2} s** after the kill \
         (lease TTL 5 s; load {} ms, tail of {} entries)",
        killed.elapsed().as_secs_f64(),
        field(&took, "load_ms"),
        field(&took, "tail_entries")
    ));

    // 3. cold takeover, same run
    let killed = Instant::now();
    standby.kill();
    let cold = Projector::start(&bin, &redis.url, "p3", dir.path());
    let entry = append(
        &mut con,
        &layout,
        &LogEntry::new(Command::Leave { node: node(1) }),
    )
    .await;
    wait_applied(&mut con, &layout, entry).await;
    let cold_took = killed.elapsed();
    results.push(format!(
        "kill -9 of the leader, replacement started cold at the kill: new entry applied \
         **{:.2} s** after the kill",
        cold_took.as_secs_f64()
    ));

    // 4. failover while the leader is killed
    let standby = Projector::start(&bin, &redis.url, "p4", dir.path());
    standby.line("standby warm").await;
    let dying: Vec<usize> = (10..10 + NODES / 10).collect();
    let failures = failing(&dying);
    let started = Instant::now();
    pantheon_store::log::append_many_service(&mut con, &layout, &failures)
        .await
        .unwrap();
    let last = support::last_id(&mut con, &layout).await;
    // Let the leader read and start committing the moves, then kill it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    cold.kill();
    wait_applied(&mut con, &layout, last).await;
    let failover = started.elapsed();
    let owned = owned_keys(&mut con, &layout).await;
    let on_dead = keys_on(&mut con, &layout, &dying).await;
    let verified = verify_cli(&cli, &redis.url).await;
    let redis_mib = used_memory(&mut con).await as f64 / 1048576.0;
    assert_eq!(owned, keys, "keys lost");
    assert_eq!(on_dead, 0, "keys left on dead nodes");
    assert!(verified.matches, "{verified:?}");
    results.push(format!(
        "{} of {NODES} nodes fail, leader killed -9 200 ms into the commit: all applied after \
         **{:.2} s**; {owned} of {keys} keys owned, {on_dead} on dead nodes, a fold of the log \
         agrees with the read models",
        dying.len(),
        failover.as_secs_f64()
    ));
    results.push(format!(
        "`pantheon rebuild --verify` (release CLI: fold the log, stream the live read models \
         against it) at {keys} keys: **{:.1} s** ({:.0} keys/s), peak RSS **{:.0} MiB** = \
         **{:.2}×** Redis's used_memory ({redis_mib:.0} MiB); {} elements compared",
        verified.took.as_secs_f64(),
        keys as f64 / verified.took.as_secs_f64(),
        verified.peak_mib,
        verified.peak_mib / redis_mib,
        verified.compared
    ));

    // 5. cold restart at `big` keys
    if big > keys {
        let rate = distribute(&mut con, &layout, keys, big).await;
        results.push(format!(
            "distribute {} more keys: {rate:.0} keys/s",
            big - keys
        ));
    }
    let per_key = (used_memory(&mut con).await - mem0) as f64 / big as f64;
    standby.kill();
    let started = Instant::now();
    let restarted = Projector::start(&bin, &redis.url, "p5", dir.path());
    let entry = append(
        &mut con,
        &layout,
        &LogEntry::new(Command::Leave { node: node(2) }),
    )
    .await;
    wait_applied(&mut con, &layout, entry).await;
    // The killed leader's lease outlives it by up to one TTL: the new process loads as a
    // standby meanwhile ("standby warm"), or under the lease if it gets it first.
    let loaded = restarted
        .first_of(&["standby warm", "state loaded: leading"])
        .await;
    results.push(format!(
        "cold restart at {big} keys after kill -9 of every projector, default settings: led \
         and applied a new entry after **{:.1} s** (its load: {} ms, {}); Redis \
         {per_key:.0} B/key",
        started.elapsed().as_secs_f64(),
        field(&loaded, "load_ms"),
        if loaded.contains("standby warm") {
            "as a standby while the dead leader's lease ran out"
        } else {
            "under the lease"
        }
    ));

    // 6. failover at `big` keys, the restarted projector leading alone. Nodes 0..=2 left and
    // 10..20 died in step 4: these are alive.
    let dying: Vec<usize> = (20..20 + NODES / 10).collect();
    let rss_before = memory_mib(restarted.pid()).0;
    let moving = keys_on(&mut con, &layout, &dying).await;
    let failures = failing(&dying);
    let lost_before = restarted.terms_lost();
    let started = Instant::now();
    pantheon_store::log::append_many_service(&mut con, &layout, &failures)
        .await
        .unwrap();
    let last = support::last_id(&mut con, &layout).await;
    wait_applied(&mut con, &layout, last).await;
    let lag = started.elapsed();
    let lost = restarted.terms_lost() - lost_before;
    let (rss_after, rss_peak) = memory_mib(restarted.pid());
    let owned = owned_keys(&mut con, &layout).await;
    let on_dead = keys_on(&mut con, &layout, &dying).await;
    assert_eq!(owned, big, "keys lost");
    assert_eq!(on_dead, 0, "keys left on dead nodes");
    assert!(moving > 0, "the failing nodes owned no keys");
    let target = Duration::from_secs(10);
    results.push(format!(
        "{} more of {NODES} nodes fail at {big} keys (3 failed probes each, one pipeline), the \
         restarted projector leading: last failure applied **{:.2} s** after the append (lag; \
         target ≤ {} s: **{}**); {moving} keys moved ({:.0} keys/s); {owned} of {big} keys \
         owned, {on_dead} on the dead nodes; the leader lost its lease {lost} times meanwhile; \
         projector RSS {rss_before:.0} MiB before, {rss_after:.0} MiB after, peak \
         {rss_peak:.0} MiB",
        dying.len(),
        lag.as_secs_f64(),
        target.as_secs(),
        if lag <= target { "met" } else { "not met" },
        moving as f64 / lag.as_secs_f64()
    ));
    restarted.kill();

    println!("\n### Results (load average {})\n", load_average());
    for line in &results {
        println!("- {line}");
    }
}
