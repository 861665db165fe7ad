//! The cluster status as a library query: nodes with their health, keys owned and ring
//! share; the leader, its fence and how far it is behind the log; the prober replicas; the
//! consumer groups on the events stream and their lag. What a status page or an exporter
//! shows, read in a few pipelines.

use std::collections::BTreeMap;

use pantheon_domain::NodeId;
use pantheon_store::monitor::{self, GroupLag};
use pantheon_store::readmodel::{self, NodeRecord};
use serde::Serialize;

use crate::{ClientError, Pantheon};

/// Node states, in the order a status page lists them.
pub const NODE_STATES: [&str; 5] = ["joining", "alive", "suspect", "dead", "draining"];

/// One node and what it owns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeStatus {
    #[serde(flatten)]
    pub record: NodeRecord,
    /// Assigned keys this node owns now.
    pub keys: u64,
    /// Its expected share of the key space: its weight over the total weight of the ring's
    /// members (0 when it is not a member: dead, draining).
    pub ring_share: f64,
}

/// The projector: who leads, and how far behind the log it is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProjectorStatus {
    /// The instance that committed last (the leader while `lease_held`).
    pub leader: Option<String>,
    pub lease_held: bool,
    /// Bumped at every change of leader.
    pub fence: u64,
    /// The newest log entry, and the last one applied.
    pub log_last: Option<String>,
    pub applied_last: Option<String>,
    /// Log entries not yet applied.
    pub lag_entries: u64,
    /// How much older the last applied entry is than the newest one (0 when caught up).
    pub lag_seconds: f64,
    /// How far the newest log id runs ahead of Redis's clock, in ms (0 when it does not).
    /// More than the projector's `clock_skew_bound` means the log's clock is poisoned: see
    /// `pantheon doctor` and `pantheon recover-clock`.
    pub log_ahead_ms: u64,
}

/// One live prober replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProberStatus {
    pub id: String,
    /// Registered since (Redis server time, milliseconds).
    pub since_ms: u64,
    /// Its registration lapses then unless renewed.
    pub expires_ms: u64,
}

/// A consumer group on the events stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupStatus {
    pub name: String,
    /// Events not yet delivered to it (`None` when Redis cannot say, e.g. after trimming).
    pub lag: Option<u64>,
    /// Delivered, not yet acknowledged.
    pub pending: u64,
}

impl From<GroupLag> for GroupStatus {
    fn from(g: GroupLag) -> Self {
        Self {
            name: g.name,
            lag: g.lag,
            pending: g.pending,
        }
    }
}

/// The whole picture of one cluster.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterStatus {
    pub cluster: String,
    /// Sorted by id.
    pub nodes: Vec<NodeStatus>,
    /// How many nodes are in each state (every state of [`NODE_STATES`], zeros included).
    pub states: BTreeMap<String, u64>,
    /// Assigned keys with an owner.
    pub owned_keys: u64,
    /// Assigned keys no node can own right now.
    pub unowned_keys: u64,
    pub ring_version: u64,
    /// `ring` or `rendezvous`.
    pub strategy: String,
    pub vnodes: u32,
    pub projector: ProjectorStatus,
    pub probers: Vec<ProberStatus>,
    pub event_groups: Vec<GroupStatus>,
}

impl ClusterStatus {
    /// One node, by id.
    pub fn node(&self, id: &str) -> Option<&NodeStatus> {
        self.nodes.iter().find(|n| n.record.node == id)
    }
}

fn ring_shares(members: &[pantheon_domain::placement::Member]) -> BTreeMap<&str, f64> {
    let total: u64 = members.iter().map(|m| u64::from(m.weight)).sum();
    members
        .iter()
        .map(|m| {
            let share = if total == 0 {
                0.0
            } else {
                f64::from(m.weight) / total as f64
            };
            (m.node.as_str(), share)
        })
        .collect()
}

/// Who leads and how far behind it is, and the live probers: the part of the status that
/// needs no pass over the nodes (a handful of round trips whatever the fleet's size).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProjectorHealth {
    pub projector: ProjectorStatus,
    pub probers: Vec<ProberStatus>,
}

