//! A Redis that comes back empty (docs/adr/0012-redis-that-comes-back-empty.md), against a
//! real redis-server without persistence, a real `pantheon up` and real HTTP nodes: a restart
//! under a running `up` gets every node and key owner back from the leader's state, loudly
//! (`restored` event, one ERROR line) and writes apply after it; `pantheon destroy` needs its
//! flag and is not undone by the running leader; with nobody holding the state, `pantheon
//! doctor` fails and says so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use pantheon_domain::entry::{Command, LogEntry};
use pantheon_domain::event::EventKind;
use pantheon_domain::{Event, NodeId};
use pantheon_test_support::TestRedis;
use tokio::process::Child;
use tokio::time::Instant;

use crate::cli::{Run, command, pantheon};
use crate::cluster::{TestCluster, events_of};
use crate::nodes::TestNode;

const WAIT: Duration = Duration::from_secs(20);
/// The target is 5 s after Redis answers again; the assertion leaves room for a loaded
/// machine, the measured time is printed.
const RESTORE_LIMIT: Duration = Duration::from_secs(10);

/// The CLI against one cluster of the test's Redis, and `up` as a child process.
struct Ctl {
    dir: tempfile::TempDir,
    url: String,
    cluster: String,
}

impl Ctl {
    fn new(redis: &TestRedis) -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            url: redis.url.clone(),
            cluster: redis.namespace().to_owned(),
        }
    }

    async fn run(&self, args: &[&str]) -> Run {
        let mut all = args.to_vec();
        all.extend(["--redis-url", &self.url, "--cluster", &self.cluster]);
        pantheon(self.dir.path(), &[], &all).await
    }

    /// `pantheon up` with quick probe cadences, its stderr (INFO and up) in a file.
    fn up(&self) -> (Child, PathBuf) {
        let log = self.dir.path().join("up.log");
        let file = std::fs::File::create(&log).expect("log file");
        let env = [
            ("PANTHEON_PROBER__INTERVAL_MS", "200"),
            ("PANTHEON_PROBER__SUSPECT_INTERVAL_MS", "100"),
            ("PANTHEON_PROBER__DEAD_INTERVAL_MS", "200"),
            ("PANTHEON_PROBER__TIMEOUT_MS", "300"),
            ("PANTHEON_PROBER__GRACE_MS", "300"),
            ("PANTHEON_PROJECTOR__BLOCK_MS", "100"),
            ("PANTHEON_LOCAL_REDIS__START", "false"),
        ];
        let args = ["up", "--redis-url", &self.url, "--cluster", &self.cluster];
        let child = command(self.dir.path(), &env, &args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .expect("spawn pantheon up");
        (child, log)
    }
}

