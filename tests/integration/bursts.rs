//! Correlated failures through a real projector and Redis: a burst of joins and deaths is
//! decided per node and rebalanced per commit, and lands on the state a rebuild folds; a mass
//! death past the panic threshold keeps the held nodes' keys, visibly.

use std::collections::BTreeMap;
use std::time::Duration;

use pantheon_domain::entry::{Command, LogEntry, ProbeResult};
use pantheon_domain::event::EventKind;
use pantheon_domain::health::ProbeError;
use pantheon_domain::{EntryId, NodeId, State};
use pantheon_projector::verify;

use crate::cluster::{TestCluster, assert_sets_match_keymap, read_models};

const WAIT: Duration = Duration::from_secs(60);

fn node(id: &str) -> NodeId {
    NodeId::new(id).unwrap()
}

fn join(i: usize) -> LogEntry {
    LogEntry::new(Command::Join {
        node: node(&format!("n{i}")),
        url: format!("http://127.0.0.1:{}/health", 20_000 + i),
        weight: None,
        handoff: false,
    })
}

fn failed_probe(i: usize) -> LogEntry {
    LogEntry::new(Command::Probe(ProbeResult {
        node: node(&format!("n{i}")),
        epoch: i as u64 + 1,
        ok: false,
        status: None,
        latency_ms: 1,
        error: Some(ProbeError::Refused),
        prober: Some("p1".into()),
    }))
}

/// Node `n<i>`'s first successful probe: a joined node owns keys only once it answered.
fn answered(i: usize) -> LogEntry {
    LogEntry::new(Command::Probe(ProbeResult {
        node: node(&format!("n{i}")),
        epoch: i as u64 + 1,
        ok: true,
        status: Some(200),
        latency_ms: 1,
        error: None,
        prober: Some("p1".into()),
    }))
}

fn assign(from: usize, to: usize) -> LogEntry {
    LogEntry::new(Command::Assign {
        keys: (from..to).map(|k| format!("user:{k}")).collect(),
    })
}

/// XADDs everything, back to back, before any projector runs; returns the ids.
async fn xadd_all(c: &mut TestCluster, entries: &[LogEntry]) -> Vec<EntryId> {
    let mut ids = Vec::with_capacity(entries.len());
    for e in entries {
        ids.push(c.xadd(e).await);
    }
    ids
}

fn count(events: &[pantheon_domain::Event], kind: &str) -> usize {
    events.iter().filter(|e| e.kind.name() == kind).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_joins_and_deaths_is_rebalanced_per_commit_and_matches_a_rebuild() {
    // Given 200 joins, keys, and 40 nodes failing three probes each, all in the log at once
    let mut c = TestCluster::start().await;
    let mut entries: Vec<LogEntry> = (0..200).map(join).collect();
    entries.extend((0..200).map(answered));
    entries.push(assign(0, 3000));
    for _ in 0..3 {
        entries.extend((0..40).map(failed_probe));
    }
    entries.push(assign(3000, 4000));
    let ids = xadd_all(&mut c, &entries).await;
    // When one projector folds it
    let p = c.spawn_projector("p1");
    c.wait_applied(*ids.last().unwrap(), WAIT).await;
    p.stop().await;
    // Then every node has its own events, keys moved in far fewer rebalances than changes
    let events = c.events().await;
    assert_eq!(count(&events, "joined"), 200);
    assert_eq!(count(&events, "died"), 40);
    let rebalances = count(&events, "rebalanced");
    assert!(
        (1..=10).contains(&rebalances),
        "{rebalances} rebalances for 240 changes of members"
    );
    // And the read models equal a fold of the same log entry by entry, and a rebuild
    let mut state = State::default();
    for (id, e) in ids.iter().zip(&entries) {
        state.apply(*id, e).unwrap();
    }
    let models = read_models(&mut c.con, &c.layout).await;
    assert_sets_match_keymap(&models);
    let keymap: BTreeMap<&str, &str> = models
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("keymap/")?, v.as_str())))
        .collect();
    assert_eq!(keymap.len(), 4000);
    for (key, owner) in state.keys().iter() {
        assert_eq!(keymap.get(key).copied(), owner.map(|o| o.as_str()), "{key}");
    }
    let v = verify::verify(&mut c.con, &c.layout, |_| {}).await.unwrap();
    assert!(v.matches(), "{v:?}");
    assert_eq!(v.live_checksum, Some(state.checksum()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mass_death_past_the_panic_threshold_keeps_the_held_nodes_keys() {
    // Given ten nodes with keys, and the projector running
    let mut c = TestCluster::start().await;
    let p = c.spawn_projector("p1");
    let mut entries: Vec<LogEntry> = (0..10).map(join).collect();
    entries.extend((0..10).map(answered));
    entries.push(assign(0, 2000));
    // When seven of them fail at once (three failed probes each)
    for _ in 0..3 {
        entries.extend((0..7).map(failed_probe));
    }
    let ids = xadd_all(&mut c, &entries).await;
    c.wait_applied(*ids.last().unwrap(), WAIT).await;
    p.stop().await;
    // Then all seven are dead, panic started naming the sixth, and n5 and n6 keep their keys
    let events = c.events().await;
    assert_eq!(count(&events, "died"), 7);
    let started: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::PanicStarted {
                node, dead, nodes, ..
            } => Some((node.to_string(), *dead, *nodes)),
            _ => None,
        })
        .collect();
    assert_eq!(started, [("n5".to_owned(), 6, 10)]);
    let models = read_models(&mut c.con, &c.layout).await;
    for held in ["n5", "n6"] {
        let record: serde_json::Value =
            serde_json::from_str(&models[&format!("nodes/{held}")]).unwrap();
        assert_eq!(record["state"], "dead");
        assert_eq!(record["held"], true);
        let owned = models
            .iter()
            .filter(|(k, v)| k.starts_with("keymap/") && v.as_str() == held)
            .count();
        assert!(owned > 0, "{held} lost its keys");
    }
    for gone in 0..5 {
        let name = format!("n{gone}");
        assert!(
            !models
                .iter()
                .any(|(k, v)| k.starts_with("keymap/") && *v == name),
            "{name} still owns keys"
        );
    }
    let v = verify::verify(&mut c.con, &c.layout, |_| {}).await.unwrap();
    assert!(v.matches(), "{v:?}");
}