impl Pantheon {
    /// The projector's progress and the live probers, without reading the nodes (what
    /// `pantheon doctor` and `recover-clock` check).
    pub async fn projector_health(&self) -> Result<ProjectorHealth, ClientError> {
        let mut con = self.con();
        let layout = &self.inner.layout;
        let progress = monitor::progress(&mut con, layout).await?;
        let registry = pantheon_store::probers::read(&mut con, layout).await?;
        let lag_ms = match (progress.log_last, progress.applied_last) {
            (Some(last), Some(applied)) if progress.lag_entries > 0 => {
                last.ms.saturating_sub(applied.ms)
            }
            _ => 0,
        };
        Ok(ProjectorHealth {
            projector: ProjectorStatus {
                leader: progress.leader,
                lease_held: progress.lease_held,
                fence: progress.fence,
                log_last: progress.log_last.map(|i| i.to_string()),
                applied_last: progress.applied_last.map(|i| i.to_string()),
                lag_entries: progress.lag_entries,
                lag_seconds: lag_ms as f64 / 1000.0,
                log_ahead_ms: progress
                    .log_last
                    .map_or(0, |last| last.ms.saturating_sub(registry.now_ms)),
            },
            probers: registry
                .live()
                .into_iter()
                .map(|p| ProberStatus {
                    id: p.id.clone(),
                    since_ms: p.since_ms,
                    expires_ms: p.expires_ms,
                })
                .collect(),
        })
    }

    /// The cluster status: nodes (state, keys owned, ring share), leader and lag, probers,
    /// consumer groups.
    ///
    /// ```no_run
    /// # async fn example(p: pantheon_client::Pantheon) -> Result<(), pantheon_client::ClientError> {
    /// let s = p.status().await?;
    /// println!("{} nodes, leader {:?}, {} entries behind", s.nodes.len(),
    ///     s.projector.leader, s.projector.lag_entries);
    /// # Ok(()) }
    /// ```
    pub async fn status(&self) -> Result<ClusterStatus, ClientError> {
        let mut con = self.con();
        let layout = &self.inner.layout;
        let records = readmodel::nodes(&mut con, layout).await?;
        let ids = records
            .iter()
            .map(|r| {
                NodeId::new(&r.node).map_err(|e| ClientError::Damaged {
                    key: layout.nodes(),
                    reason: format!("node {:?}: {e}", r.node),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let counts = readmodel::node_key_counts(&mut con, layout, &ids).await?;
        let totals = readmodel::key_totals(&mut con, layout).await?;
        let ring = readmodel::ring(&mut con, layout).await?;
        let groups = monitor::event_groups(&mut con, layout).await?;
        let health = self.projector_health().await?;

        let shares = ring_shares(&ring.members);
        let mut states: BTreeMap<String, u64> =
            NODE_STATES.iter().map(|s| ((*s).to_owned(), 0)).collect();
        let nodes = records
            .into_iter()
            .zip(counts)
            .map(|(record, keys)| {
                *states.entry(record.state.clone()).or_default() += 1;
                let ring_share = shares.get(record.node.as_str()).copied().unwrap_or(0.0);
                NodeStatus {
                    record,
                    keys,
                    ring_share,
                }
            })
            .collect();
        Ok(ClusterStatus {
            cluster: self.inner.cluster.clone(),
            nodes,
            states,
            owned_keys: totals.owned,
            unowned_keys: totals.unowned,
            ring_version: totals.ring_version,
            strategy: ring.strategy.as_str().to_owned(),
            vnodes: ring.vnodes,
            projector: health.projector,
            probers: health.probers,
            event_groups: groups.into_iter().map(GroupStatus::from).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pantheon_domain::placement::Member;

    #[test]
    fn shares_follow_weights() {
        let m = |n: &str, w| Member {
            node: NodeId::new(n).unwrap(),
            weight: w,
        };
        let members = [m("a", 1), m("b", 3)];
        let s = ring_shares(&members);
        assert_eq!(s["a"], 0.25);
        assert_eq!(s["b"], 0.75);
        assert!(ring_shares(&[]).is_empty());
    }
}
