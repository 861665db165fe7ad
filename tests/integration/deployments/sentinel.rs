//! Sentinel (one master, one replica, one sentinel): the CLI writes through
//! `redis+sentinel://` while Sentinel fails the master over (planned), then while the new
//! master is killed with -9. Every write the CLI reported as applied (exit 0) is there at the
//! end; a write it could not make durable exits non-zero, never 0. Ownership tokens keep growing
//! and a node's feed carries on across a failover.

use std::time::Duration;

use pantheon_client::{JoinOp, Pantheon, SubscribeOptions};
use pantheon_test_support::sentinel::TestSentinel;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{projector, wait_applied};
use crate::cli::pantheon;
use crate::diagnoses::{assert_one_line, pantheon_plain};
use crate::nodes::TestNode;

const WAIT: Duration = Duration::from_secs(30);

/// Runs `pantheon distribute <key>` (which waits until applied) for key after key until
/// stopped; returns (key, exit code, when it finished).
async fn cli_writes(
    url: String,
    cluster: String,
    stop: CancellationToken,
) -> Vec<(String, i32, Instant)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut runs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    for i in 0..2_000 {
        if stop.is_cancelled() || Instant::now() > deadline {
            break;
        }
        let key = format!("cli:{i}");
        let run = pantheon(
            dir.path(),
            &[("PANTHEON_CLIENT__WAIT_TIMEOUT_MS", "5000")],
            &[
                "distribute",
                &key,
                "--redis-url",
                &url,
                "--cluster",
                &cluster,
            ],
        )
        .await;
        assert!(
            [0, 1, 3, 4].contains(&run.code),
            "unexpected exit code: {run:?}"
        );
        runs.push((key, run.code, Instant::now()));
    }
    runs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_writes_survive_a_planned_failover_and_a_kill_9_of_the_master() {
    let mut sentinel = TestSentinel::start().await;
    let url = sentinel.url();
    let name = "sentinel-story";
    // Two projectors: one leads, one stands by; fencing must hold across both failovers.
    let _p1 = projector(&url, name, "p1");
    let _p2 = projector(&url, name, "p2");
    let client = Pantheon::connect(&url, name)
        .await
        .expect("connect via sentinel");
    let joined = client
        .join(JoinOp::new("n1", "http://127.0.0.1", 9, "health"))
        .await
        .expect("join");
    wait_applied(&client, joined, WAIT).await;
    let answered = super::answer(&url, name, "n1", 1).await;
    wait_applied(&client, answered, WAIT).await;
    let stop = CancellationToken::new();
    let writer = tokio::spawn(cli_writes(url.clone(), name.into(), stop.clone()));

    tokio::time::sleep(Duration::from_secs(2)).await;
    let first = sentinel.master_addr().await;
    let second = sentinel.failover().await;
    assert_ne!(first, second);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed = sentinel.kill_master().await;
    assert_eq!(killed, second);
    let third = sentinel.wait_new_master(&killed, WAIT).await;
    let promoted_at = Instant::now();
    // The killed server comes back as a replica; until then writes cannot be replicated.
    // (`restart` first waits for the sentinel to end the failover: an empty old master
    // restarted earlier can itself be promoted and wipe the data.)
    sentinel.restart(&killed).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.cancel();
    let runs = writer.await.expect("writer");

    let ok: Vec<_> = runs.iter().filter(|(_, code, _)| *code == 0).collect();
    let after = ok.iter().filter(|(_, _, at)| *at > promoted_at).count();
    eprintln!(
        "{} CLI writes: {} applied ({after} after the kill -9 promotion), exit codes of the \
         rest: {:?}",
        runs.len(),
        ok.len(),
        runs.iter()
            .filter(|(_, c, _)| *c != 0)
            .map(|(_, c, _)| *c)
            .collect::<Vec<_>>()
    );
    assert!(after > 0, "no CLI write applied after the second failover");
    // Everything reported applied is there, on the master of the moment.
    let last = client
        .distribute(["final".to_owned()])
        .await
        .expect("a write after the failovers");
    wait_applied(&client, last[0], WAIT).await;
    let mut lost = Vec::new();
    for (key, _, _) in &ok {
        if client.key_node(key).await.expect("read").is_none() {
            lost.push(key.clone());
        }
    }
    if !lost.is_empty() {
        let mut con = client.redis().clone();
        let log: redis::Value = redis::cmd("XRANGE")
            .arg(format!("pantheon:{{{name}}}:log"))
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(5)
            .query_async(&mut con)
            .await
            .expect("log");
        let keys: u64 = redis::cmd("HLEN")
            .arg(format!("pantheon:{{{name}}}:keymap"))
            .query_async(&mut con)
            .await
            .expect("hlen");
        let unowned: u64 = redis::cmd("SCARD")
            .arg(format!("pantheon:{{{name}}}:unowned"))
            .query_async(&mut con)
            .await
            .expect("scard");
        panic!(
            "{} of {} writes reported applied are lost: {:?}; keymap {keys}, unowned {unowned}; log starts {log:?}",
            lost.len(),
            ok.len(),
            &lost[..lost.len().min(10)]
        );
    }
    assert_eq!(client.redis().master().map(|m| m.to_string()), Some(third));
    // The surviving history is one chain of commits: every event once (by cause, kind,
    // node), and folding the log again gives the live state.
    let mut con = client.redis().clone();
    let raw: redis::Value = redis::cmd("XRANGE")
        .arg(format!("pantheon:{{{name}}}:events"))
        .arg("-")
        .arg("+")
        .query_async(&mut con)
        .await
        .expect("events");
    let entries = pantheon_store::stream::parse_entries(raw).expect("parse events");
    let mut seen = std::collections::BTreeSet::new();
    for e in &entries {
        let identity = (e.get("cause"), e.get("type"), e.get("node"));
        assert!(seen.insert(identity), "event committed twice: {identity:?}");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let run = pantheon(
        dir.path(),
        &[],
        &[
            "rebuild",
            "--verify",
            "--redis-url",
            &url,
            "--cluster",
            name,
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prober_and_a_subscriber_carry_on_after_a_failover() {
    let sentinel = TestSentinel::start().await;
    let url = sentinel.url();
    let name = "sentinel-health";
    let _projector = projector(&url, name, "p1");
    let mut config = pantheon_prober::ProberConfig::new(
        pantheon_store::Deployment::from_url(&url).expect("url"),
        name,
    );
    config.id = "q1".into();
    config.registration_ttl = Duration::from_millis(1000);
    config.grace = Duration::from_millis(500);
    let token = CancellationToken::new();
    let prober = tokio::spawn(pantheon_prober::run(config, token.clone()));
    let client = Pantheon::connect(&url, name).await.expect("connect");
    let mut sub = client
        .subscribe("watch", "w1", SubscribeOptions::default())
        .await
        .expect("subscribe");
    let mut node = TestNode::start().await;
    let joined = client
        .join_url("n1", &node.url(), None)
        .await
        .expect("join");
    wait_applied(&client, joined, WAIT).await;

    let old = sentinel.master_addr().await;
    let new = sentinel.failover().await;
    assert_ne!(old, new);
    node.stop().await;

    // The death is decided from probes written on the new master, and delivered to a
    // subscription opened on the old one.
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no died event for n1 after the failover");
        match tokio::time::timeout(left, sub.next()).await {
            Ok(Ok(d)) => {
                let died = d.event().is_some_and(|e| {
                    e.kind.name() == "died"
                        && e.kind.node().is_some_and(|(n, _)| n.as_str() == "n1")
                });
                sub.ack(d.id).await.ok();
                if died {
                    break;
                }
            }
            // The subscription's connection was cut by the failover: call again.
            Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(_) => panic!("no died event for n1 after the failover"),
        }
    }
    token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), prober).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_in_a_sentinel_url_is_the_data_nodes_password() {
    let password = "Sent1nel-PW";
    let sentinel_password = "Sentinel's own PW";
    let sentinel = TestSentinel::start_with(pantheon_test_support::sentinel::Options {
        password: Some(password.into()),
        sentinel_password: Some(sentinel_password.into()),
        ..Default::default()
    })
    .await;
    let url = sentinel.url().replace(
        "redis+sentinel://",
        &format!("redis+sentinel://:{password}@"),
    );
    let name = "sentinel-auth";
    let _projector = projector(&url, name, "p1");
    let client = Pantheon::connect(&url, name).await.expect("connect");
    let id = client
        .join(JoinOp::new("n1", "http://127.0.0.1", 9, "health"))
        .await
        .expect("join");
    wait_applied(&client, id, WAIT).await;
    // Without the password the master refuses, and the error says so without a password.
    let e = Pantheon::connect(&sentinel.url(), name)
        .await
        .expect_err("no password")
        .to_string();
    assert!(e.contains("NOAUTH") || e.contains("uthentication"), "{e}");
    assert!(!format!("{client:?}").contains(password));
    assert!(!format!("{client:?}").contains("own PW"));
    // The sentinel itself has a password too (`?sentinel_password=`): without it, asking
    // the sentinel for the master fails, and the error names the sentinel.
    let url = sentinel.url_without_sentinel_password().replace(
        "redis+sentinel://",
        &format!("redis+sentinel://:{password}@"),
    );
    let e = Pantheon::connect(&url, name)
        .await
        .expect_err("no sentinel password")
        .to_string();
    assert!(e.contains(&sentinel.sentinel_addr()), "{e}");
    assert!(e.contains("NOAUTH") || e.contains("uthentication"), "{e}");
    assert!(!e.contains(password) && !e.contains("own PW"), "{e}");
}

/// With two replicas, a write that waits for one replica (the default on Sentinel) is
/// confirmed again soon after a kill -9 of the master: the remaining replica follows the
/// promoted one, so nobody has to bring the dead master back first. Every confirmed write
/// is readable on the new master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_replicas_writes_are_confirmed_again_without_the_dead_master() {
    let mut sentinel = TestSentinel::start_with(pantheon_test_support::sentinel::Options {
        replicas: 2,
        ..Default::default()
    })
    .await;
    let url = sentinel.url();
    let name = "sentinel-two-replicas";
    let _projector = projector(&url, name, "p1");
    let client = Pantheon::connect(&url, name).await.expect("connect");
    let joined = client
        .join(JoinOp::new("n1", "http://127.0.0.1", 9, "health"))
        .await
        .expect("join, confirmed by a replica");
    wait_applied(&client, joined, WAIT).await;
    let answered = super::answer(&url, name, "n1", 1).await;
    wait_applied(&client, answered, WAIT).await;

    let killed = sentinel.kill_master().await;
    sentinel.wait_new_master(&killed, WAIT).await;
    // Bounded: at most 300 attempts over at most 30 s; the dead master stays dead.
    let deadline = Instant::now() + WAIT;
    let mut outcomes = Vec::new();
    let confirmed = loop {
        assert!(
            Instant::now() < deadline && outcomes.len() < 300,
            "no write confirmed by a replica after the failover: {outcomes:?}"
        );
        match client.distribute(["after-the-kill"]).await {
            Ok(ids) => break ids[0],
            Err(e) => {
                outcomes.push(e.to_string());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    wait_applied(&client, confirmed, WAIT).await;
    assert!(
        client
            .key_node("after-the-kill")
            .await
            .expect("read")
            .is_some(),
        "the confirmed write is applied on the promoted master"
    );
    // The killed node was never restarted: the confirmation came from the other replica.
    eprintln!(
        "confirmed after {} refused attempt(s): {outcomes:?}",
        outcomes.len()
    );
}

/// `pantheon events --follow` (the CLI's tail, no group) keeps printing across a planned
/// failover: its blocking read on the old master fails and it reads on from the same
/// position on the new one, without a restart, skipping nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_follow_carries_on_after_a_failover() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let sentinel = TestSentinel::start().await;
    let url = sentinel.url();
    let name = "sentinel-follow";
    let _projector = projector(&url, name, "p1");
    let client = Pantheon::connect(&url, name).await.expect("connect");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut follow = crate::cli::command(
        dir.path(),
        &[],
        &[
            "events",
            "--follow",
            "--json",
            "--redis-url",
            &url,
            "--cluster",
            name,
        ],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::null())
    .spawn()
    .expect("spawn pantheon events --follow");
    let mut lines = BufReader::new(follow.stdout.take().expect("stdout")).lines();
    // Reads lines until one mentions `node`, bounded by WAIT.
    let mut seen = Vec::new();
    let mut wait_for = async |node: &str, seen: &mut Vec<String>| {
        let deadline = Instant::now() + WAIT;
        while !seen
            .iter()
            .any(|l: &String| l.contains(&format!("\"{node}\"")))
        {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, lines.next_line()).await {
                Ok(Ok(Some(line))) => seen.push(line),
                other => panic!("no event for {node} (got {other:?}); printed so far: {seen:?}"),
            }
        }
    };

    let id = client
        .join(JoinOp::new("before", "http://127.0.0.1", 9, "health"))
        .await
        .expect("join before");
    wait_applied(&client, id, WAIT).await;
    wait_for("before", &mut seen).await;

    sentinel.failover().await;
    let deadline = Instant::now() + WAIT;
    let id = loop {
        match client
            .join(JoinOp::new("after", "http://127.0.0.1", 9, "health"))
            .await
        {
            Ok(id) => break id,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "no write after the failover: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    wait_applied(&client, id, WAIT).await;
    wait_for("after", &mut seen).await;
    let joined_before = seen
        .iter()
        .filter(|l| l.contains("\"before\"") && l.contains("joined"))
        .count();
    assert_eq!(
        joined_before, 1,
        "printed once, not again after the failover: {seen:?}"
    );
    follow.kill().await.ok();
}

/// A Sentinel with a password of its own, asked without it or with a wrong one: the one line
/// says that the sentinel (by address) refused, and which URL parameter to fix; not that the
/// data nodes' user was refused, and never the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_wrong_sentinel_password_is_blamed_on_the_sentinel() {
    let wrong = "Wr0ng-Sentinel-PW";
    let sentinel = TestSentinel::start_with(pantheon_test_support::sentinel::Options {
        sentinel_password: Some("Sentinel's own PW".into()),
        ..Default::default()
    })
    .await;
    let addr = sentinel.sentinel_addr();
    let missing = sentinel.url_without_sentinel_password();
    let wrong_url = format!("{missing}?sentinel_password={wrong}");
    let dir = tempfile::tempdir().expect("temp dir");
    for (url, says) in [
        (&missing, "requires a password of its own"),
        (
            &wrong_url,
            "refused the password given with ?sentinel_password=",
        ),
    ] {
        let run = pantheon_plain(
            dir.path(),
            &[],
            &["nodes", "--redis-url", url.as_str(), "--cluster", "s"],
        )
        .await;
        assert_eq!(run.code, 1, "{run:?}");
        assert_one_line(&run);
        assert!(run.stderr.contains(&format!("sentinel {addr}")), "{run:?}");
        assert!(run.stderr.contains(says), "{run:?}");
        assert!(!run.stderr.contains("user \"default\""), "{run:?}");
        assert!(!run.stderr.contains(wrong) && !run.stderr.contains("own PW"));
    }
    // The client library says the same.
    let e = Pantheon::connect(&wrong_url, "s")
        .await
        .expect_err("a wrong sentinel password")
        .to_string();
    assert!(
        e.contains(&format!("sentinel {addr} refused the password")),
        "{e}"
    );
    assert!(!e.contains(wrong), "{e}");
}

/// Tokens keep growing across a Sentinel failover, and a node's feed carries on: the key a
/// dead node held goes to the survivor with a token larger than any before, and the
/// survivor's watch, opened before the failover, reads that acquire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_grow_and_feeds_carry_on_across_a_failover() {
    let sentinel = TestSentinel::start().await;
    let url = sentinel.url();
    let name = "sentinel-tokens";
    let _projector = projector(&url, name, "p1");
    let mut config = pantheon_prober::ProberConfig::new(
        pantheon_store::Deployment::from_url(&url).expect("url"),
        name,
    );
    config.id = "q1".into();
    config.registration_ttl = Duration::from_millis(1000);
    config.grace = Duration::from_millis(500);
    let token = CancellationToken::new();
    let prober = tokio::spawn(pantheon_prober::run(config, token.clone()));
    let client = Pantheon::connect(&url, name).await.expect("connect");
    let mut n1 = TestNode::start().await;
    let n2 = TestNode::start().await;
    for (id, node) in [("n1", &n1), ("n2", &n2)] {
        let joined = client.join_url(id, &node.url(), None).await.expect("join");
        wait_applied(&client, joined, WAIT).await;
    }
    let deadline = Instant::now() + WAIT;
    for id in ["n1", "n2"] {
        while client.node_health(id).await.expect("read").map(|r| r.state) != Some("alive".into()) {
            assert!(Instant::now() < deadline, "{id} not alive");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let keys: Vec<String> = (0..100).map(|i| format!("t:{i}")).collect();
    let ids = client.distribute(keys.clone()).await.expect("distribute");
    wait_applied(&client, *ids.last().unwrap(), WAIT).await;
    let ring = client.refresh_ring().await.expect("ring");
    let before: Vec<(String, String, u64)> = keys
        .iter()
        .map(|k| {
            let (n, t) = ring.owner_with_token(k).expect("owned");
            (k.clone(), n.to_string(), t.expect("token"))
        })
        .collect();
    let highest = before.iter().map(|(_, _, t)| *t).max().unwrap();
    let moved_key = before
        .iter()
        .find(|(_, n, _)| n == "n1")
        .expect("n1 owns a key")
        .0
        .clone();
    let mut watch = client.watch("n2", None).expect("watch");
    let snapshot = watch.next().await.expect("snapshot");
    assert!(!snapshot.keys.contains(&moved_key));

    let old = sentinel.master_addr().await;
    let new = sentinel.failover().await;
    assert_ne!(old, new);
    n1.stop().await;

    let deadline = Instant::now() + WAIT;
    let acquired = loop {
        assert!(Instant::now() < deadline, "n2 never acquired {moved_key}");
        match watch.next_within(Duration::from_secs(1)).await {
            Ok(Some(line)) if line.keys.contains(&moved_key) => break line,
            Ok(_) => {}
            // The connection was cut by the failover: call again.
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    assert_eq!(acquired.op, pantheon_client::WatchOp::Acquire);
    assert_eq!(acquired.peer.as_ref().map(|p| p.as_str()), Some("n1"));
    assert!(
        acquired.token > highest,
        "{} after {highest}",
        acquired.token
    );
    let ring = client.refresh_ring().await.expect("ring");
    let (owner, now) = ring.owner_with_token(&moved_key).expect("owned");
    assert_eq!(owner.as_str(), "n2");
    assert!(now.expect("token") >= acquired.token);
    token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), prober).await;
}