fn said(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

async fn hash(con: &mut redis::aio::MultiplexedConnection, key: &str) -> BTreeMap<String, String> {
    redis::cmd("HGETALL")
        .arg(key)
        .query_async(con)
        .await
        .unwrap_or_default()
}

/// Polls until every key has an owner among the alive nodes (bounded by `WAIT`).
async fn wait_owned(c: &mut TestCluster, keys: usize) -> BTreeMap<String, String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let map = hash(&mut c.con, &c.layout.keymap()).await;
        if map.len() == keys {
            return map;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {keys} keys owned",
            map.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn join_and_distribute(ctl: &Ctl, nodes: &[&TestNode], keys: &[String]) {
    for (i, node) in nodes.iter().enumerate() {
        let id = format!("n{i}");
        let run = ctl.run(&["join", &id, "--url", &node.url()]).await;
        assert_eq!(run.code, 0, "{run:?}");
    }
    // Each owns keys once it answered its first probe (joining → alive): wait for all, so
    // the owners read next are final.
    let deadline = Instant::now() + WAIT;
    loop {
        let run = ctl.run(&["nodes", "--json"]).await;
        let alive = run.stdout.matches("\"state\": \"alive\"").count();
        if alive == nodes.len() {
            break;
        }
        assert!(Instant::now() < deadline, "nodes never all alive: {run:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut args = vec!["distribute"];
    args.extend(keys.iter().map(String::as_str));
    let run = ctl.run(&args).await;
    assert_eq!(run.code, 0, "{run:?}");
}

fn restored(events: &[Event]) -> Option<&Event> {
    events.iter().find(|e| e.kind.name() == "restored")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restarted_empty_under_up_gets_nodes_and_key_owners_back_loudly() {
    let redis = TestRedis::start().await;
    if !redis.can_restart() {
        eprintln!("skipped: this Redis cannot be restarted by the test");
        return;
    }
    let ctl = Ctl::new(&redis);
    let mut c = TestCluster::named(redis, &ctl.cluster).await;
    let (mut up, up_log) = ctl.up();
    let (a, b, d) = (
        TestNode::start().await,
        TestNode::start().await,
        TestNode::start().await,
    );
    let keys: Vec<String> = (0..300).map(|i| format!("user:{i}")).collect();
    join_and_distribute(&ctl, &[&a, &b, &d], &keys).await;
    let owners = wait_owned(&mut c, keys.len()).await;
    let nodes_before = hash(&mut c.con, &c.layout.nodes()).await;
    assert_eq!(nodes_before.len(), 3);

    // When Redis restarts without persistence under the running `up`
    c.redis.kill();
    c.redis.restart().await;
    c.con = c.redis.connection().await;
    let answered = Instant::now();

    // Then nodes and key owners come back with no operator action
    let deadline = answered + WAIT;
    let took = loop {
        let nodes = hash(&mut c.con, &c.layout.nodes()).await;
        let map = hash(&mut c.con, &c.layout.keymap()).await;
        if nodes.len() == 3 && map == owners {
            break answered.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "not restored: {} nodes, {} keys; up said:\n{}",
            nodes.len(),
            map.len(),
            said(&up_log)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("nodes and key owners back {took:?} after Redis answered again");
    assert!(took <= RESTORE_LIMIT, "restored after {took:?}");
    let after = hash(&mut c.con, &c.layout.nodes()).await;
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        nodes_before.keys().collect::<Vec<_>>()
    );

    // And the restore is an event naming what came back, and one ERROR line
    let event = c.wait_event(WAIT, |e| e.kind.name() == "restored").await;
    let EventKind::Restored { nodes, keys: n, .. } = event.kind else {
        unreachable!()
    };
    assert_eq!((nodes, n), (3, 300), "{event}");
    let log = said(&up_log);
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("Redis lost this cluster's data"))
        .collect();
    assert_eq!(errors.len(), 1, "{log}");
    // Only the first start was a new cluster; the restart was not taken for one.
    assert_eq!(log.matches("new cluster: folding").count(), 1, "{log}");

    // And a write after it applies (the CLI waits for the projector)
    let run = ctl.run(&["distribute", "after:1"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let map = hash(&mut c.con, &c.layout.keymap()).await;
    assert!(map.contains_key("after:1"), "{map:?}");
    // And health keeps working on the restored nodes: a stopped node dies, its keys move
    let mut a = a;
    a.stop().await;
    c.wait_event(WAIT, |e| {
        e.kind.name() == "died" && e.kind.node().is_some_and(|(n, _)| n.as_str() == "n0")
    })
    .await;
    // And a rebuild from the new generation's base matches the live state
    let run = ctl.run(&["rebuild", "--verify"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let _ = up.start_kill();
    let _ = up.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_needs_its_flag_and_the_running_leader_does_not_put_the_cluster_back() {
    let redis = TestRedis::start().await;
    let ctl = Ctl::new(&redis);
    let mut c = TestCluster::named(redis, &ctl.cluster).await;
    let (mut up, up_log) = ctl.up();
    let a = TestNode::start().await;
    let keys: Vec<String> = (0..50).map(|i| format!("k:{i}")).collect();
    join_and_distribute(&ctl, &[&a], &keys).await;
    wait_owned(&mut c, keys.len()).await;

    // Without the flag: a usage error, nothing deleted
    let run = ctl.run(&["destroy"]).await;
    assert_eq!(run.code, 64, "{run:?}");
    assert!(run.stderr.contains("--yes-i-am-sure"), "{run:?}");
    assert_eq!(hash(&mut c.con, &c.layout.keymap()).await.len(), 50);

    // With it: every key of the cluster is gone
    let run = ctl.run(&["destroy", "--yes-i-am-sure", "--json"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    // And the running leader starts the cluster empty instead of re-seeding it: a join
    // applies (the CLI waits for the projector) into a cluster without the old nodes or keys
    let b = TestNode::start().await;
    let run = ctl.run(&["join", "fresh", "--url", &b.url()]).await;
    assert_eq!(run.code, 0, "{run:?}\n{}", said(&up_log));
    // Give a wrong re-seed every chance to happen (the lease TTL is 2 s by default)
    tokio::time::sleep(Duration::from_secs(3)).await;
    let nodes = hash(&mut c.con, &c.layout.nodes()).await;
    assert_eq!(
        nodes.keys().collect::<Vec<_>>(),
        vec!["fresh"],
        "{}",
        said(&up_log)
    );
    assert!(hash(&mut c.con, &c.layout.keymap()).await.is_empty());
    let events = events_of(&mut c.con, &c.layout).await;
    assert!(restored(&events).is_none(), "{events:?}");
    assert!(!said(&up_log).contains("Redis lost"), "{}", said(&up_log));
    let _ = up.start_kill();
    let _ = up.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nobody_holding_the_state_doctor_fails_and_no_empty_history_starts() {
    let redis = TestRedis::start().await;
    if !redis.can_restart() {
        eprintln!("skipped: this Redis cannot be restarted by the test");
        return;
    }
    let mut c = TestCluster::on(redis).await;
    let leader = c.spawn(c.config("leader"));
    let joined = c
        .xadd(&LogEntry::new(Command::Join {
            node: NodeId::new("n0").unwrap(),
            url: "http://127.0.0.1:9/health".into(),
            weight: None,
            handoff: false,
        }))
        .await;
    c.wait_applied(joined, WAIT).await;
    // A standby that saw the cluster's checkpoint, but holds none of its state
    let standby = c.spawn(c.config("standby"));
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // When Redis goes away, the leader stops for good, and Redis comes back empty
    c.redis.kill();
    leader.stop().await;
    c.redis.restart().await;
    c.con = c.redis.connection().await;

    // Then doctor fails and says that the data is gone and nobody holds it
    let dir = tempfile::tempdir().unwrap();
    let (url, name) = (c.redis.url.clone(), c.name.clone());
    let args = ["doctor", "--redis-url", &url, "--cluster", &name];
    let mut last = None;
    for _ in 0..50 {
        let run = pantheon(dir.path(), &[], &args).await;
        if run.stdout.contains("FAIL  data") {
            last = Some(run);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let run = last.expect("doctor reports the loss within 10 s");
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains("no running projector holds its state"),
        "{run:?}"
    );
    assert!(run.stdout.contains("pantheon destroy"), "{run:?}");
    // And the standby did not start an empty history
    let checkpoint: bool = redis::cmd("EXISTS")
        .arg(c.layout.checkpoint())
        .query_async(&mut c.con)
        .await
        .unwrap();
    assert!(!checkpoint);
    standby.stop().await;
}
