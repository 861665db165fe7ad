//! An operator's reshard that stopped midway (issue 18): the slot of a Pantheon cluster is
//! `MIGRATING` on its master and `IMPORTING` on another, and one of its keys (the `nodes`
//! hash) has moved. Reads follow `ASK`; a commit waits and applies by itself once the
//! migration completes; `doctor` names the migration; `up` logs it once, and its end once.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use pantheon_client::{ClientError, JoinOp, Pantheon};
use pantheon_test_support::redis_cluster::TestCluster;
use tokio::time::Instant;

use super::wait_applied;
use crate::cli::{Run, command, pantheon};
use crate::nodes::TestNode;

const WAIT: Duration = Duration::from_secs(30);
/// No error line may come near the 10 KB lines of `ASK` failures this issue reported.
const LONGEST_LINE: usize = 1000;

fn join_op(id: &str, node: &TestNode) -> JoinOp {
    JoinOp::new(id, "http://127.0.0.1", node.addr.port(), "health")
}

/// Lines of `text` longer than [`LONGEST_LINE`].
fn long_lines(text: &str) -> Vec<usize> {
    text.lines()
        .map(str::len)
        .filter(|n| *n > LONGEST_LINE)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_finished_slot_migration_is_ridden_out_and_named() {
    let redis = TestCluster::start().await;
    let url = redis.url();
    let name = redis.cluster_names_per_master("half").await[0].clone();
    let slot = TestCluster::slot_of(&format!("pantheon:{{{name}}}:log"));
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("up.log");
    let mut up = command(
        dir.path(),
        &[
            ("RUST_LOG", "info"),
            ("PANTHEON_PROBER__INTERVAL_MS", "200"),
            ("PANTHEON_PROJECTOR__BLOCK_MS", "100"),
            ("PANTHEON_LOCAL_REDIS__START", "false"),
        ],
        &["up", "--redis-url", &url, "--cluster", &name],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::from(std::fs::File::create(&log).expect("log file")))
    .spawn()
    .expect("spawn pantheon up");
    let ctl = |args: &'static [&'static str]| cli(dir.path(), &url, &name, args);

    let n1 = TestNode::start().await;
    let client = Pantheon::connect(&url, &name).await.expect("connect");
    let id = client.join(join_op("n1", &n1)).await.expect("join n1");
    wait_applied(&client, id, WAIT).await;
    let ids = client
        .distribute((0..100).map(|i| format!("user:{i}")))
        .await
        .expect("distribute");
    wait_applied(&client, *ids.last().expect("an id"), WAIT).await;
    // Bounded: n1 owns keys once its health endpoint has answered.
    let deadline = Instant::now() + WAIT;
    while client.key_node("user:0").await.expect("read").is_none() {
        assert!(Instant::now() < deadline, "n1 never came alive");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The reshard stops after moving the `nodes` hash.
    let source = redis.master_of_slot(slot).await;
    let to = redis
        .masters()
        .await
        .into_iter()
        .map(|(addr, _)| addr)
        .find(|addr| *addr != source)
        .expect("another master");
    let nodes_key = format!("pantheon:{{{name}}}:nodes");
    let from = redis.begin_migration(slot, &to, &[&nodes_key]).await;
    assert_eq!(from, source);
    let migrating = format!("slot {slot} is migrating from {from} to {to}");

    // Reads follow ASK: the CLI and the client.
    let nodes = ctl(&["nodes"]).await;
    assert_eq!(nodes.code, 0, "{nodes:?}");
    assert!(nodes.stdout.contains("n1"), "{nodes:?}");
    let located = ctl(&["locate", "user:0"]).await;
    assert_eq!(located.code, 0, "{located:?}");
    assert!(located.stdout.contains("n1"), "{located:?}");
    let owner = client
        .key_node("user:0")
        .await
        .expect("read during the migration");
    assert_eq!(owner.as_ref().map(|n| n.as_str()), Some("n1"));

    // doctor names the migration and fails.
    let doctor = ctl(&["doctor"]).await;
    assert_eq!(doctor.code, 1, "{doctor:?}");
    assert!(doctor.stdout.contains(&migrating), "{doctor:?}");

    // A write: in the log at once, applied only after the migration.
    let n2 = TestNode::start().await;
    let joined = client.join(join_op("n2", &n2)).await.expect("append n2");
    match client.wait_applied(joined, Duration::from_secs(3)).await {
        Err(ClientError::Timeout { .. }) => {}
        other => panic!("a commit went through during the migration: {other:?}"),
    }
    redis.finish_migration(slot, &to).await;
    let finished = Instant::now();
    wait_applied(&client, joined, WAIT).await;
    let resumed = finished.elapsed();
    let nodes = ctl(&["nodes"]).await;
    assert!(nodes.stdout.contains("n2"), "{nodes:?}");
    let doctor = ctl(&["doctor"]).await;
    assert!(!doctor.stdout.contains("is migrating"), "{doctor:?}");
    eprintln!("the join waiting through the migration applied {resumed:?} after it completed");

    let _ = up.start_kill();
    let _ = up.wait().await;
    let said = std::fs::read_to_string(&log).expect("up's log");
    for run in [&nodes, &located, &doctor] {
        assert!(long_lines(&run.stderr).is_empty(), "{run:?}");
    }
    assert!(
        long_lines(&said).is_empty(),
        "long lines in up's log:\n{said}"
    );
    let warns: Vec<&str> = said.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(
        warns.len(),
        1,
        "up logs exactly one WARN, for the migration:\n{said}"
    );
    assert!(warns[0].contains(&migrating), "{said}");
    let over: Vec<&str> = said
        .lines()
        .filter(|l| l.contains(&format!("migration of slot {slot} from {from} is over")))
        .collect();
    assert_eq!(over.len(), 1, "one line when it is over:\n{said}");
    assert!(over[0].contains(&to), "{said}");
}

/// The CLI on cluster `name`.
async fn cli(dir: &Path, url: &str, name: &str, args: &[&str]) -> Run {
    let mut all = args.to_vec();
    all.extend(["--redis-url", url, "--cluster", name]);
    pantheon(dir, &[], &all).await
}
