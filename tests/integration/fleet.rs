//! Many clusters, one fleet (issue 13) on a real Redis Cluster (3 masters + 3 replicas) with
//! real `pantheon up --clusters ...` processes: 30 Pantheon clusters spread over the shards,
//! 3 processes share their leading; after a kill -9 of one process every cluster applies
//! writes again; a fourth process takes its share; no entry is ever applied twice (two
//! leaders would commit it twice: counted in the events); a cluster flooded with bad entries
//! does not hold up the others; a pattern (`svc-*`) finds clusters on every shard, also ones
//! created later, within the documented interval; the dashboard lists the clusters served.

use std::collections::BTreeMap;
use std::time::Duration;

use pantheon_client::{EntryId, Pantheon};
use pantheon_test_support::redis_cluster::TestCluster as RedisCluster;
use tokio::process::Child;
use tokio::time::Instant;

use crate::cli::command;

const CLUSTERS: usize = 30;
const LEASE_TTL_MS: u64 = 2000;
const WAIT: Duration = Duration::from_secs(60);

struct Fleet {
    url: String,
    names: Vec<String>,
    dir: tempfile::TempDir,
    clients: Vec<Pantheon>,
}

impl Fleet {
    /// Clients of clusters `names` on the Redis at `url`.
    async fn new(url: String, names: Vec<String>) -> Self {
        let mut clients = Vec::new();
        for n in &names {
            clients.push(Pantheon::connect(&url, n).await.expect("connect"));
        }
        Self {
            url,
            names,
            dir: tempfile::tempdir().unwrap(),
            clients,
        }
    }

    fn up(&self, id: &str) -> Child {
        self.up_serving(id, &self.names.join(","))
    }

    /// `up --clusters <list>` (names or patterns).
    fn up_serving(&self, id: &str, list: &str) -> Child {
        self.up_with(id, list, &[])
    }

    /// `up --clusters <list> --listen 127.0.0.1:0`, and the address its HTTP endpoint took.
    async fn up_listening(&self, id: &str, list: &str) -> (Child, std::net::SocketAddr) {
        let child = self.up_with(id, list, &[("PANTHEON_HTTP__LISTEN", "127.0.0.1:0")]);
        let log = self.dir.path().join(format!("{id}.log"));
        let deadline = Instant::now() + WAIT;
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(addr) = text
                .split("HTTP endpoint on http://")
                .nth(1)
                .and_then(|rest| rest.split('/').next())
            {
                return (child, addr.parse().expect("address"));
            }
            assert!(Instant::now() < deadline, "no HTTP endpoint: {text}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn up_with(&self, id: &str, list: &str, env: &[(&str, &str)]) -> Child {
        let log = std::fs::File::create(self.dir.path().join(format!("{id}.log"))).unwrap();
        let ttl = LEASE_TTL_MS.to_string();
        let mut vars = vec![
            ("PANTHEON_PROJECTOR__INSTANCE", id),
            ("PANTHEON_PROJECTOR__LEASE_TTL_MS", ttl.as_str()),
            ("PANTHEON_PROJECTOR__BLOCK_MS", "100"),
            ("PANTHEON_LOCAL_REDIS__START", "false"),
        ];
        vars.extend_from_slice(env);
        command(
            self.dir.path(),
            &vars,
            &["up", "--clusters", list, "--redis-url", &self.url],
        )
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(log))
        .spawn()
        .expect("spawn pantheon up")
    }

    /// Joins node `node` in every cluster; returns the entry ids.
    async fn join_everywhere(&self, node: &str) -> Vec<EntryId> {
        let mut ids = Vec::new();
        for c in &self.clients {
            ids.push(
                c.join_url(node, "http://127.0.0.1:9/health", None)
                    .await
                    .expect("append"),
            );
        }
        ids
    }

    /// Waits until every cluster applied its entry; returns how long the slowest took.
    async fn wait_all(&self, ids: &[EntryId], within: Duration) -> Duration {
        let started = Instant::now();
        for (c, id) in self.clients.iter().zip(ids) {
            let left = within.saturating_sub(started.elapsed());
            c.wait_applied(*id, left)
                .await
                .unwrap_or_else(|e| panic!("cluster {}: {id} not applied: {e}", c.cluster()));
        }
        started.elapsed()
    }

