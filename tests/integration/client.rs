//! The Rust client against a real Redis and a real projector: writes and read-your-writes
//! (applied, rejected with the projector's reason, refused before sending, timed out), the
//! seed's story through the client's reads and its local `locate`, and consumer-group
//! subscriptions (ack, redelivery to another consumer, dead letters, resume).

use std::collections::BTreeMap;
use std::time::Duration;

use pantheon_client::{
    ClientError, Delivery, EntryId, EventKind, JoinOp, Pantheon, Payload, Start, SubscribeOptions,
    Subscription,
};
use pantheon_domain::NodeId;
use pantheon_domain::entry::{Command, LogEntry, ProbeResult};
use pantheon_domain::placement::Strategy;
use pantheon_domain::policy::PolicyChange;
use pantheon_store::stream;
use tokio::time::Instant;

use crate::cluster::TestCluster;

const WAIT: Duration = Duration::from_secs(20);

/// A client with a short ring refresh, so tests see ring changes quickly.
async fn client(c: &TestCluster) -> Pantheon {
    Pantheon::builder(&c.redis.url, &c.name)
        .ring_refresh(Duration::from_millis(50))
        .connect()
        .await
        .unwrap()
}

fn failed_probe(node: &str, epoch: u64) -> LogEntry {
    LogEntry::new(Command::Probe(ProbeResult {
        node: NodeId::new(node).unwrap(),
        epoch,
        ok: false,
        status: None,
        latency_ms: 1,
        error: None,
        prober: None,
    }))
}

/// The first successful probe of `node` (in `epoch`), as the prober appends it: a joined node
/// owns keys only once it answered.
async fn answer(c: &mut TestCluster, node: &str, epoch: u64) -> pantheon_client::EntryId {
    let mut probe = failed_probe(node, epoch);
    if let Command::Probe(p) = &mut probe.command {
        p.ok = true;
    }
    c.xadd(&probe).await
}

async fn next_within(sub: &mut Subscription, within: Duration) -> Delivery {
    tokio::time::timeout(within, sub.next())
        .await
        .expect("a delivery in time")
        .expect("next")
}

/// The (event name, node) of a node event.
fn node_event(d: &Delivery) -> Option<(String, String)> {
    let e = d.event()?;
    let (node, _) = e.kind.node()?;
    Some((e.kind.name().to_owned(), node.to_string()))
}

async fn log_len(c: &mut TestCluster) -> u64 {
    redis::cmd("XLEN")
        .arg(c.layout.log())
        .query_async(&mut c.con)
        .await
        .unwrap()
}

