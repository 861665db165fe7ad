//! Pantheon on the Redis deployments production uses, all real servers started by
//! `pantheon-test-support`: Redis Cluster (3 masters + 3 replicas), Sentinel (master, replica,
//! sentinel), TLS (with and without client certificates), and a password-protected server.
//! The projector runs in-process on the deployment's URL; writes go through the Rust client
//! or the real CLI binary.

mod half_migrated;
mod redis_cluster;
mod secrets;
mod sentinel;
mod tls;

use std::collections::BTreeSet;
use std::time::Duration;

use pantheon_client::{EntryId, Pantheon};
use pantheon_projector::ProjectorConfig;
use pantheon_store::Deployment;
use tokio::time::Instant;

use crate::cluster::InProcess;

/// A projector for cluster `name` on the deployment at `url`, tuned for tests.
pub fn projector(url: &str, name: &str, instance: &str) -> InProcess {
    pantheon_service::init_logging("warn");
    let mut config = ProjectorConfig::new(Deployment::from_url(url).expect("url"), name);
    config.instance = instance.to_owned();
    config.lease_ttl = Duration::from_millis(1500);
    config.block = Duration::from_millis(100);
    config.prober_watchdog = None;
    spawn(config)
}

pub fn spawn(config: ProjectorConfig) -> InProcess {
    let token = tokio_util::sync::CancellationToken::new();
    let t = token.clone();
    let handle = tokio::spawn(async move {
        pantheon_projector::run(config, t)
            .await
            .expect("projector run");
    });
    InProcess {
        token,
        handle: Some(handle),
    }
}

/// What a stream of single-key writes achieved.
#[derive(Debug, Default)]
pub struct Writes {
    /// Keys whose `distribute` the client reported as written (and replicated as asked).
    pub acked: Vec<(String, EntryId, Instant)>,
    /// Writes that failed, with the error (expected while a master fails over).
    pub failed: Vec<String>,
}

/// Writes `k<i>` keys one at a time until `stop` says so (bounded: at most `max` writes and
/// `within`), recording which were reported as written.
pub async fn write_keys(
    client: Pantheon,
    prefix: &str,
    max: usize,
    within: Duration,
    stop: tokio_util::sync::CancellationToken,
) -> Writes {
    let deadline = Instant::now() + within;
    let mut writes = Writes::default();
    for i in 0..max {
        if stop.is_cancelled() || Instant::now() >= deadline {
            break;
        }
        let key = format!("{prefix}{i}");
        match client.distribute([key.clone()]).await {
            Ok(ids) => writes.acked.push((key, ids[0], Instant::now())),
            Err(e) => {
                writes.failed.push(e.to_string());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    writes
}

/// Waits until `id` is applied, retrying through failovers, within `within`.
pub async fn wait_applied(client: &Pantheon, id: EntryId, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        match client.wait_applied(id, Duration::from_secs(2)).await {
            Ok(_) => return,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{id} not applied within {within:?}: {e}"),
        }
    }
}

/// Every acked key is owned by a node: nothing reported written was lost.
pub async fn assert_all_owned(client: &Pantheon, acked: &[(String, EntryId, Instant)]) {
    let mut lost = BTreeSet::new();
    for (key, _, _) in acked {
        match client.key_node(key).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                lost.insert(key.clone());
            }
            Err(e) => panic!("reading {key}: {e}"),
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost: {lost:?}",
        lost.len(),
        acked.len()
    );
}

/// The first successful probe of `node` (in `epoch`) on cluster `name` of the deployment at
/// `url`, appended as the prober appends it (attested; docs/adr/0011) through a handle that
/// follows the master: a joined node owns keys only once it answered. No prober runs in
/// these tests.
pub async fn answer(url: &str, name: &str, node: &str, epoch: u64) -> EntryId {
    use pantheon_domain::entry::{Command, LogEntry, ProbeResult};
    let mut redis = pantheon_store::Redis::new(Deployment::from_url(url).expect("url"), name);
    let probe = LogEntry::new(Command::Probe(ProbeResult {
        node: pantheon_domain::NodeId::new(node).expect("node id"),
        epoch,
        ok: true,
        status: Some(200),
        latency_ms: 1,
        error: None,
        prober: None,
    }));
    pantheon_store::log::append_service(
        &mut redis,
        &pantheon_store::Layout::new("pantheon", name),
        &probe,
    )
    .await
    .expect("attested append")
}
