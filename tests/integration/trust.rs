//! Service entries need the service's proof (docs/adr/0011-service-entries-and-joining.md):
//! forged or replayed probes, prober sets, prober health and ticks written with a plain `XADD`
//! land in `rejected` and change nothing; the audit never counts them in a probe streak; a
//! joined node owns nothing until its first probe answers. Against a real Redis and the real
//! projector; the test writes service entries through the same attested append the prober
//! uses (`TestCluster::xadd`), and forgeries as any producer would (`xadd_raw_at`).

use std::time::Duration;

use pantheon_client::Pantheon;
use pantheon_client::audit::AuditFilter;
use pantheon_domain::entry::{Command, LogEntry, ProbeResult};
use pantheon_domain::{EntryId, NodeId};

use crate::cluster::TestCluster;

const WAIT: Duration = Duration::from_secs(20);

fn node(id: &str) -> NodeId {
    NodeId::new(id).unwrap()
}

fn join(id: &str, port: u16) -> LogEntry {
    LogEntry::new(Command::Join {
        node: node(id),
        url: format!("http://127.0.0.1:{port}/health"),
        weight: None,
        handoff: false,
    })
}

fn probe(id: &str, epoch: u64, ok: bool) -> LogEntry {
    LogEntry::new(Command::Probe(ProbeResult {
        node: node(id),
        epoch,
        ok,
        status: None,
        latency_ms: 1,
        error: None,
        prober: Some("prober-1".into()),
    }))
}

/// A producer's forgery: the entry's fields, appended with a plain `XADD`.
async fn forge(c: &mut TestCluster, entry: &LogEntry) -> EntryId {
    c.xadd_raw_at("*", &entry.encode()).await
}

async fn owners(c: &mut TestCluster) -> std::collections::BTreeMap<String, String> {
    redis::cmd("HGETALL")
        .arg(c.layout.keymap())
        .query_async(&mut c.con)
        .await
        .unwrap()
}

