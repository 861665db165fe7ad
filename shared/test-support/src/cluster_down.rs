//! A one-node Redis Cluster that can be made to answer `CLUSTERDOWN`, for tests of what
//! Pantheon says while a Redis Cluster is down.
//!
//! The node owns every slot at start. [`OneNodeCluster::take_down`] gives up all slots but
//! one: with `cluster-require-full-coverage yes` (Redis's default) a cluster with an
//! unserved slot is in the `fail` state, and the node answers every key command, even on
//! the slot it still owns, with a real `CLUSTERDOWN The cluster is down`, while `CLUSTER
//! SLOTS` and `ROLE` still name it the master of that slot. That is what clients see when a
//! master without a replica dies in a real cluster, without waiting out node timeouts.

use std::time::Duration;

use crate::auth::{Probe, Server, info_field, poll, query};
use crate::redis_cluster::{SLOTS, cluster_port};

/// Bound on the node reporting the cluster state asked for.
const STATE_TIMEOUT: Duration = Duration::from_secs(15);

/// One `redis-server --cluster-enabled yes`. Drop kills and reaps it.
#[derive(Debug)]
pub struct OneNodeCluster {
    server: Server,
}

impl OneNodeCluster {
    /// Starts the node, gives it every slot and waits for `cluster_state:ok`.
    ///
    /// # Panics
    /// When the node does not start or the cluster does not turn ok within 15 s.
    pub async fn start() -> OneNodeCluster {
        let server = Server::start(
            "one-node cluster",
            Probe::Plain { password: None },
            cluster_port,
            &[],
            |port| {
                format!(
                    "port {port}\ncluster-enabled yes\ncluster-config-file nodes.conf\n\
                     cluster-require-full-coverage yes\nappendonly no\nsave \"\"\n"
                )
            },
        )
        .await;
        let cluster = OneNodeCluster { server };
        let addr = cluster.server.addr();
        let last = (SLOTS - 1).to_string();
        let assigned: Result<(), String> = query(
            &addr,
            None,
            redis::cmd("CLUSTER")
                .arg("ADDSLOTSRANGE")
                .arg("0")
                .arg(&last),
        )
        .await;
        if let Err(e) = assigned {
            panic!("{e}\n{}", cluster.server.describe());
        }
        cluster.wait_state("ok").await;
        cluster
    }

    /// `redis+cluster://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis+cluster://{}", self.server.addr())
    }

    /// `redis://127.0.0.1:<port>`: the node itself, for direct commands.
    pub fn node_url(&self) -> String {
        format!("redis://{}", self.server.addr())
    }

    /// Gives up every slot but `keep` and waits for `cluster_state:fail`: key commands then
    /// get `CLUSTERDOWN`.
    ///
    /// # Panics
    /// When the node refuses or does not report the fail state within 15 s.
    pub async fn take_down(&self, keep: u16) {
        let addr = self.server.addr();
        let mut ranges = Vec::new();
        if keep > 0 {
            ranges.push((0, keep - 1));
        }
        if keep < SLOTS - 1 {
            ranges.push((keep + 1, SLOTS - 1));
        }
        for (start, end) in ranges {
            let removed: Result<(), String> = query(
                &addr,
                None,
                redis::cmd("CLUSTER")
                    .arg("DELSLOTSRANGE")
                    .arg(start)
                    .arg(end),
            )
            .await;
            if let Err(e) = removed {
                panic!("{e}\n{}", self.server.describe());
            }
        }
        self.wait_state("fail").await;
    }

    async fn wait_state(&self, want: &str) {
        let addr = self.server.addr();
        let reached = poll(STATE_TIMEOUT, || async {
            let info: String = query(&addr, None, redis::cmd("CLUSTER").arg("INFO")).await?;
            match info_field(&info, "cluster_state") {
                Some(state) if state == want => Ok(()),
                other => Err(format!("cluster_state {other:?}, waiting for {want}")),
            }
        })
        .await;
        if let Err(e) = reached {
            panic!("{e}\n{}", self.server.describe());
        }
    }
}