    /// Who committed last in each cluster.
    async fn leaders(&self) -> BTreeMap<String, usize> {
        let mut count = BTreeMap::new();
        for c in &self.clients {
            let status = c.status().await.expect("status");
            let leader = status.projector.leader.unwrap_or_default();
            *count.entry(leader).or_insert(0) += 1;
        }
        count
    }

    /// Every cluster's `joined` events: exactly the joins written, each once.
    async fn assert_each_join_applied_once(&self, joins: usize) {
        for c in &self.clients {
            let mut con = c.redis().clone();
            let events = pantheon_store::events::range(
                &mut con,
                c.layout(),
                pantheon_store::stream::Bound::Open,
                100_000,
            )
            .await
            .expect("events");
            let joined = events
                .iter()
                .filter(|e| e.get("type") == Some("joined"))
                .count();
            assert_eq!(joined, joins, "cluster {}: joined events", c.cluster());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_clusters_share_three_processes_survive_a_kill_and_take_in_a_fourth() {
    let redis = RedisCluster::start().await;
    let url = redis.url();
    let names: Vec<String> = (0..CLUSTERS).map(|i| format!("svc-{i}")).collect();
    let fleet = Fleet::new(url, names).await;
    // The clusters spread over the three shards.
    let mut shards = std::collections::BTreeSet::new();
    for n in &fleet.names {
        shards.insert(
            redis
                .master_of_slot(RedisCluster::slot_of(&format!("pantheon:{{{n}}}:log")))
                .await,
        );
    }
    assert_eq!(shards.len(), 3, "30 clusters land on all 3 masters");

    let mut processes: Vec<Child> = ["up-a", "up-b", "up-c"]
        .iter()
        .map(|id| fleet.up(id))
        .collect();
    let ids = fleet.join_everywhere("n1").await;
    let took = fleet.wait_all(&ids, WAIT).await;
    eprintln!("30 clusters applied their first write after {took:?}");
    // Each process leads a share once the fleet has settled.
    let mut leaders = BTreeMap::new();
    for round in 0..40 {
        let ids = fleet.join_everywhere(&format!("warm-{round}")).await;
        fleet.wait_all(&ids, WAIT).await;
        leaders = fleet.leaders().await;
        if ["up-a", "up-b", "up-c"]
            .iter()
            .all(|p| leaders.get(*p).is_some_and(|n| *n > 0))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("leaders: {leaders:?}");
    for p in ["up-a", "up-b", "up-c"] {
        assert!(
            leaders.get(p).is_some_and(|n| *n > 0),
            "{p} leads nothing: {leaders:?}"
        );
    }

    // kill -9 one process: every cluster applies writes again.
    processes[0].start_kill().unwrap();
    let _ = processes[0].wait().await;
    let killed = Instant::now();
    let ids = fleet.join_everywhere("after-kill").await;
    fleet.wait_all(&ids, WAIT).await;
    eprintln!(
        "after kill -9 of up-a: all 30 clusters applied again {:?} after the kill (lease TTL {LEASE_TTL_MS} ms)",
        killed.elapsed()
    );
    let leaders = fleet.leaders().await;
    assert!(!leaders.contains_key("up-a"), "{leaders:?}");
    // `pantheon status` shows who leads what.
    let list = fleet.names.join(",");
    let run = crate::cli::pantheon(
        fleet.dir.path(),
        &[("PANTHEON_CLUSTERS", &list)],
        &["status", "--redis-url", &fleet.url],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout.lines().count(), CLUSTERS + 1, "{run:?}");
    for line in run.stdout.lines().skip(1) {
        assert!(
            line.contains("up-b") || line.contains("up-c"),
            "a live process leads: {line}"
        );
    }

    // A fourth process takes its share, without two leaders at any moment.
    // (It finds its clusters by pattern: a scan of every shard of the Redis Cluster.)
    processes.push(fleet.up_serving("up-d", "svc-*"));
    let mut took_over = false;
    for round in 0..60 {
        let ids = fleet.join_everywhere(&format!("rebalance-{round}")).await;
        fleet.wait_all(&ids, WAIT).await;
        if fleet.leaders().await.get("up-d").is_some_and(|n| *n > 0) {
            took_over = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        took_over,
        "up-d never led a cluster: {:?}",
        fleet.leaders().await
    );
    let ids = fleet.join_everywhere("last").await;
    fleet.wait_all(&ids, WAIT).await;
    // Every join was applied exactly once in every cluster: a second leader would have
    // committed some twice (the fence refuses that).
    let written = count_joins(&fleet.clients[0]).await;
    fleet.assert_each_join_applied_once(written).await;
    for mut p in processes {
        let _ = p.start_kill();
        let _ = p.wait().await;
    }
}

/// Joins written to a cluster's log (every cluster got the same ones).
async fn count_joins(client: &Pantheon) -> usize {
    let mut con = client.redis().clone();
    pantheon_store::log::range(&mut con, client.layout(), None, None, 100_000)
        .await
        .expect("log")
        .iter()
        .filter(|e| e.get("type") == Some("join"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_flooded_with_bad_entries_does_not_hold_up_the_others() {
    let redis = RedisCluster::start().await;
    let url = redis.url();
    let names: Vec<String> = (0..6).map(|i| format!("flood-{i}")).collect();
    let fleet = Fleet::new(url, names).await;
    let mut process = fleet.up("up-solo");
    let ids = fleet.join_everywhere("n1").await;
    fleet.wait_all(&ids, WAIT).await;

    // 100,000 malformed entries into the first cluster's log, straight to its master.
    let flooded = &fleet.clients[0];
    let master = redis
        .master_of_slot(RedisCluster::slot_of(&flooded.layout().log()))
        .await;
    let mut con = redis::Client::open(format!("redis://{master}"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut last_bad = String::new();
    for _ in 0..20 {
        let mut pipe = redis::pipe();
        for _ in 0..5_000 {
            pipe.cmd("XADD")
                .arg(flooded.layout().log())
                .arg("*")
                .arg("type")
                .arg("explode")
                .arg("payload")
                .arg("x".repeat(200));
        }
        let ids: Vec<String> = pipe.query_async(&mut con).await.unwrap();
        last_bad = ids.last().cloned().unwrap();
    }
    let last_bad: EntryId = last_bad.parse().unwrap();

    // The others apply a write while the flood is still being worked through.
    let mut ids = Vec::new();
    for c in &fleet.clients[1..] {
        ids.push(
            c.join_url("n2", "http://127.0.0.1:9/health", None)
                .await
                .unwrap(),
        );
    }
    let started = Instant::now();
    for (c, id) in fleet.clients[1..].iter().zip(&ids) {
        c.wait_applied(*id, WAIT).await.unwrap();
    }
    let others_done = started.elapsed();
    let flooded_at = flooded
        .status()
        .await
        .unwrap()
        .projector
        .applied_last
        .and_then(|s| s.parse::<EntryId>().ok());
    eprintln!(
        "the 5 other clusters applied after {others_done:?}; the flooded one was at {flooded_at:?} of {last_bad}"
    );
    assert!(
        flooded_at.is_none_or(|at| at < last_bad),
        "the flood was already worked through ({flooded_at:?}): make it larger"
    );
    // And the flood is worked through, every bad entry rejected with a reason.
    match flooded.wait_applied(last_bad, WAIT).await {
        Err(pantheon_client::ClientError::Rejected { id, .. }) => assert_eq!(id, last_bad),
        other => panic!("the last bad entry should be rejected, got {other:?}"),
    }
    let mut con = flooded.redis().clone();
    let rejected: u64 = redis::cmd("XLEN")
        .arg(flooded.layout().rejected())
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(rejected, 100_000);
    let _ = process.start_kill();
    let _ = process.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projector_binary_shares_clusters_from_pantheon_clusters() {
    let redis = pantheon_test_support::TestRedis::start().await;
    let names: Vec<String> = (0..8).map(|i| format!("bin-{i}")).collect();
    let fleet = Fleet::new(redis.url.clone(), names).await;
    let spawn = |id: &str| {
        let mut cmd =
            tokio::process::Command::new(env!("CARGO_BIN_EXE_pantheon-projector-under-test"));
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("PANTHEON_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("PANTHEON_REDIS_URL", &fleet.url)
            .env("PANTHEON_CLUSTERS", fleet.names.join(","))
            .env("PANTHEON_PROJECTOR__INSTANCE", id)
            .env("PANTHEON_PROJECTOR__LEASE_TTL_MS", LEASE_TTL_MS.to_string())
            .env("PANTHEON_PROJECTOR__BLOCK_MS", "100")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn pantheon-projector")
    };
    let mut processes = vec![spawn("proj-a"), spawn("proj-b")];
    let mut leaders = BTreeMap::new();
    for round in 0..40 {
        let ids = fleet.join_everywhere(&format!("n{round}")).await;
        fleet.wait_all(&ids, WAIT).await;
        leaders = fleet.leaders().await;
        if ["proj-a", "proj-b"]
            .iter()
            .all(|p| leaders.get(*p).is_some_and(|n| *n > 0))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for p in ["proj-a", "proj-b"] {
        assert!(
            leaders.get(p).is_some_and(|n| *n > 0),
            "{p} leads nothing: {leaders:?}"
        );
    }
    // Settled: every cluster is led by its rendezvous owner among the two processes.
    let live = ["proj-a".to_owned(), "proj-b".to_owned()];
    let a_owns = pantheon_service::fleet::owned(&fleet.names, &live, "proj-a");
    let mut settled = false;
    for round in 0..40 {
        let ids = fleet.join_everywhere(&format!("s{round}")).await;
        fleet.wait_all(&ids, WAIT).await;
        let mut all = true;
        for c in &fleet.clients {
            let leader = c
                .status()
                .await
                .unwrap()
                .projector
                .leader
                .unwrap_or_default();
            let owner = if a_owns.contains(c.cluster()) {
                "proj-a"
            } else {
                "proj-b"
            };
            all &= leader == owner;
        }
        if all {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        settled,
        "clusters not led by their owners: {:?}",
        fleet.leaders().await
    );
    let written = count_joins(&fleet.clients[0]).await;
    fleet.assert_each_join_applied_once(written).await;
    for p in &mut processes {
        let _ = p.start_kill();
        let _ = p.wait().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pattern_serves_every_matching_cluster_also_one_created_later() {
    let redis = pantheon_test_support::TestRedis::start().await;
    let names = vec!["disc-a".to_owned(), "disc-b".to_owned()];
    let fleet = Fleet::new(redis.url.clone(), names).await;
    // Logs that exist before `up` starts: two that match, one that does not.
    let ids = fleet.join_everywhere("n1").await;
    let other = Pantheon::connect(&redis.url, "other").await.unwrap();
    other
        .join_url("n1", "http://127.0.0.1:9/health", None)
        .await
        .unwrap();
    let mut process = fleet.up_serving("up-disc", "disc-*");
    fleet.wait_all(&ids, WAIT).await;
    // A cluster created while it runs is found and served.
    let late = Pantheon::connect(&redis.url, "disc-late").await.unwrap();
    let id = late
        .join_url("n1", "http://127.0.0.1:9/health", None)
        .await
        .unwrap();
    late.wait_applied(id, WAIT).await.unwrap();
    // One that does not match is left alone.
    let status = other.status().await.unwrap();
    assert_eq!(status.projector.applied_last, None, "{status:?}");
    // Each cluster's prober runs on a runtime of its own, in a thread of its own (ADR 0014):
    // the probe loops' timing does not wait on the projectors' work in the same process.
    let pid = process.id().expect("running");
    let started = Instant::now();
    while prober_threads(pid) != 3 {
        assert!(
            started.elapsed() < WAIT,
            "prober threads: {} for 3 clusters",
            prober_threads(pid)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = process.start_kill();
    let _ = process.wait().await;
}

/// Threads of process `pid` named `pantheon-prober`.
fn prober_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .filter_map(Result::ok)
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|name| name.trim_end() == "pantheon-prober")
                })
                .count()
        })
        .unwrap_or(0)
}

/// GET `path` on `addr`: the status code and the body.
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let r = reqwest::get(format!("http://{addr}{path}"))
        .await
        .expect("GET");
    let code = r.status().as_u16();
    (code, r.text().await.expect("body"))
}

/// `pantheon_fleet_clusters_owned` of the process at `addr`.
async fn owned_clusters(addr: std::net::SocketAddr) -> Option<f64> {
    let (_, text) = get(addr, "/metrics").await;
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).ok()?;
    pantheon_test_support::prometheus::sample(&scrape, "pantheon_fleet_clusters_owned", &[])
}

/// Polls until the process at `addr` owns `n` clusters; returns how long that took.
async fn until_owned(addr: std::net::SocketAddr, n: f64) -> Duration {
    let started = Instant::now();
    while owned_clusters(addr).await != Some(n) {
        assert!(started.elapsed() < WAIT, "never owned {n} clusters");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_created_later_is_found_within_five_heartbeats() {
    let redis = pantheon_test_support::TestRedis::start().await;
    let fleet = Fleet::new(redis.url.clone(), Vec::new()).await;
    let (mut process, http) = fleet.up_listening("up-late", "late-*").await;
    until_owned(http, 0.0).await;
    let create = |name: &'static str| {
        let url = redis.url.clone();
        async move {
            let c = Pantheon::connect(&url, name).await.unwrap();
            c.join_url("n1", "http://127.0.0.1:9/health", None)
                .await
                .unwrap();
        }
    };
    // The first is found by some search; the second, created right after, by the next one.
    create("late-0").await;
    until_owned(http, 1.0).await;
    create("late-1").await;
    let took = until_owned(http, 2.0).await;
    // ADR 0010: a heartbeat every third of the lease TTL, a search every 5 heartbeats (the
    // search waits for the heartbeat it falls in, hence one more).
    let heartbeat = Duration::from_millis(LEASE_TTL_MS) / 3;
    let bound = heartbeat * 6 + Duration::from_millis(500);
    eprintln!("a cluster created later was found after {took:?} (bound {bound:?})");
    assert!(took <= bound, "found after {took:?}, more than {bound:?}");
    let _ = process.start_kill();
    let _ = process.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_dashboard_lists_the_clusters_served_and_shows_each() {
    let redis = pantheon_test_support::TestRedis::start().await;
    let fleet = Fleet::new(
        redis.url.clone(),
        ["dash-a", "dash-b"].map(String::from).into(),
    )
    .await;
    let (mut process, http) = fleet.up_listening("up-dash", &fleet.names.join(",")).await;
    let ids = fleet.join_everywhere("n1").await;
    fleet.wait_all(&ids, WAIT).await;

    // `/` lists the clusters served, not the `cluster` setting ("default").
    let (code, html) = get(http, "/").await;
    assert_eq!(code, 200, "{html}");
    assert!(
        html.contains("<title>Pantheon · 2 clusters</title>"),
        "{html}"
    );
    for c in ["dash-a", "dash-b"] {
        assert!(html.contains(&format!("href=\"?cluster={c}\"")), "{html}");
    }
    assert!(!html.contains("default"), "{html}");
    let (code, body) = get(http, "/api/clusters").await;
    assert_eq!(code, 200, "{body}");
    let listed: Vec<String> = serde_json::from_str(&body).unwrap();
    assert_eq!(listed, ["dash-a", "dash-b"]);

    // `?cluster=` shows one of them; its links keep it.
    let (code, html) = get(http, "/?cluster=dash-b").await;
    assert_eq!(code, 200, "{html}");
    assert!(html.contains("<title>Pantheon · dash-b</title>"), "{html}");
    assert!(
        html.contains("href=\"?cluster=dash-b&amp;node=n1\""),
        "{html}"
    );
    let (code, body) = get(http, "/api/status?cluster=dash-a").await;
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["cluster"], "dash-a", "{status}");
    assert_eq!(
        status["nodes"].as_array().map(Vec::len),
        Some(1),
        "{status}"
    );

    // Which cluster must be said, and only served ones are shown.
    let (code, body) = get(http, "/api/status").await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = get(http, "/?cluster=other").await;
    assert_eq!(code, 404, "{body}");
    let _ = process.start_kill();
    let _ = process.wait().await;
}
