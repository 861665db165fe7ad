//! Node loads (docs/adr/0018) live in their own hash, apart from the node records: a `loads`
//! entry writes one short field per node and leaves the records alone, readers see the load
//! with the record, a node that withdraws its load or leaves takes its field along, and a
//! damaged field is rebuilt from the log like any read model.

use std::collections::BTreeMap;
use std::time::Duration;

use pantheon_client::Pantheon;
use pantheon_domain::entry::{Command, LogEntry};
use pantheon_domain::load::NO_LOAD;
use pantheon_domain::{EntryId, NodeId};
use pantheon_store::readmodel;

use crate::cluster::TestCluster;

const WAIT: Duration = Duration::from_secs(15);

fn node(id: &str) -> NodeId {
    NodeId::new(id).unwrap()
}

fn join(id: &str) -> LogEntry {
    LogEntry::new(Command::Join {
        node: node(id),
        url: format!("http://127.0.0.1:9/{id}"),
        weight: None,
        handoff: false,
    })
}

fn loads(reports: &[(&str, &str)]) -> LogEntry {
    LogEntry::new(Command::Loads {
        reports: reports
            .iter()
            .map(|(n, l)| (node(n), (*l).to_owned()))
            .collect(),
    })
}

async fn hash(c: &mut TestCluster, key: &str) -> BTreeMap<String, String> {
    redis::cmd("HGETALL")
        .arg(key)
        .query_async(&mut c.con)
        .await
        .unwrap()
}

async fn applied(c: &mut TestCluster, entry: &LogEntry) -> EntryId {
    let id = c.xadd(entry).await;
    c.wait_applied(id, WAIT).await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_loads_live_apart_from_the_records_and_are_rebuilt_when_damaged() {
    let mut c = TestCluster::start().await;
    let p = c.spawn_projector("p1");
    for n in ["a", "b", "gone"] {
        applied(&mut c, &join(n)).await;
    }
    let (nodes_key, loads_key) = (c.layout.nodes(), c.layout.node_loads());
    let records = hash(&mut c, &nodes_key).await;

    // The same node twice in one entry: its last figure counts.
    let report = loads(&[("b", "1"), ("a", "12.5"), ("b", "3"), ("gone", "7")]);
    applied(&mut c, &report).await;
    let want = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(n, l)| ((*n).to_owned(), (*l).to_owned()))
            .collect()
    };
    assert_eq!(
        hash(&mut c, &loads_key).await,
        want(&[("a", "12500"), ("b", "3000"), ("gone", "7000")])
    );
    assert_eq!(
        hash(&mut c, &nodes_key).await,
        records,
        "a load report rewrites no node record"
    );

    // Readers see each load with its record.
    let client = Pantheon::connect(&c.redis.url, &c.name).await.unwrap();
    let shown: Vec<(String, Option<u64>)> = client
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.node, r.load))
        .collect();
    assert_eq!(
        shown,
        [
            ("a".to_owned(), Some(12_500)),
            ("b".to_owned(), Some(3_000)),
            ("gone".to_owned(), Some(7_000))
        ]
    );
    assert_eq!(
        client.node_health("a").await.unwrap().unwrap().load,
        Some(12_500)
    );

    // Withdrawn, and left: the fields go.
    applied(&mut c, &loads(&[("b", NO_LOAD)])).await;
    let leave = LogEntry::new(Command::Leave { node: node("gone") });
    applied(&mut c, &leave).await;
    assert_eq!(hash(&mut c, &loads_key).await, want(&[("a", "12500")]));
    assert_eq!(client.node_health("b").await.unwrap().unwrap().load, None);
    p.stop().await;

    // A damaged field: readers name it, and the next leader rebuilds it from the log.
    let () = redis::cmd("HSET")
        .arg(&loads_key)
        .arg("a")
        .arg("lots")
        .query_async(&mut c.con)
        .await
        .unwrap();
    let err = client.nodes().await.unwrap_err().to_string();
    assert!(err.contains("node_loads") && err.contains("lots"), "{err}");
    let p = c.spawn_projector("p2");
    let last = applied(&mut c, &join("c")).await;
    c.wait_applied(last, WAIT).await;
    p.stop().await;
    assert_eq!(hash(&mut c, &loads_key).await, want(&[("a", "12500")]));
    let scratch: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", c.layout.scratch("rebuild").node_loads()))
        .query_async(&mut c.con)
        .await
        .unwrap();
    assert!(scratch.is_empty(), "the rebuild left {scratch:?}");
    assert_eq!(
        readmodel::node(&mut c.con, &c.layout, &node("a"))
            .await
            .unwrap()
            .unwrap()
            .load,
        Some(12_500)
    );
}

/// Node `id` (epoch `epoch`) answered its probe: a joined node is a member once it did.
fn answered(id: &str, epoch: u64) -> LogEntry {
    LogEntry::new(Command::Probe(pantheon_domain::entry::ProbeResult {
        node: node(id),
        epoch,
        ok: true,
        status: Some(200),
        latency_ms: 1,
        error: None,
        prober: Some("p1".into()),
    }))
}

/// Load placement on (`load_epsilon` 10) and nodes a–d joined and answering: members.
async fn load_placement_on_four_members(c: &mut TestCluster) -> [&'static str; 4] {
    let policy = LogEntry::new(Command::Policy(pantheon_domain::policy::PolicyChange {
        load_epsilon: Some(10),
        ..Default::default()
    }));
    applied(c, &policy).await;
    let names = ["a", "b", "c", "d"];
    for n in names {
        applied(c, &join(n)).await;
    }
    for (i, n) in names.iter().enumerate() {
        applied(c, &answered(n, i as u64 + 1)).await;
    }
    names
}