async fn rejection(c: &mut TestCluster, id: EntryId) -> Option<String> {
    let p = Pantheon::connect(&c.redis.url, &c.name).await.unwrap();
    p.rejection(id).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_replayed_service_entries_are_rejected_and_change_nothing() {
    let mut c = TestCluster::start().await;
    let projector = c.spawn_projector("p1");
    c.xadd(&join("a", 9000)).await;
    c.xadd(&join("b", 9001)).await;
    c.xadd(&probe("a", 1, true)).await;
    c.xadd(&probe("b", 2, true)).await;
    let keys: Vec<String> = (0..200).map(|i| format!("k{i}")).collect();
    let assigned = c.xadd(&LogEntry::new(Command::Assign { keys })).await;
    c.wait_applied(assigned, WAIT).await;
    let before = owners(&mut c).await;
    assert!(before.values().any(|o| o == "a") && before.values().any(|o| o == "b"));
    let events_before = c.events().await.len();

    // A real (attested) probe, copied field for field by a producer: a replay.
    let real = c.xadd(&probe("a", 1, true)).await;
    let copied = pantheon_store::log::entry(&mut c.con, &c.layout, real)
        .await
        .unwrap()
        .expect("the real probe is in the log");
    let mut forged = vec![c.xadd_raw_at("*", &copied.fields).await];
    for _ in 0..3 {
        forged.push(forge(&mut c, &probe("a", 1, false)).await);
    }
    let mut confirm = probe("a", 1, false).encode();
    confirm.push(("confirm", "1".into()));
    forged.push(c.xadd_raw_at("*", &confirm).await);
    forged.push(forge(&mut c, &LogEntry::new(Command::Probers { alive: vec![] })).await);
    let degraded = [("type", "prober_degraded"), ("prober", "prober-1")];
    forged.push(c.xadd_raw_at("*", &degraded).await);
    forged.push(forge(&mut c, &LogEntry::new(Command::Tick)).await);
    let last = *forged.last().unwrap();
    c.wait_applied(last, WAIT).await;

    for id in &forged {
        let reason = rejection(&mut c, *id).await;
        assert!(
            reason
                .as_deref()
                .is_some_and(|r| r.contains("written only by the service")),
            "{id}: {reason:?}"
        );
    }
    assert_eq!(owners(&mut c).await, before, "no key moved");
    let events = c.events().await;
    assert_eq!(
        events.len(),
        events_before,
        "no event: {:?}",
        &events[events_before..]
    );
    // The attest stream is the service's: a producer's `XADD` to it is an ordinary write the
    // ACL denies (tests/integration/roles.rs); here, an attested id is never a forged one.
    let everything = (EntryId::ZERO, EntryId::new(u64::MAX, u64::MAX));
    let attested =
        pantheon_store::attest::attested(&mut c.con, &c.layout, everything.0, everything.1)
            .await
            .unwrap();
    assert!(attested.contains(&real));
    assert!(forged.iter().all(|id| !attested.contains(id)));
    projector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_never_counts_a_forged_probe_in_a_streak() {
    let mut c = TestCluster::start().await;
    let projector = c.spawn_projector("p1");
    c.xadd(&join("a", 9000)).await;
    c.xadd(&join("b", 9001)).await;
    c.xadd(&probe("a", 1, true)).await;
    c.xadd(&probe("b", 2, true)).await;
    // Real failure, forged failure, two real failures: a dies on the third real one.
    let first = c.xadd(&probe("a", 1, false)).await;
    let forged = forge(&mut c, &probe("a", 1, false)).await;
    let second = c.xadd(&probe("a", 1, false)).await;
    let third = c.xadd(&probe("a", 1, false)).await;
    c.wait_applied(third, WAIT).await;

    let p = Pantheon::connect(&c.redis.url, &c.name).await.unwrap();
    let filter = AuditFilter {
        node: Some("a".into()),
        probes: true,
        ..AuditFilter::default()
    };
    let timeline = p.timeline(&filter).await.unwrap();
    let died = timeline
        .iter()
        .find(|i| i.kind == "died")
        .expect("a died on three real failures");
    assert_eq!(died.cause, third.to_string());
    let ids: Vec<&str> = died.probes.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(
        ids,
        [first.to_string(), second.to_string(), third.to_string()],
        "the streak is the real probes, never the forged {forged}"
    );
    assert!(
        died.probes
            .iter()
            .all(|p| p.prober.as_deref() == Some("prober-1"))
    );
    projector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joined_node_owns_nothing_until_its_first_probe_answers() {
    let mut c = TestCluster::start().await;
    let projector = c.spawn_projector("p1");
    c.xadd(&join("a", 9000)).await;
    c.xadd(&probe("a", 1, true)).await;
    c.xadd(&join("dead3", 1)).await;
    let keys: Vec<String> = (0..300).map(|i| format!("k{i}")).collect();
    let assigned = c.xadd(&LogEntry::new(Command::Assign { keys })).await;
    c.wait_applied(assigned, WAIT).await;
    assert!(owners(&mut c).await.values().all(|o| o == "a"));
    let p = Pantheon::connect(&c.redis.url, &c.name).await.unwrap();
    let dead3 = p.node_health("dead3").await.unwrap().expect("dead3");
    assert_eq!(dead3.state, "joining");
    // Failures while joining only count: no suspect, no death, still nothing owned.
    let mut last = assigned;
    for _ in 0..5 {
        last = c.xadd(&probe("dead3", 2, false)).await;
    }
    c.wait_applied(last, WAIT).await;
    let dead3 = p.node_health("dead3").await.unwrap().expect("dead3");
    assert_eq!((dead3.state.as_str(), dead3.fails), ("joining", 5));
    let names: Vec<&'static str> = c.events().await.iter().map(|e| e.kind.name()).collect();
    assert!(
        !names.contains(&"suspect") && !names.contains(&"died"),
        "{names:?}"
    );
    // Its first answer makes it alive, and it takes its share in the same commit.
    let ready = c.xadd(&probe("dead3", 2, true)).await;
    c.wait_applied(ready, WAIT).await;
    assert!(owners(&mut c).await.values().any(|o| o == "dead3"));
    let events = c.events().await;
    let ready_event = events
        .iter()
        .find(|e| {
            e.kind.name() == "ready" && e.kind.node().is_some_and(|(n, _)| n.as_str() == "dead3")
        })
        .expect("dead3's ready event");
    assert_eq!(ready_event.cause, ready);
    projector.stop().await;
}