async fn pending_count(c: &mut TestCluster, group: &str) -> u64 {
    let summary: (u64, Option<String>, Option<String>, redis::Value) = redis::cmd("XPENDING")
        .arg(c.layout.events())
        .arg(group)
        .query_async(&mut c.con)
        .await
        .unwrap();
    summary.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_checked_then_applied_or_rejected_with_the_projectors_reason() {
    let mut c = TestCluster::start().await;
    let _projector = c.spawn_projector("p1");
    let p = client(&c).await;

    let id = p
        .join(JoinOp::new("a", "http://localhost", 8080, "health"))
        .await
        .unwrap();
    let applied = p.wait_applied(id, WAIT).await.unwrap();
    assert_eq!(applied.id, id);
    assert!(applied.checkpoint >= id);
    let a = p.node_health("a").await.unwrap().expect("a joined");
    assert_eq!(a.url, "http://localhost:8080/health");
    assert_eq!((a.state.as_str(), a.weight, a.epoch), ("joining", 1, 1));
    let answered = answer(&mut c, "a", 1).await;
    p.wait_applied(answered, WAIT).await.unwrap();
    let a = p.node_health("a").await.unwrap().expect("a joined");
    assert_eq!(a.state, "alive");

    // Applied by rejecting: the reason is the projector's.
    let id = p.leave("ghost").await.unwrap();
    let err = p.wait_applied(id, WAIT).await.unwrap_err();
    match &err {
        ClientError::Rejected {
            id: rejected,
            reason,
        } => {
            assert_eq!(*rejected, id);
            assert_eq!(reason, "unknown node \"ghost\"");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(err.rejection_reason(), Some("unknown node \"ghost\""));
    assert_eq!(
        p.rejection(id).await.unwrap().as_deref(),
        Some("unknown node \"ghost\"")
    );

    // Refused before sending, with the decoder's own message; nothing reaches the log.
    let before = log_len(&mut c).await;
    let decoder_says = LogEntry::decode(&[("type", "leave"), ("node", "a b")])
        .unwrap_err()
        .to_string();
    let err = p.leave("a b").await.unwrap_err();
    assert_eq!(err.to_string(), format!("invalid input: {decoder_says}"));
    let refused = [
        p.set_weight("a", 0).await,
        p.set_weight("a", 101).await,
        p.drain("").await,
        p.join(JoinOp::new("b", "localhost", 8080, "health")).await,
        p.join(JoinOp::new("b", "http://localhost", 0, "health"))
            .await,
        p.join_url("b", "ftp://localhost/health", None).await,
        p.join_url("b", "http://localhost/health", Some(0)).await,
    ];
    for r in refused {
        assert!(matches!(r, Err(ClientError::Invalid(_))), "{r:?}");
    }
    let bad_keys = p.distribute(["fine", ""]).await;
    assert!(
        matches!(bad_keys, Err(ClientError::Invalid(_))),
        "{bad_keys:?}"
    );
    assert_eq!(log_len(&mut c).await, before);
    assert!(p.distribute(Vec::<String>::new()).await.unwrap().is_empty());

    // The other writes land in the read models.
    let id = p.set_weight("a", 3).await.unwrap();
    p.wait_applied(id, WAIT).await.unwrap();
    assert_eq!(p.node_health("a").await.unwrap().unwrap().weight, 3);
    let id = p.drain("a").await.unwrap();
    p.wait_applied(id, WAIT).await.unwrap();
    assert_eq!(p.node_health("a").await.unwrap().unwrap().state, "draining");
    let id = p.undrain("a").await.unwrap();
    p.wait_applied(id, WAIT).await.unwrap();
    assert_eq!(p.node_health("a").await.unwrap().unwrap().state, "alive");
    let id = p
        .join_url("b", "https://10.0.0.7:8443/healthz", Some(2))
        .await
        .unwrap();
    p.wait_applied(id, WAIT).await.unwrap();
    let b = p.node_health("b").await.unwrap().unwrap();
    assert_eq!(
        (b.url.as_str(), b.weight),
        ("https://10.0.0.7:8443/healthz", 2)
    );
    let id = p.leave("b").await.unwrap();
    p.wait_applied(id, WAIT).await.unwrap();
    assert!(p.node_health("b").await.unwrap().is_none());

    // Every write carried its own command id, for de-duplication of retries.
    let reply: redis::Value = redis::cmd("XRANGE")
        .arg(c.layout.log())
        .arg("-")
        .arg("+")
        .query_async(&mut c.con)
        .await
        .unwrap();
    // The client's writes; the probe the test wrote as the prober carries none.
    let entries: Vec<_> = stream::parse_entries(reply)
        .unwrap()
        .into_iter()
        .filter(|e| e.get("type") != Some("probe"))
        .collect();
    let mut cmds: Vec<&str> = entries.iter().filter_map(|e| e.get("cmd")).collect();
    assert_eq!(cmds.len(), entries.len());
    assert!(cmds.iter().all(|c| c.starts_with("rs-")));
    cmds.sort_unstable();
    cmds.dedup();
    assert_eq!(cmds.len(), entries.len(), "command ids repeat");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_without_a_projector_times_out_with_a_hint() {
    let c = TestCluster::start().await;
    let p = client(&c).await;
    let id = p.leave("a").await.unwrap();
    let started = Instant::now();
    let err = p
        .wait_applied(id, Duration::from_millis(300))
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert!(
        matches!(
            err,
            ClientError::Timeout {
                last_applied: None,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("is a projector running for cluster"),
        "{err}"
    );
    assert!(waited >= Duration::from_millis(300) && waited < Duration::from_secs(3));

    // Once a projector runs, the same entry's outcome is known.
    let _projector = c.spawn_projector("p1");
    let err = p.wait_applied(id, WAIT).await.unwrap_err();
    assert_eq!(err.rejection_reason(), Some("unknown node \"a\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_survives_a_dropped_connection() {
    let mut c = TestCluster::start().await;
    let p = client(&c).await;
    p.join_url("a", "http://127.0.0.1:9/health", None)
        .await
        .unwrap();
    // Drop every connection but the test's own: the client's goes with them.
    let killed: u64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query_async(&mut c.con)
        .await
        .unwrap();
    assert!(killed >= 1);
    let id = p.leave("a").await.unwrap();
    let _projector = c.spawn_projector("p1");
    p.wait_applied(id, WAIT).await.unwrap();
    assert!(p.nodes().await.unwrap().is_empty());
}

/// Reads the assignment back through every client read and checks they agree: the per-node
/// sets partition the keys, `key_node` matches them, and so does local placement.
async fn assert_reads_agree(p: &Pantheon, nodes: &[&str], keys: &[String]) {
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    for n in nodes {
        for k in p.node_keys(n).await.unwrap() {
            assert!(
                owner.insert(k.clone(), (*n).to_owned()).is_none(),
                "{k} twice"
            );
        }
    }
    assert_eq!(owner.len(), keys.len(), "every key has exactly one owner");
    let ring = p.ring().await.unwrap();
    for k in keys {
        let want = owner.get(k).map(String::as_str);
        assert_eq!(ring.owner(k).map(NodeId::as_str), want, "ring owner of {k}");
    }
    // Round trips: sample.
    for k in keys.iter().step_by(97) {
        let want = owner.get(k).cloned();
        assert_eq!(p.key_node(k).await.unwrap().map(|n| n.to_string()), want);
        assert_eq!(p.locate(k).await.unwrap().map(|n| n.to_string()), want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_story_three_nodes_keys_a_death_and_a_leave() {
    let mut c = TestCluster::start().await;
    let _projector = c.spawn_projector("p1");
    let p = client(&c).await;
    assert!(p.locate("user:1").await.unwrap().is_none(), "no ring yet");

    let nodes = ["node-1", "node-2", "node-3"];
    for (i, n) in nodes.iter().enumerate() {
        p.join(JoinOp::new(
            n,
            "http://localhost",
            8080 + i as u16,
            "health",
        ))
        .await
        .unwrap();
        answer(&mut c, n, i as u64 + 1).await;
    }
    let keys: Vec<String> = (0..25_000).map(|i| format!("user:{i}")).collect();
    let ids = p.distribute(keys.clone()).await.unwrap();
    assert_eq!(ids.len(), 3, "batches of at most 10,000 keys");
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    p.wait_applied(*ids.last().unwrap(), WAIT).await.unwrap();
    let v1 = p.refresh_ring().await.unwrap().version();
    assert_eq!(p.ring().await.unwrap().members().len(), 3);
    assert_reads_agree(&p, &nodes, &keys).await;
    for n in nodes {
        assert!(!p.node_keys(n).await.unwrap().is_empty(), "{n} owns keys");
    }
    let listed: Vec<String> = p
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.node)
        .collect();
    assert_eq!(listed, nodes);

    // node-2 (second to join: epoch 2) fails three probes: dead with the default policy.
    let mut last = EntryId::ZERO;
    for _ in 0..3 {
        last = c.xadd(&failed_probe("node-2", 2)).await;
    }
    p.wait_applied(last, WAIT).await.unwrap();
    assert_eq!(
        p.node_health("node-2").await.unwrap().unwrap().state,
        "dead"
    );
    assert!(p.node_keys("node-2").await.unwrap().is_empty());
    // No refresh_ring: the cache notices the new version once its interval has passed.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ring = p.ring().await.unwrap();
    assert!(ring.version() > v1);
    assert_eq!(ring.members().len(), 2);
    assert_reads_agree(&p, &nodes, &keys).await;

    let id = p.leave("node-3").await.unwrap();
    p.wait_applied(id, WAIT).await.unwrap();
    p.refresh_ring().await.unwrap();
    assert_reads_agree(&p, &["node-1"], &keys).await;
    assert_eq!(
        p.key_node("user:1").await.unwrap().unwrap().as_str(),
        "node-1"
    );
    let listed: Vec<(String, String)> = p
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| (n.node, n.state))
        .collect();
    assert_eq!(
        listed,
        [
            ("node-1".into(), "alive".into()),
            ("node-2".into(), "dead".into())
        ]
    );
}

/// Calls of `command` Redis served so far (`INFO commandstats`).
async fn calls_of(c: &mut TestCluster, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut c.con)
        .await
        .unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix)?.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routers_token_follows_the_owner_and_the_owners_tokens_are_read_once_per_change() {
    let mut c = TestCluster::start().await;
    let _projector = c.spawn_projector("p1");
    let p = client(&c).await;
    for (i, n) in ["node-1", "node-2"].iter().enumerate() {
        p.join(JoinOp::new(
            n,
            "http://localhost",
            8080 + i as u16,
            "health",
        ))
        .await
        .unwrap();
        answer(&mut c, n, i as u64 + 1).await;
    }
    let keys: Vec<String> = (0..50).map(|i| format!("user:{i}")).collect();
    let ids = p.distribute(keys.clone()).await.unwrap();
    p.wait_applied(*ids.last().unwrap(), WAIT).await.unwrap();
    assert!(p.key_node_with_token("nobody").await.unwrap().is_none());

    // Each answer is the key map's owner with the owner's own token.
    let check = async |p: &Pantheon| -> BTreeMap<String, u64> {
        let mut tokens = BTreeMap::new();
        for k in &keys {
            let (owner, token) = p.key_node_with_token(k).await.unwrap().unwrap();
            assert_eq!(Some(&owner), p.key_node(k).await.unwrap().as_ref());
            let member = p.member_token(&owner).await.unwrap();
            assert_eq!(token, member, "{k} on {owner}");
            let route = p.key_route(k).await.unwrap().unwrap();
            assert_eq!((route.owner, route.token), (owner.clone(), token));
            tokens.insert(owner.to_string(), token.unwrap());
        }
        tokens
    };
    let before = check(&p).await;
    assert_eq!(before.len(), 2);

    // 100 routes more read the `tokens` field no more: one HMGET each (the ring's version and
    // clock), not two.
    let hmget = calls_of(&mut c, "hmget").await;
    for k in keys.iter().cycle().take(100) {
        p.key_node_with_token(k).await.unwrap();
    }
    assert_eq!(calls_of(&mut c, "hmget").await - hmget, 100);

    // node-2 dies: its keys move to node-1, and node-2's token is gone from the answers; it
    // comes back: a new, larger token for what it owns again.
    let mut last = EntryId::ZERO;
    for _ in 0..3 {
        last = c.xadd(&failed_probe("node-2", 2)).await;
    }
    p.wait_applied(last, WAIT).await.unwrap();
    let dead = check(&p).await;
    assert_eq!(dead.keys().collect::<Vec<_>>(), ["node-1"]);
    for _ in 0..pantheon_domain::policy::Policy::DEFAULT_RISE {
        last = answer(&mut c, "node-2", 2).await;
    }
    p.wait_applied(last, WAIT).await.unwrap();
    assert_eq!(
        p.node_health("node-2").await.unwrap().unwrap().state,
        "alive"
    );
    let again = check(&p).await;
    assert!(
        again["node-2"] > before["node-2"],
        "{again:?} after {before:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locate_follows_weights_and_a_strategy_change() {
    let mut c = TestCluster::start().await;
    let _projector = c.spawn_projector("p1");
    let p = client(&c).await;
    let nodes = ["a", "b", "c"];
    for (i, n) in nodes.into_iter().enumerate() {
        p.join_url(n, &format!("http://{n}.local/health"), None)
            .await
            .unwrap();
        answer(&mut c, n, i as u64 + 1).await;
    }
    let keys: Vec<String> = (0..3000).map(|i| format!("k{i}")).collect();
    let ids = p.distribute(keys.clone()).await.unwrap();
    p.wait_applied(ids[0], WAIT).await.unwrap();
    p.refresh_ring().await.unwrap();
    assert_reads_agree(&p, &nodes, &keys).await;

    let id = p.set_weight("b", 4).await.unwrap();
    p.wait_applied(id, WAIT).await.unwrap();
    p.refresh_ring().await.unwrap();
    assert_reads_agree(&p, &nodes, &keys).await;

    let id = c
        .xadd(&LogEntry::new(Command::Policy(PolicyChange {
            strategy: Some(Strategy::Rendezvous),
            ..PolicyChange::default()
        })))
        .await;
    p.wait_applied(id, WAIT).await.unwrap();
    let ring = p.refresh_ring().await.unwrap();
    assert_eq!(ring.strategy(), Strategy::Rendezvous);
    assert_reads_agree(&p, &nodes, &keys).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_delivers_events_and_ack_clears_them() {
    let mut c = TestCluster::start().await;
    let _projector = c.spawn_projector("p1");
    let p = client(&c).await;
    let opts = SubscribeOptions {
        start: Start::FromBeginning,
        block: Duration::from_millis(200),
        ..SubscribeOptions::default()
    };
    let mut sub = p.subscribe("audit", "c1", opts.clone()).await.unwrap();
    p.join_url("a", "http://a.local/health", None)
        .await
        .unwrap();
    p.join_url("b", "http://b.local/health", None)
        .await
        .unwrap();
    let id = p.leave("a").await.unwrap();
    p.wait_applied(id, WAIT).await.unwrap();

    let mut seen = Vec::new();
    while seen.len() < 3 {
        let d = next_within(&mut sub, WAIT).await;
        assert_eq!(d.deliveries, 1);
        if let Some(e) = node_event(&d) {
            seen.push(e);
        }
        assert!(sub.ack(d.id).await.unwrap());
        assert!(!sub.ack(d.id).await.unwrap(), "a second ack finds nothing");
    }
    let want: Vec<(String, String)> = [("joined", "a"), ("joined", "b"), ("left", "a")]
        .iter()
        .map(|(k, n)| ((*k).to_owned(), (*n).to_owned()))
        .collect();
    assert_eq!(seen, want);
    assert_eq!(pending_count(&mut c, "audit").await, 0);

    // An entry that is not an event is delivered raw, and the subscription goes on.
    let _: String = redis::cmd("XADD")
        .arg(c.layout.events())
        .arg("*")
        .arg("type")
        .arg("exploded")
        .query_async(&mut c.con)
        .await
        .unwrap();
    let d = next_within(&mut sub, WAIT).await;
    match &d.payload {
        Payload::Raw { fields, error } => {
            assert_eq!(fields[0], (b"type".to_vec(), b"exploded".to_vec()));
            assert!(!error.is_empty());
        }
        Payload::Event(e) => panic!("expected a raw entry, got {e:?}"),
    }
    sub.ack(d.id).await.unwrap();

    // A new group from now on sees only what comes next.
    let mut late = p
        .subscribe(
            "late",
            "c1",
            SubscribeOptions {
                start: Start::FromNow,
                ..opts
            },
        )
        .await
        .unwrap();
    p.join_url("c", "http://c.local/health", None)
        .await
        .unwrap();
    let d = next_within(&mut late, WAIT).await;
    assert!(
        matches!(&d.event().unwrap().kind, EventKind::Joined { node, .. } if node.as_str() == "c"),
        "{d:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_stuck_at_one_consumer_is_redelivered_to_another_after_min_idle() {
    let mut c = TestCluster::start().await;
    let _projector = c.spawn_projector("p1");
    let p = client(&c).await;
    let opts = SubscribeOptions {
        start: Start::FromBeginning,
        min_idle: Duration::from_millis(200),
        block: Duration::from_millis(100),
        ..SubscribeOptions::default()
    };
    let mut first = p.subscribe("workers", "w1", opts.clone()).await.unwrap();
    let id = p
        .join_url("x", "http://x.local/health", None)
        .await
        .unwrap();
    p.wait_applied(id, WAIT).await.unwrap();
    // Taken before the read, so it is no later than Redis's delivery time.
    let before_delivery = Instant::now();
    let got = next_within(&mut first, WAIT).await;
    assert_eq!(got.deliveries, 1);

    // w1 never acks (it "crashed"); w2 claims the entry once it has been idle long enough.
    let mut second = p.subscribe("workers", "w2", opts).await.unwrap();
    let again = next_within(&mut second, WAIT).await;
    assert!(before_delivery.elapsed() >= Duration::from_millis(200));
    assert_eq!(again.id, got.id);
    assert_eq!(again.deliveries, 2);
    assert_eq!(again.event(), got.event());
    assert!(second.ack(again.id).await.unwrap());
    assert!(!first.ack(got.id).await.unwrap(), "already acked by w2");
    assert_eq!(pending_count(&mut c, "workers").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_never_acked_is_dead_lettered_after_max_deliveries() {
    let mut c = TestCluster::start().await;
    let _projector = c.spawn_projector("p1");
    let p = client(&c).await;
    let mut sub = p
        .subscribe(
            "fragile",
            "w1",
            SubscribeOptions {
                start: Start::FromBeginning,
                min_idle: Duration::from_millis(150),
                max_deliveries: 2,
                block: Duration::from_millis(50),
                ..SubscribeOptions::default()
            },
        )
        .await
        .unwrap();
    let id = p
        .join_url("x", "http://x.local/health", None)
        .await
        .unwrap();
    p.wait_applied(id, WAIT).await.unwrap();

    let d1 = next_within(&mut sub, WAIT).await;
    let d2 = next_within(&mut sub, WAIT).await;
    assert_eq!((d2.id, d1.deliveries, d2.deliveries), (d1.id, 1, 2));
    // The third delivery would exceed max_deliveries: dead-lettered instead.
    let more = tokio::time::timeout(Duration::from_millis(1500), sub.next()).await;
    assert!(more.is_err(), "nothing more to deliver, got {more:?}");

    let dead = format!("{}:dead", c.layout.events());
    assert_eq!(sub.dead_letter_stream(), dead);
    let reply: redis::Value = redis::cmd("XRANGE")
        .arg(&dead)
        .arg("-")
        .arg("+")
        .query_async(&mut c.con)
        .await
        .unwrap();
    let letters = stream::parse_entries(reply).unwrap();
    assert_eq!(letters.len(), 1);
    let l = &letters[0];
    assert_eq!(l.get("original_id"), Some(d1.id.to_string().as_str()));
    assert_eq!(l.get("group"), Some("fragile"));
    assert_eq!(l.get("deliveries"), Some("3"));
    assert_eq!(l.get("type"), Some("joined"));
    assert_eq!(l.get("node"), Some("x"));
    assert_eq!(pending_count(&mut c, "fragile").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_subscription_resumes_with_its_unacked_entries() {
    let mut c = TestCluster::start().await;
    let _projector = c.spawn_projector("p1");
    let p = client(&c).await;
    // A long min_idle: what comes back below comes back from the consumer's own pending
    // list, not from a claim.
    let opts = SubscribeOptions {
        start: Start::FromBeginning,
        min_idle: Duration::from_secs(60),
        block: Duration::from_millis(100),
        ..SubscribeOptions::default()
    };
    let mut sub = p
        .subscribe("billing", "worker", opts.clone())
        .await
        .unwrap();
    let mut last = EntryId::ZERO;
    for n in ["a", "b", "c"] {
        last = p
            .join_url(n, &format!("http://{n}.local/health"), None)
            .await
            .unwrap();
    }
    p.wait_applied(last, WAIT).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(next_within(&mut sub, WAIT).await);
    }
    sub.ack(got[0].id).await.unwrap();
    drop(sub);

    let mut sub = p
        .subscribe("billing", "worker", opts.clone())
        .await
        .unwrap();
    for want in &got[1..] {
        let d = next_within(&mut sub, WAIT).await;
        assert_eq!((d.id, d.deliveries), (want.id, 2));
        assert_eq!(d.event(), want.event());
        sub.ack(d.id).await.unwrap();
    }
    let more = tokio::time::timeout(Duration::from_millis(500), sub.next()).await;
    assert!(more.is_err(), "nothing else pending, got {more:?}");
    assert_eq!(pending_count(&mut c, "billing").await, 0);

    // Another consumer of the same group has nothing to resume.
    let mut other = p.subscribe("billing", "other", opts).await.unwrap();
    let more = tokio::time::timeout(Duration::from_millis(300), other.next()).await;
    assert!(more.is_err(), "got {more:?}");
}
