//! The prober against real HTTP nodes on loopback and a real projector: stopped, hanging,
//! failing and slow nodes turn suspect/dead/revived/recovered in the events stream with the
//! right epochs; replicas share nodes without double counting and take over each other's.

use std::time::Duration;

use pantheon_domain::entry::{Command, LogEntry};
use pantheon_domain::event::EventKind;
use pantheon_domain::{Event, NodeId};

use crate::cluster::TestCluster;
use crate::nodes::{Mode, TestNode};

const WAIT: Duration = Duration::from_secs(15);

fn is(kind: &'static str, node: &'static str) -> impl Fn(&Event) -> bool {
    move |e| e.kind.name() == kind && e.kind.node().is_some_and(|(n, _)| n.as_str() == node)
}

async fn join(c: &mut TestCluster, id: &str, url: &str) -> pantheon_domain::EntryId {
    let entry = LogEntry::new(Command::Join {
        node: NodeId::new(id).unwrap(),
        url: url.to_owned(),
        weight: None,
        handoff: false,
    });
    let at = c.xadd(&entry).await;
    c.wait_applied(at, WAIT).await;
    at
}

/// Node events of one node, as "kind@epoch".
async fn story(c: &mut TestCluster, node: &str) -> Vec<String> {
    c.events()
        .await
        .iter()
        .filter_map(|e| {
            e.kind
                .node()
                .filter(|(n, _)| n.as_str() == node)
                .map(|(_, ep)| format!("{}@{ep}", e.kind.name()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_dies_then_revives_and_a_rejoin_starts_a_new_epoch() {
    let mut c = TestCluster::start().await;
    let _projector = c.spawn_projector("p");
    let mut a = TestNode::start().await;
    let b = TestNode::start().await;
    join(&mut c, "a", &a.url()).await;
    join(&mut c, "b", &b.url()).await;
    let prober = c.spawn_prober(c.prober_config("prober-1"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(a.hits() > 0, "node a was never probed");

    a.stop().await;
    let died = c.wait_event(WAIT, is("died", "a")).await;
    assert!(
        matches!(
            died.kind,
            EventKind::Died {
                epoch: 1,
                fails: 3,
                ..
            }
        ),
        "{died}"
    );
    let failures = c.log_entries("probe").await;
    assert!(
        failures
            .iter()
            .any(|e| e.get("node") == Some("a") && e.get("error") == Some("refused"))
    );

    a.restart().await;
    c.wait_event(WAIT, is("revived", "a")).await;
    assert_eq!(
        story(&mut c, "a").await,
        ["joined@1", "ready@1", "suspect@1", "died@1", "revived@1"]
    );
    assert!(
        story(&mut c, "b").await == ["joined@2", "ready@2"],
        "the healthy node was left alone"
    );

    // A re-join is a new epoch; results for the old epoch no longer count.
    join(&mut c, "a", &a.url()).await;
    c.wait_event(
        WAIT,
        |e| matches!(&e.kind, EventKind::Ready { node, epoch: 3, .. } if node.as_str() == "a"),
    )
    .await;
    a.stop().await;
    let died = c
        .wait_event(
            WAIT,
            |e| matches!(&e.kind, EventKind::Died { node, epoch: 3, .. } if node.as_str() == "a"),
        )
        .await;
    assert!(died.at() > 0);
    prober.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_failing_and_slow_nodes_are_judged_by_their_answers() {
    let mut c = TestCluster::start().await;
    let _projector = c.spawn_projector("p");
    let hang = TestNode::start().await;
    let error = TestNode::start().await;
    let slow = TestNode::start().await;
    join(&mut c, "hang", &hang.url()).await;
    join(&mut c, "error", &error.url()).await;
    join(&mut c, "slow", &slow.url()).await;
    let prober = c.spawn_prober(c.prober_config("prober-1"));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    hang.set(Mode::Hang);
    error.set(Mode::Error);
    slow.set_slow(200); // within the 500 ms timeout: healthy
    c.wait_event(WAIT, is("died", "hang")).await;
    c.wait_event(WAIT, is("died", "error")).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(story(&mut c, "slow").await, ["joined@3", "ready@3"]);
    let probes = c.log_entries("probe").await;
    let kinds = |node: &str| -> Vec<String> {
        probes
            .iter()
            .filter(|e| e.get("node") == Some(node))
            .filter_map(|e| e.get("error").map(str::to_owned))
            .collect()
    };
    assert!(kinds("hang").iter().all(|k| k == "timeout") && !kinds("hang").is_empty());
    assert!(kinds("error").iter().all(|k| k == "status") && !kinds("error").is_empty());
    assert!(
        probes
            .iter()
            .any(|e| e.get("node") == Some("error") && e.get("status") == Some("500"))
    );

    // The hanging node comes back: it revives. A single hiccup only makes a node suspect.
    hang.set(Mode::Healthy);
    c.wait_event(WAIT, is("revived", "hang")).await;
    slow.set_slow(900); // beyond the timeout once...
    c.wait_event(WAIT, is("suspect", "slow")).await;
    slow.set(Mode::Healthy); // ...then fine again
    c.wait_event(WAIT, is("recovered", "slow")).await;
    assert_eq!(
        story(&mut c, "slow").await[..4],
        ["joined@3", "ready@3", "suspect@3", "recovered@3"]
    );
    prober.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_split_the_nodes_and_never_double_count_failures() {
    let mut c = TestCluster::start().await;
    let _projector = c.spawn_projector("p");
    let mut nodes = Vec::new();
    for i in 0..8 {
        let n = TestNode::start().await;
        join(&mut c, &format!("n{i}"), &n.url()).await;
        nodes.push(n);
    }
    let p1 = c.spawn_prober(c.prober_config("prober-1"));
    let p2 = c.spawn_prober(c.prober_config("prober-2"));
    tokio::time::sleep(Duration::from_millis(3000)).await;
    for n in &mut nodes {
        n.stop().await;
    }
    for i in 0..8 {
        let node = format!("n{i}");
        let died = c
            .wait_event(WAIT, move |e| {
                e.kind.name() == "died" && e.kind.node().is_some_and(|(n, _)| n.as_str() == node)
            })
            .await;
        // fall - 1 = 2 regular failures and the confirmation, or more regular failures if
        // the owner's next probes land before the confirmation.
        assert!(
            matches!(died.kind, EventKind::Died { fails: 3..=6, .. }),
            "{died}"
        );
    }
    let probes = c.log_entries("probe").await;
    let mut by_prober = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..8 {
        let node = format!("n{i}");
        let mine: Vec<_> = probes
            .iter()
            .filter(|e| e.get("node") == Some(node.as_str()))
            .collect();
        // Regular probes (`confirm=0`) come from the owner alone; with two replicas the
        // confirmations (`confirm=1`) come from the other one (ADR 0008).
        type Entries<'a> = Vec<&'a pantheon_store::RawEntry>;
        let (confirmations, regular): (Entries, Entries) = mine
            .into_iter()
            .partition(|e| e.get("confirm") == Some("1"));
        // Failures: a node's first answer may come from the replica that owned every node
        // before the second one registered.
        let probers: std::collections::BTreeSet<_> = regular
            .iter()
            .filter(|e| e.get("ok") == Some("0"))
            .filter_map(|e| e.get("prober"))
            .collect();
        assert_eq!(probers.len(), 1, "{node} failures came from {probers:?}");
        let confirmers: std::collections::BTreeSet<_> = confirmations
            .iter()
            .filter_map(|e| e.get("prober"))
            .collect();
        assert!(
            !confirmations.is_empty() && confirmers.is_disjoint(&probers),
            "{node}: confirmed by {confirmers:?}, owned by {probers:?}"
        );
        // Up to its death the owner logged at least fall - 1 = 2 failures (a few more if the
        // confirmation came late); the other replica never sent regular probes of it.
        let died_cause = c
            .events()
            .await
            .iter()
            .find(|e| {
                e.kind.name() == "died" && e.kind.node().is_some_and(|(n, _)| n.as_str() == node)
            })
            .unwrap()
            .cause;
        let failures = regular
            .iter()
            .filter(|e| e.get("ok") == Some("0") && e.id <= died_cause)
            .count();
        assert!(
            (2..=5).contains(&failures),
            "{node}: {failures} regular failures logged before death"
        );
        *by_prober
            .entry(probers.into_iter().next().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(by_prober.len(), 2, "both replicas own nodes: {by_prober:?}");
    p1.stop().await;
    p2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_replica_hands_its_nodes_to_the_other() {
    let mut c = TestCluster::start().await;
    let _projector = c.spawn_projector("p");
    let mut nodes = Vec::new();
    for i in 0..6 {
        let n = TestNode::start().await;
        join(&mut c, &format!("n{i}"), &n.url()).await;
        nodes.push(n);
    }
    let p1 = c.spawn_prober(c.prober_config("prober-1"));
    let mut p2 = c.spawn_prober(c.prober_config("prober-2"));
    tokio::time::sleep(Duration::from_millis(3000)).await;
    // Crash prober-2 (no deregistration): its registration must expire, then prober-1 takes over.
    if let Some(h) = p2.handle.take() {
        h.abort();
    }
    for n in &mut nodes {
        n.stop().await;
    }
    for i in 0..6 {
        let node = format!("n{i}");
        c.wait_event(WAIT, move |e| {
            e.kind.name() == "died" && e.kind.node().is_some_and(|(n, _)| n.as_str() == node)
        })
        .await;
    }
    let probes = c.log_entries("probe").await;
    let late: std::collections::BTreeSet<_> = probes
        .iter()
        .filter(|e| e.get("ok") == Some("0"))
        .filter_map(|e| e.get("prober"))
        .collect();
    assert_eq!(
        late.into_iter().collect::<Vec<_>>(),
        ["prober-1"],
        "only the surviving replica reported the failures"
    );
    p1.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_addresses_are_refused_by_policy_and_no_prober_is_an_event() {
    let mut c = TestCluster::start().await;
    let mut config = c.config("p");
    config.prober_watchdog = Some(Duration::from_millis(200));
    let _projector = c.spawn(config);
    join(&mut c, "imds", "http://169.254.169.254/latest/meta-data/").await;
    let prober = c.spawn_prober(c.prober_config("prober-1"));
    // It never answers, so it stays joining (owning nothing), its failures counted.
    let deadline = tokio::time::Instant::now() + WAIT;
    while c.log_entries("probe").await.len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "imds never probed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let names: Vec<&str> = c.events().await.iter().map(|e| e.kind.name()).collect();
    assert!(
        !names.contains(&"ready") && !names.contains(&"died"),
        "{names:?}"
    );
    let probes = c.log_entries("probe").await;
    assert!(
        probes.iter().all(|e| e.get("error") == Some("policy")),
        "refused by policy, never fetched"
    );
    let up = c
        .wait_event(WAIT, |e| e.kind.name() == "probers_changed")
        .await;
    assert!(matches!(&up.kind, EventKind::ProbersChanged { alive } if alive == &["prober-1"]));
    prober.stop().await;
    let down = c.wait_event(WAIT, |e| e.kind.name() == "no_prober").await;
    assert!(down.cause > up.cause);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_in_flight_probes_at_most_the_grace_period_and_deregisters() {
    let mut c = TestCluster::start().await;
    let _projector = c.spawn_projector("p");
    let hang = TestNode::start().await;
    hang.set(Mode::Hang);
    join(&mut c, "hang", &hang.url()).await;
    let mut config = c.prober_config("prober-1");
    config.timeout = Duration::from_secs(30); // a probe that would outlive the grace period
    config.grace = Duration::from_millis(300);
    let prober = c.spawn_prober(config);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(hang.hits() > 0, "the probe is in flight");
    let started = tokio::time::Instant::now();
    prober.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        started.elapsed()
    );
    let registered: Vec<String> = redis::cmd("HKEYS")
        .arg(c.layout.probers())
        .query_async(&mut c.con)
        .await
        .unwrap();
    assert!(registered.is_empty(), "still registered: {registered:?}");
    assert!(
        c.log_entries("probe").await.is_empty(),
        "a cancelled probe is not reported as a result"
    );
}
