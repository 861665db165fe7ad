//! A poisoned log clock against a real Redis, projector, prober and HTTP nodes, and the real
//! CLI: an entry id far in the future is reported (`clock_skew` event, `pantheon doctor`
//! exits 1), a stopped node still dies and its keys move, and `pantheon recover-clock` moves
//! the log to a new generation that keeps every node and key, applies what was not applied
//! yet, follows Redis's clock again and still rebuilds to the same state.

use std::collections::BTreeMap;
use std::time::Duration;

use pantheon_domain::entry::{Command, LogEntry};
use pantheon_domain::event::EventKind;
use pantheon_domain::{EntryId, NodeId};

use crate::cli::pantheon;
use crate::cluster::TestCluster;
use crate::nodes::TestNode;

const WAIT: Duration = Duration::from_secs(20);
/// `XADD log 99999999999999-0 ...`: a producer that used its own clock (year 5138).
const POISON: &str = "99999999999999-0";

fn join(id: &str, url: &str) -> LogEntry {
    LogEntry::new(Command::Join {
        node: NodeId::new(id).unwrap(),
        url: url.to_owned(),
        weight: None,
        handoff: false,
    })
}

async fn keymap(c: &mut TestCluster) -> BTreeMap<String, String> {
    redis::cmd("HGETALL")
        .arg(c.layout.keymap())
        .query_async(&mut c.con)
        .await
        .expect("HGETALL keymap")
}

async fn server_ms(c: &mut TestCluster) -> u64 {
    let (s, us): (u64, u64) = redis::cmd("TIME").query_async(&mut c.con).await.unwrap();
    s * 1000 + us / 1000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_clock_is_reported_health_keeps_working_and_a_new_generation_keeps_all_state() {
    let mut c = TestCluster::start().await;
    let mut config = c.config("p");
    config.prober_watchdog = Some(Duration::from_millis(500));
    let _projector = c.spawn(config);
    let mut a = TestNode::start().await;
    let b = TestNode::start().await;
    c.xadd(&join("a", &a.url())).await;
    c.xadd(&join("b", &b.url())).await;
    let keys: Vec<String> = (0..200).map(|i| format!("user:{i}")).collect();
    let assigned = c
        .xadd(&LogEntry::new(Command::Assign { keys: keys.clone() }))
        .await;
    c.wait_applied(assigned, WAIT).await;
    let _prober = c.spawn_prober(c.prober_config("prober-1"));
    // Both answer their first probe (joining → alive) and own keys.
    for n in ["a", "b"] {
        c.wait_event(WAIT, |e| {
            e.kind.name() == "ready" && e.kind.node().is_some_and(|(id, _)| id.as_str() == n)
        })
        .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let (url, name) = (c.redis.url.clone(), c.name.clone());
    let cli = |args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        all.extend([
            "--redis-url".into(),
            url.clone(),
            "--cluster".into(),
            name.clone(),
        ]);
        all
    };
    // Healthy: doctor passes once the prober has registered.
    let healthy = doctor_passes(dir.path(), &as_str(&cli(&["doctor"])))
        .await
        .expect("doctor passes on a healthy cluster");
    assert!(healthy.stdout.contains("ok    clock"), "{healthy:?}");

    // When a producer writes an id far in the future
    let poisoned = c
        .xadd_raw_at(POISON, &[("type", "assign"), ("key", "late:1")])
        .await;
    // Then the projector reports it as an event naming the entry
    let skew = c
        .wait_event(
            WAIT,
            |e| matches!(e.kind, EventKind::ClockSkew { entry, .. } if entry == poisoned),
        )
        .await;
    let EventKind::ClockSkew { skew_ms, .. } = skew.kind else {
        unreachable!()
    };
    assert!(skew_ms > 60_000 * 60 * 24 * 365, "skew {skew_ms} ms");
    // And every later id is stuck at the poisoned ms
    let stuck = c
        .xadd(&LogEntry::new(Command::Assign {
            keys: vec!["late:2".into()],
        }))
        .await;
    assert_eq!(stuck.ms, poisoned.ms);
    // And doctor fails, naming the clock and the way out
    let run = pantheon(dir.path(), &[], &as_str(&cli(&["doctor"]))).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains("FAIL  clock"), "{run:?}");
    assert!(run.stdout.contains("pantheon recover-clock"), "{run:?}");

    // When a node stops while the clock is stuck
    a.stop().await;
    // Then it still dies and its keys move
    c.wait_event(WAIT, |e| {
        e.kind.name() == "died" && e.kind.node().is_some_and(|(n, _)| n.as_str() == "a")
    })
    .await;
    let mut moved = false;
    for _ in 0..100 {
        let map = keymap(&mut c).await;
        if map.len() == 202 && map.values().all(|o| o == "b") {
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(moved, "a's keys moved to b: {:?}", keymap(&mut c).await);

    // When the operator moves the log to a new generation
    let before_nodes: BTreeMap<String, String> = redis::cmd("HGETALL")
        .arg(c.layout.nodes())
        .query_async(&mut c.con)
        .await
        .unwrap();
    let before_keys = keymap(&mut c).await;
    let run = pantheon(dir.path(), &[], &as_str(&cli(&["recover-clock"]))).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("new generation"), "{run:?}");
    // Then the new log's ids follow Redis's clock again
    let now = server_ms(&mut c).await;
    let fresh = c
        .xadd(&LogEntry::new(Command::Assign {
            keys: vec!["after:1".into()],
        }))
        .await;
    assert!(fresh.ms <= now + 5_000, "{fresh} vs Redis at {now}");
    c.wait_applied(fresh, WAIT).await;
    let generation = c
        .wait_event(WAIT, |e| e.kind.name() == "generation_started")
        .await;
    assert!(
        matches!(&generation.kind, EventKind::GenerationStarted { previous, .. } if previous.ms == poisoned.ms)
    );
    // And every node and key is still there (plus the new key)
    let after_nodes: BTreeMap<String, String> = redis::cmd("HGETALL")
        .arg(c.layout.nodes())
        .query_async(&mut c.con)
        .await
        .unwrap();
    assert_eq!(
        after_nodes.keys().collect::<Vec<_>>(),
        before_nodes.keys().collect::<Vec<_>>()
    );
    let mut after_keys = keymap(&mut c).await;
    assert_eq!(after_keys.remove("after:1").as_deref(), Some("b"));
    assert_eq!(after_keys, before_keys);
    // And health keeps working in the new generation: a comes back
    a.restart().await;
    let revived = c
        .wait_event(WAIT, |e| {
            e.kind.name() == "revived" && e.kind.node().is_some_and(|(n, _)| n.as_str() == "a")
        })
        .await;
    assert!(revived.cause.ms < poisoned.ms, "{revived}");
    // And doctor passes, and a rebuild from the new generation's base matches
    assert!(
        doctor_passes(dir.path(), &as_str(&cli(&["doctor"])))
            .await
            .is_some(),
        "doctor passes after recover-clock"
    );
    let run = pantheon(dir.path(), &[], &as_str(&cli(&["rebuild", "--verify"]))).await;
    assert_eq!(run.code, 0, "{run:?}");
    // And the old log is kept
    let archived: u64 = redis::cmd("XLEN")
        .arg(format!(
            "{}:gen:{}",
            c.layout.log(),
            stuck_last(&generation)
        ))
        .query_async(&mut c.con)
        .await
        .unwrap();
    assert!(archived > 0);
    // The poisoned clock never reached back: a second recover is refused as unneeded
    let run = pantheon(dir.path(), &[], &as_str(&cli(&["recover-clock"]))).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("nothing to recover"), "{run:?}");
}