/// The nodes a load round holds back until their next report are in the `loads` read model,
/// where the prober reads them (`pantheon_store::loads::settling`) to write their figures
/// again after a while (docs/adr/0018), and a node's next report releases it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nodes_a_round_holds_back_are_read_from_the_read_model_until_they_report() {
    let mut c = TestCluster::start().await;
    let p = c.spawn_projector("p1");
    let names = load_placement_on_four_members(&mut c).await;
    let assign = LogEntry::new(Command::Assign {
        keys: vec!["hot".into()],
    });
    applied(&mut c, &assign).await;
    let owner: String = redis::cmd("HGET")
        .arg(c.layout.keymap())
        .arg("hot")
        .query_async(&mut c.con)
        .await
        .unwrap();
    let settling = |c: &mut TestCluster| {
        let (mut con, layout) = (c.con.clone(), c.layout.clone());
        async move {
            pantheon_store::loads::settling(&mut con, &layout)
                .await
                .unwrap()
        }
    };
    assert!(settling(&mut c).await.is_empty(), "no round has run");

    // The owner is busy with a hot key (the others idle): the round at the next `loads`
    // entry gives the key read replicas, and holds the new holders back.
    let hot = LogEntry::new(Command::KeyLoads {
        node: node(&owner),
        keys: vec![("hot".into(), 300_000)],
    });
    applied(&mut c, &hot).await;
    let figures: Vec<(&str, &str)> = names
        .iter()
        .map(|n| (*n, if *n == owner { "1000" } else { "100" }))
        .collect();
    applied(&mut c, &loads(&figures)).await;
    let replicas = pantheon_store::loads::replicas_of(&mut c.con, &c.layout, "hot")
        .await
        .unwrap();
    assert!(!replicas.is_empty(), "the hot key got read replicas");
    let held = settling(&mut c).await;
    assert!(
        replicas.iter().all(|r| held.contains(r)),
        "{held:?} holds back every new holder {replicas:?}"
    );

    // A held node reports: it is released.
    let first = replicas[0].clone();
    applied(&mut c, &loads(&[(first.as_str(), "110")])).await;
    assert!(!settling(&mut c).await.contains(&first));
    p.stop().await;
}

/// The last round's time has a field of its own in the `loads` hash (docs/adr/0018): a round
/// that leaves the nodes above the band and those settling as they were does not write `meta`
/// again (at 10,000 nodes it lists thousands of nodes, and rounds run every 2 s while loads
/// move). A read model written before, with the time in `meta`, is still read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_writes_its_time_apart_and_meta_only_when_it_changes() {
    let mut c = TestCluster::start().await;
    let p = c.spawn_projector("p1");
    load_placement_on_four_members(&mut c).await;
    let loads_key = c.layout.loads();
    let field = |c: &mut TestCluster, name: &'static str| {
        let (mut con, key) = (c.con.clone(), loads_key.clone());
        async move {
            let value: Option<String> = redis::cmd("HGET")
                .arg(&key)
                .arg(name)
                .query_async(&mut con)
                .await
                .unwrap();
            value
        }
    };

    // `a` is far above the band: the first round lists it.
    let first = [("a", "1000"), ("b", "100"), ("c", "100"), ("d", "100")];
    let at = applied(&mut c, &loads(&first)).await;
    assert_eq!(field(&mut c, "round").await, Some(at.ms.to_string()));
    let meta = field(&mut c, "meta").await.unwrap();
    let listed: serde_json::Value = serde_json::from_str(&meta).unwrap();
    assert_eq!(listed["above"], serde_json::json!(["a"]), "{meta}");
    assert!(listed.get("round").is_none(), "{meta}");
    // The same content in other bytes: a write of `meta` would show.
    let marked = format!(" {meta}");
    let () = redis::cmd("HSET")
        .arg(&loads_key)
        .arg("meta")
        .arg(&marked)
        .query_async(&mut c.con)
        .await
        .unwrap();

    // A round later, `b` moved a little: the round's time is written, `meta` is not.
    tokio::time::sleep(Duration::from_millis(pantheon_domain::load::ROUND_MS + 100)).await;
    let at = applied(&mut c, &loads(&[("b", "101")])).await;
    assert_eq!(field(&mut c, "round").await, Some(at.ms.to_string()));
    assert_eq!(field(&mut c, "meta").await, Some(marked.clone()));

    // `a` comes back within the band: the next round writes `meta` again.
    tokio::time::sleep(Duration::from_millis(pantheon_domain::load::ROUND_MS + 100)).await;
    let last = applied(&mut c, &loads(&[("a", "100")])).await;
    let meta = field(&mut c, "meta").await.unwrap();
    assert_ne!(meta, marked);
    let listed: serde_json::Value = serde_json::from_str(&meta).unwrap();
    assert_eq!(listed["above"], serde_json::json!([]), "{meta}");
    p.stop().await;

    // Read back: the field's time; and from a read model written before it had a field.
    let parts = pantheon_store::loads::load(&mut c.con, &c.layout, BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(parts.round, Some(last.ms));
    let older = format!(r#"{{"round":{},"settling":[],"above":["a"]}}"#, last.ms - 1);
    let () = redis::cmd("HSET")
        .arg(&loads_key)
        .arg("meta")
        .arg(&older)
        .query_async(&mut c.con)
        .await
        .unwrap();
    let () = redis::cmd("HDEL")
        .arg(&loads_key)
        .arg("round")
        .query_async(&mut c.con)
        .await
        .unwrap();
    let parts = pantheon_store::loads::load(&mut c.con, &c.layout, BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(parts.round, Some(last.ms - 1));
    assert_eq!(parts.above, vec!["a".to_owned()]);
}
