//! Redis Cluster, 3 masters + 3 replicas: a Pantheon cluster lives in one hash slot, so each
//! Pantheon cluster is served by one master; the layer finds it from seed nodes, follows it
//! through a kill -9 failover and through a slot migration, without restarting anything.

use std::time::Duration;

use pantheon_client::{JoinOp, Pantheon};
use pantheon_test_support::redis_cluster::TestCluster;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{assert_all_owned, projector, wait_applied, write_keys};

const WAIT: Duration = Duration::from_secs(30);

fn slot_of_cluster(name: &str) -> u16 {
    TestCluster::slot_of(&format!("pantheon:{{{name}}}:log"))
}

async fn plain(addr: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!("redis://{addr}"))
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to a cluster node")
}

/// Joins one node and distributes `keys` keys, read back through the client.
async fn story(client: &Pantheon, url: &str, name: &str, keys: usize) {
    let id = client
        .join(JoinOp::new("n1", "http://127.0.0.1", 9, "health"))
        .await
        .expect("join");
    wait_applied(client, id, WAIT).await;
    let answered = super::answer(url, name, "n1", 1).await;
    wait_applied(client, answered, WAIT).await;
    let ids = client
        .distribute((0..keys).map(|i| format!("user:{i}")))
        .await
        .expect("distribute");
    wait_applied(client, *ids.last().expect("an id"), WAIT).await;
    for i in [0, keys / 2, keys - 1] {
        let owner = client.key_node(&format!("user:{i}")).await.expect("read");
        assert_eq!(owner.as_ref().map(|n| n.as_str()), Some("n1"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_shard_serves_its_own_pantheon_clusters_through_seed_urls() {
    let redis = TestCluster::start().await;
    let url = redis.url();
    let names = redis.cluster_names_per_master("shard").await;
    assert_eq!(names.len(), 3);
    let mut masters = Vec::new();
    for name in &names {
        let _projector = projector(&url, name, "p1");
        let client = Pantheon::connect(&url, name)
            .await
            .expect("connect via seeds");
        story(&client, &url, name, 200).await;
        // The data lives on the master of the cluster's slot, nowhere else.
        let master = redis.master_of_slot(slot_of_cluster(name)).await;
        let owned: u64 = redis::cmd("HLEN")
            .arg(format!("pantheon:{{{name}}}:keymap"))
            .query_async(&mut plain(&master).await)
            .await
            .expect("HLEN on the master");
        assert_eq!(owned, 200, "{name} on {master}");
        assert_eq!(
            client.redis().master().map(|m| m.to_string()),
            Some(master.clone())
        );
        masters.push(master);
    }
    masters.sort();
    masters.dedup();
    assert_eq!(
        masters.len(),
        3,
        "the three clusters spread over three masters"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_during_writes_loses_no_acknowledged_write() {
    let mut redis = TestCluster::start().await;
    let url = redis.url();
    let name = redis.cluster_names_per_master("kill").await[0].clone();
    let slot = slot_of_cluster(&name);
    let _projector = projector(&url, &name, "p1");
    let client = Pantheon::connect(&url, &name).await.expect("connect");
    story(&client, &url, &name, 10).await;

    let stop = CancellationToken::new();
    let writer = tokio::spawn(write_keys(
        client.clone(),
        "w",
        5_000,
        Duration::from_secs(60),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let old = redis.kill_master_of(slot).await;
    let killed_at = Instant::now();
    let new = redis.wait_promoted(slot, WAIT).await;
    let promoted_at = Instant::now();
    assert_ne!(old, new);
    // The old master comes back as a replica of the new one: writes need a replica to be
    // acknowledged (durability 1 on Cluster URLs).
    redis.restart_node(&old).await;
    // Keep writing until well after the failover.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.cancel();
    let writes = writer.await.expect("writer");
    let after: Vec<_> = writes
        .acked
        .iter()
        .filter(|(_, _, at)| *at > promoted_at)
        .collect();
    assert!(
        !after.is_empty(),
        "no write acknowledged after the promotion; failures: {:?}",
        writes.failed.iter().rev().take(5).collect::<Vec<_>>()
    );
    let first_after = after[0].2 - promoted_at;
    eprintln!(
        "kill -9 of {old}: promoted {new} after {:?}; first acknowledged write {first_after:?} \
         after the promotion; {} acked, {} failed",
        promoted_at - killed_at,
        writes.acked.len(),
        writes.failed.len()
    );
    let last = writes.acked.last().expect("acked writes").1;
    wait_applied(&client, last, WAIT).await;
    assert_all_owned(&client, &writes.acked).await;
    assert_eq!(
        client.redis().master().map(|m| m.to_string()),
        Some(new),
        "the client follows the new master"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_migrated_to_another_master_is_followed() {
    let redis = TestCluster::start().await;
    let url = redis.url();
    let name = redis.cluster_names_per_master("move").await[0].clone();
    let slot = slot_of_cluster(&name);
    let _projector = projector(&url, &name, "p1");
    let client = Pantheon::connect(&url, &name).await.expect("connect");
    story(&client, &url, &name, 100).await;
    let from = redis.master_of_slot(slot).await;
    let to = redis
        .masters()
        .await
        .into_iter()
        .map(|(addr, _)| addr)
        .find(|addr| *addr != from)
        .expect("another master");
    redis.migrate_slot(slot, &to).await;
    assert_eq!(redis.master_of_slot(slot).await, to);
    // Writes continue on the new master; the projector follows (MOVED) and applies them.
    let ids = client
        .distribute((0..50).map(|i| format!("after:{i}")))
        .await
        .expect("distribute after the migration");
    wait_applied(&client, ids[0], WAIT).await;
    for key in ["user:0", "user:99", "after:0", "after:49"] {
        assert!(
            client.key_node(key).await.expect("read").is_some(),
            "{key} lost in the migration"
        );
    }
    assert_eq!(
        client.redis().master().map(|m| m.to_string()),
        Some(to.clone())
    );
    let owned: u64 = redis::cmd("HLEN")
        .arg(format!("pantheon:{{{name}}}:keymap"))
        .query_async(&mut plain(&to).await)
        .await
        .expect("HLEN on the new master");
    assert_eq!(owned, 150);
}