fn stuck_last(generation: &pantheon_domain::Event) -> EntryId {
    match &generation.kind {
        EventKind::GenerationStarted { previous, .. } => *previous,
        _ => unreachable!(),
    }
}

/// Runs `pantheon doctor` until it passes (bounded: 50 tries, 200 ms apart).
async fn doctor_passes(dir: &std::path::Path, args: &[&str]) -> Option<crate::cli::Run> {
    for _ in 0..50 {
        let run = pantheon(dir, &[], args).await;
        if run.code == 0 {
            return Some(run);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

fn as_str(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_clock_moves_unapplied_entries_to_the_new_log_in_order() {
    let mut c = TestCluster::start().await;
    let projector = c.spawn_projector("p");
    c.xadd(&join("a", "http://127.0.0.1:9/health")).await;
    // Its first probe answered (written as the prober writes it): it owns keys.
    let answered = LogEntry::new(Command::Probe(pantheon_domain::entry::ProbeResult {
        node: NodeId::new("a").unwrap(),
        epoch: 1,
        ok: true,
        status: Some(200),
        latency_ms: 1,
        error: None,
        prober: None,
    }));
    let first = c.xadd(&answered).await;
    c.wait_applied(first, WAIT).await;
    projector.stop().await;
    // Written while no projector runs: not applied yet
    c.xadd_raw_at(POISON, &[("type", "assign"), ("key", "k1")])
        .await;
    c.xadd(&LogEntry::new(Command::Assign {
        keys: vec!["k2".into()],
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let url = c.redis.url.clone();
    let name = c.name.clone();
    let run = pantheon(
        dir.path(),
        &[],
        &[
            "recover-clock",
            "--force",
            "--json",
            "--redis-url",
            &url,
            "--cluster",
            &name,
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let out: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(out["moved"], 2, "{out}");
    let log: Vec<(String, Option<String>)> = {
        let v: redis::Value = redis::cmd("XRANGE")
            .arg(c.layout.log())
            .arg("-")
            .arg("+")
            .query_async(&mut c.con)
            .await
            .unwrap();
        pantheon_store::stream::parse_entries(v)
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e.get("type").unwrap_or_default().to_owned(),
                    e.get("key").map(str::to_owned),
                )
            })
            .collect()
    };
    assert_eq!(
        log,
        [
            ("generation".to_owned(), None),
            ("assign".to_owned(), Some("k1".to_owned())),
            ("assign".to_owned(), Some("k2".to_owned())),
        ]
    );
    // A projector started now applies them once.
    let _projector = c.spawn_projector("p2");
    let mut applied = false;
    for _ in 0..200 {
        let map = keymap(&mut c).await;
        if map.contains_key("k1") && map.contains_key("k2") {
            applied = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(applied, "moved entries applied: {:?}", keymap(&mut c).await);
    let assigned = c
        .events()
        .await
        .iter()
        .filter(|e| e.kind.name() == "assigned")
        .count();
    assert_eq!(assigned, 2, "k1 and k2, each once");
}
