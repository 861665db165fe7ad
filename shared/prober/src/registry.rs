//! Which replica probes which node: rendezvous hashing of node ids over the live replicas,
//! so each node has exactly one prober and a stopped replica's nodes spread over the rest.
//!
//! Hand-over without double probing: a new replica only counts as an owner once it has been
//! registered for `warmup`; it starts probing itself one refresh period later than the others
//! stop, so two replicas never count the same node's failures twice (a short gap is the
//! price, well under one probe interval with the defaults).

use std::time::Duration;

use pantheon_domain::NodeId;
use pantheon_domain::placement::{Member, Placement, Rendezvous};
use pantheon_store::probers::Registry;

/// The ownership map as one replica sees it.
#[derive(Debug, Clone)]
pub struct Ownership {
    me: String,
    owners: Rendezvous,
    i_count: bool,
    /// The replicas that share the nodes (warm, or everyone at a fresh start), as members.
    members: Vec<Member>,
}

impl Ownership {
    /// Ownership from a registry reading. `lag` is how stale other replicas' readings may be.
    pub fn from_registry(registry: &Registry, me: &str, warmup: Duration, lag: Duration) -> Self {
        let now = registry.now_ms;
        let warm = |since: u64, extra: Duration| since + (warmup + extra).as_millis() as u64 <= now;
        let live = registry.live();
        let mut eligible: Vec<&str> = live
            .iter()
            .filter(|e| warm(e.since_ms, if e.id == me { lag } else { Duration::ZERO }))
            .map(|e| e.id.as_str())
            .collect();
        // Everyone just started (a fresh deployment): no one to hand over from, so start at once.
        if eligible.is_empty() {
            eligible = live.iter().map(|e| e.id.as_str()).collect();
        }
        let i_count = eligible.contains(&me);
        let members: Vec<Member> = eligible
            .iter()
            .filter_map(|id| NodeId::new(id).ok())
            .map(|node| Member { node, weight: 1 })
            .collect();
        Self {
            me: me.to_owned(),
            owners: Rendezvous::new(members.clone()),
            i_count,
            members,
        }
    }

    /// Whether this replica probes `node`.
    pub fn owns(&self, node: &NodeId) -> bool {
        self.i_count
            && self
                .owners
                .owner(node.as_str())
                .is_some_and(|o| o.as_str() == self.me)
    }

    /// Whether this replica is `node`'s confirmer (ADR 0008): with two or more replicas, the
    /// owner of `node` among the replicas other than its owner (SWIM's indirect probe).
    pub fn confirms(&self, node: &NodeId) -> bool {
        if !self.i_count || self.members.len() < 2 {
            return false;
        }
        let Some(owner) = self.owners.owner(node.as_str()) else {
            return false;
        };
        if owner.as_str() == self.me {
            return false;
        }
        let others: Vec<Member> = self
            .members
            .iter()
            .filter(|m| m.node != *owner)
            .cloned()
            .collect();
        Rendezvous::new(others)
            .owner(node.as_str())
            .is_some_and(|c| c.as_str() == self.me)
    }

    /// Number of replicas sharing the nodes.
    pub fn replicas(&self) -> usize {
        self.owners.members().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pantheon_store::probers::ProberEntry;

    fn registry(now: u64, entries: &[(&str, u64)]) -> Registry {
        Registry {
            now_ms: now,
            entries: entries
                .iter()
                .map(|(id, since)| ProberEntry {
                    id: (*id).into(),
                    expires_ms: now + 3000,
                    since_ms: *since,
                })
                .collect(),
        }
    }

    /// Each replica's view of the registry (warm-up 2 s, lag 1 s).
    fn views_of(r: &Registry, replicas: &[&str]) -> Vec<Ownership> {
        replicas
            .iter()
            .map(|me| {
                Ownership::from_registry(r, me, Duration::from_secs(2), Duration::from_secs(1))
            })
            .collect()
    }

    #[test]
    fn each_node_has_exactly_one_owner_among_warm_replicas() {
        let r = registry(100_000, &[("a", 0), ("b", 0), ("c", 0)]);
        let views = views_of(&r, &["a", "b", "c"]);
        for i in 0..300 {
            let n = NodeId::new(&format!("n{i}")).unwrap();
            assert_eq!(views.iter().filter(|v| v.owns(&n)).count(), 1);
        }
    }

    #[test]
    fn a_newcomer_waits_longer_than_the_others_take_to_let_go() {
        let warmup = Duration::from_secs(2);
        let lag = Duration::from_secs(1);
        // At now = since + 2.5 s, others already count the newcomer; it does not yet.
        let r = registry(12_500, &[("old", 0), ("new", 10_000)]);
        let old = Ownership::from_registry(&r, "old", warmup, lag);
        let new = Ownership::from_registry(&r, "new", warmup, lag);
        assert_eq!(old.replicas(), 2);
        for i in 0..200 {
            let n = NodeId::new(&format!("n{i}")).unwrap();
            assert!(!(old.owns(&n) && new.owns(&n)), "double ownership of {n}");
        }
        assert!((0..200).all(|i| !new.owns(&NodeId::new(&format!("n{i}")).unwrap())));
    }

    #[test]
    fn with_two_or_more_replicas_each_node_has_one_confirmer_other_than_its_owner() {
        let r = registry(100_000, &[("a", 0), ("b", 0), ("c", 0)]);
        let views = views_of(&r, &["a", "b", "c"]);
        for i in 0..300 {
            let n = NodeId::new(&format!("n{i}")).unwrap();
            assert_eq!(views.iter().filter(|v| v.confirms(&n)).count(), 1);
            assert!(!views.iter().any(|v| v.owns(&n) && v.confirms(&n)));
        }
        let alone = registry(100_000, &[("a", 0)]);
        let a = Ownership::from_registry(&alone, "a", Duration::from_secs(2), Duration::ZERO);
        assert!(!a.confirms(&NodeId::new("n1").unwrap()));
    }

    #[test]
    fn at_a_fresh_start_everyone_owns_at_once() {
        let r = registry(1_000, &[("a", 900), ("b", 950)]);
        let a = Ownership::from_registry(&r, "a", Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(a.replicas(), 2);
    }
}
