//! Ownership tokens and the per-node feed end to end, with `pantheon up`, real HTTP nodes
//! and the real CLI: the feed folds to exactly `keys NODE` through joins, a death, a
//! revival, a drain and a weight change; `--from` resumes with nothing missed or repeated;
//! a position the feed no longer holds starts again from a snapshot; a key that changes
//! owner gets a larger token; `explain` tells the same story from the log.

use std::collections::BTreeSet;
use std::time::Duration;

use pantheon_client::{EntryId, Pantheon, WatchLine, WatchOp};
use pantheon_test_support::TestRedis;
use serde_json::Value;

use crate::cli::Ctl;
use crate::nodes::TestNode;

/// Applies lines to a key set the way the feed's readers must: a snapshot replaces, an
/// acquire adds, a release removes, a hand-off changes nothing (the node still owns them).
pub(crate) fn fold(set: &mut BTreeSet<String>, line: &WatchLine) {
    match line.op {
        WatchOp::Snapshot => *set = line.keys.iter().cloned().collect(),
        WatchOp::Acquire => set.extend(line.keys.iter().cloned()),
        WatchOp::Release => {
            for k in &line.keys {
                set.remove(k);
            }
        }
        WatchOp::Handoff => {}
    }
}

/// Every line until the feed stays quiet for a second (bounded: 200 lines).
async fn drain(watch: &mut pantheon_client::Watch) -> Vec<WatchLine> {
    let mut lines = Vec::new();
    for _ in 0..200 {
        match watch.next_within(Duration::from_secs(1)).await.unwrap() {
            Some(line) => lines.push(line),
            None => break,
        }
    }
    lines
}

async fn keys_of(ctl: &Ctl, node: &str) -> BTreeSet<String> {
    let run = ctl.run(&["keys", node, "--json"]).await.ok();
    run.json()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect()
}