fn probe(i: usize, ok: bool) -> LogEntry {
    let mut p = failed_probe(i);
    if let Command::Probe(r) = &mut p.command {
        r.ok = ok;
        r.status = ok.then_some(200);
        r.error = (!ok).then_some(ProbeError::Refused);
    }
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damped_node_returns_on_a_quiet_cluster_through_the_leaders_tick() {
    let mut c = TestCluster::start().await;
    // Quick damping: one failed probe kills, one success revives, penalties halve every
    // second and no node stays out longer than 2 s after it is stable.
    let policy = LogEntry::new(Command::Policy(pantheon_domain::policy::PolicyChange {
        fall: Some(1),
        rise: Some(1),
        damp_half_life: Some(1),
        damp_max_suppress: Some(2),
        ..Default::default()
    }));
    // The prober set is known (none), so the leader's prober watchdog writes nothing.
    let probers = LogEntry::new(Command::Probers { alive: Vec::new() });
    let mut entries = vec![policy, probers, join(0), join(1), join(2)];
    entries.extend((0..3).map(answered));
    entries.push(assign(0, 300));
    // Two deaths of n0 within a half-life damp it; it is healthy again at the end.
    entries.extend([
        probe(0, false),
        probe(0, true),
        probe(0, false),
        probe(0, true),
    ]);
    let ids = xadd_all(&mut c, &entries).await;
    let mut config = c.config("p");
    config.prober_watchdog = Some(Duration::from_millis(200));
    let _projector = c.spawn(config);
    c.wait_applied(*ids.last().unwrap(), WAIT).await;
    let events = c.events().await;
    assert_eq!(count(&events, "damped"), 1, "n0 is damped");
    // Nothing else is written: only the leader's tick can carry log time past the reuse time.
    let undamped = c
        .wait_event(Duration::from_secs(20), |e| e.kind.name() == "undamped")
        .await;
    let ticks = c.log_entries("tick").await;
    assert!(!ticks.is_empty(), "a tick was logged");
    assert_eq!(undamped.cause, ticks[0].id, "the tick undamped it");
    // And n0 owns keys again.
    let mut owns = false;
    for _ in 0..100 {
        let models = read_models(&mut c.con, &c.layout).await;
        owns = models
            .iter()
            .any(|(k, v)| k.starts_with("keymap/") && v == "n0");
        if owns {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(owns, "n0 owns keys again");
}