async fn located(ctl: &Ctl, key: &str) -> Value {
    ctl.run(&["locate", key, "--json"]).await.ok().json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feeds_fold_to_the_key_sets_and_newer_owners_hold_larger_tokens() {
    let redis = TestRedis::start().await;
    let ctl = Ctl::new(&redis.url, redis.namespace());
    let (_up, _log) = ctl.up();
    let a = TestNode::start().await;
    let mut b = TestNode::start().await;
    let c = TestNode::start().await;
    for (id, n) in [("a", &a), ("b", &b), ("c", &c)] {
        ctl.run(&["join", id, "--url", &n.url()]).await.ok();
    }
    for n in ["a", "b", "c"] {
        ctl.wait_state(n, "alive").await;
    }
    let keys: Vec<String> = (0..300).map(|i| format!("user:{i}")).collect();
    let file = ctl.dir.path().join("keys.txt");
    std::fs::write(&file, keys.join("\n")).unwrap();
    ctl.run(&["distribute", "--file", file.to_str().unwrap()])
        .await
        .ok();

    // The CLI's snapshot of b is exactly `keys b`, with b's token.
    let snap = ctl
        .run(&["watch", "b", "--json", "--lines", "1"])
        .await
        .ok();
    let snap: Value = serde_json::from_str(snap.stdout.trim()).unwrap();
    assert_eq!(snap["op"], "snapshot");
    let b_before = keys_of(&ctl, "b").await;
    let listed: BTreeSet<String> = snap["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, b_before);
    let b_key = b_before.iter().next().unwrap().clone();
    let before = located(&ctl, &b_key).await;
    assert_eq!(before["node"], "b");
    assert_eq!(before["token"], snap["token"], "{before} {snap}");
    let snap_id = snap["id"].as_str().unwrap().to_owned();

    // Followers of every node, from their snapshots, through a death, a revival, a drain,
    // an undrain and a weight change.
    let client = Pantheon::connect(&redis.url, redis.namespace())
        .await
        .unwrap();
    let mut watches: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|n| {
            (
                n.to_string(),
                client.watch(n, None).unwrap(),
                BTreeSet::new(),
                Vec::new(),
            )
        })
        .collect();
    // The snapshots are taken now, before anything changes.
    for (_, watch, set, all) in &mut watches {
        let first = watch.next().await.unwrap();
        assert_eq!(first.op, WatchOp::Snapshot);
        fold(set, &first);
        all.push(first);
    }
    b.stop().await;
    ctl.wait_state("b", "dead").await;
    let after_death = located(&ctl, &b_key).await;
    assert_ne!(after_death["node"], "b");
    assert!(
        after_death["token"].as_u64().unwrap() > before["token"].as_u64().unwrap(),
        "the new owner's token is larger: {before} → {after_death}"
    );
    // explain tells the same story from the log, for an assigned key and a ring-only one.
    let explained = ctl.run(&["explain", &b_key, "--json"]).await.ok().json();
    assert_eq!(explained["assigned"], true, "{explained}");
    let history = explained["history"].as_array().unwrap();
    let (last, before_last) = (&history[history.len() - 1], &history[history.len() - 2]);
    assert_eq!(last["node"], after_death["node"], "{explained}");
    assert_eq!(last["token"], after_death["token"], "{explained}");
    assert_eq!(before_last["node"], "b", "{explained}");
    let why = last["why"].as_str().unwrap();
    assert!(why.starts_with("b died: "), "{explained}");
    let ring_only = ctl
        .run(&["explain", "never-assigned", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(ring_only["assigned"], false);
    let placed = located(&ctl, "never-assigned").await;
    let ring_history = ring_only["history"].as_array().unwrap();
    assert_eq!(
        ring_history.last().unwrap()["node"],
        placed["node"],
        "{ring_only}"
    );
    // The token it got then; the floor rose with b's death since, so its token now is larger.
    let then = ring_history.last().unwrap()["token"].as_u64().unwrap();
    assert!(
        then <= placed["token"].as_u64().unwrap(),
        "{ring_only} {placed}"
    );
    let text = ctl.run(&["explain", &b_key]).await.ok();
    assert!(text.stdout.contains("b died: "), "{text:?}");
    b.restart().await;
    ctl.wait_state("b", "alive").await;
    ctl.run(&["drain", "c"]).await.ok();
    ctl.run(&["undrain", "c"]).await.ok();
    ctl.run(&["weight", "a", "3"]).await.ok();
    ctl.wait_state("c", "alive").await;
    for (node, watch, set, all) in &mut watches {
        let lines = drain(watch).await;
        for line in &lines {
            fold(set, line);
        }
        assert_eq!(
            *set,
            keys_of(&ctl, node).await,
            "{node}: the feed folds to `keys`"
        );
        all.extend(lines);
    }
    // b released its keys when it died, naming where each went, and got keys back.
    let b_lines = &watches[1].3;
    assert!(
        b_lines
            .iter()
            .any(|l| l.op == WatchOp::Release && l.peer.is_some())
    );
    assert!(b_lines.iter().skip(1).any(|l| l.op == WatchOp::Acquire));

    // Resuming from the CLI's snapshot id misses nothing and repeats nothing: the lines
    // after it fold, on top of the snapshot, to `keys b`.
    let resumed = ctl
        .run(&[
            "watch",
            "b",
            "--json",
            "--from",
            &snap_id,
            "--lines",
            &(b_lines.len() - 1).to_string(),
        ])
        .await
        .ok();
    let mut set = b_before.clone();
    let mut ids = Vec::new();
    for raw in resumed.stdout.lines() {
        let v: Value = serde_json::from_str(raw).unwrap();
        assert_ne!(v["op"], "snapshot", "{}", resumed.stdout);
        ids.push(v["id"].as_str().unwrap().to_owned());
        let ks = v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_owned());
        if v["op"] == "acquire" {
            set.extend(ks)
        } else {
            for k in ks {
                set.remove(&k);
            }
        }
    }
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(unique, ids, "no line twice");
    assert_eq!(set, keys_of(&ctl, "b").await);

    // A position the feed does not hold starts again from a snapshot.
    let gone = ctl
        .run(&["watch", "b", "--json", "--from", "1-0", "--lines", "1"])
        .await
        .ok();
    assert!(gone.stdout.contains("\"op\":\"snapshot\""), "{gone:?}");
    // Text reads as a sentence; a bad --from is a usage error.
    let text = ctl.run(&["watch", "b", "--lines", "1"]).await.ok();
    assert!(text.stdout.starts_with("b owns "), "{text:?}");
    let bad = ctl.run(&["watch", "b", "--from", "yesterday"]).await;
    assert_eq!(bad.code, 64, "{bad:?}");
    assert!(EntryId::ZERO < snap_id.parse::<EntryId>().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_keeps_about_its_newest_thousand_entries_and_a_left_node_keeps_it_a_day() {
    let redis = TestRedis::start().await;
    let ctl = Ctl::new(&redis.url, redis.namespace());
    let (_up, _log) = ctl.up();
    let a = TestNode::start().await;
    ctl.run(&["join", "a", "--url", &a.url()]).await.ok();
    ctl.wait_state("a", "alive").await;
    let client = Pantheon::connect(&redis.url, redis.namespace())
        .await
        .unwrap();
    let mut first = client.watch("a", None).unwrap();
    let snapshot = first.next().await.unwrap();
    assert_eq!(snapshot.op, WatchOp::Snapshot);
    let k0 = client.distribute(["k0"]).await.unwrap().pop().unwrap();
    client
        .wait_applied(k0, Duration::from_secs(15))
        .await
        .unwrap();
    let oldest = first.next().await.unwrap();
    assert_eq!(
        (oldest.op, oldest.keys.clone()),
        (WatchOp::Acquire, vec!["k0".to_owned()])
    );
    // 1,100 assign entries of one key each: 1,100 acquire entries on a's feed.
    let mut last = None;
    for i in 1..1_100 {
        last = client.distribute([format!("k{i}")]).await.unwrap().pop();
    }
    client
        .wait_applied(last.unwrap(), Duration::from_secs(60))
        .await
        .unwrap();
    let layout = pantheon_store::Layout::new("pantheon", redis.namespace());
    let feed = layout.node_feed(&pantheon_client::NodeId::new("a").unwrap());
    let mut con = redis.connection().await;
    let len: u64 = redis::cmd("XLEN")
        .arg(&feed)
        .query_async(&mut con)
        .await
        .unwrap();
    assert!((1_000..1_200).contains(&len), "feed length {len}");
    // The first acquire is gone: a reader resuming there starts again from a snapshot that
    // holds every key.
    let mut resumed = client.watch("a", Some(oldest.id)).unwrap();
    let again = resumed.next().await.unwrap();
    assert_eq!(again.op, WatchOp::Snapshot, "{again:?}");
    assert_eq!(again.keys.len(), 1_100);
    // A node that leaves keeps its feed for a day, so its watchers read the final release.
    let left = client.leave("a").await.unwrap();
    client
        .wait_applied(left, Duration::from_secs(15))
        .await
        .unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&feed)
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        ttl > 23 * 3600 * 1000 && ttl <= 24 * 3600 * 1000,
        "ttl {ttl}"
    );
    let tail = drain(&mut resumed).await;
    let released: usize = tail
        .iter()
        .filter(|l| l.op == WatchOp::Release)
        .map(|l| l.keys.len())
        .sum();
    assert_eq!(released, 1_100, "{tail:?}");
}
