//! The nodes by id, with a version that changes whenever they may have changed.
//!
//! The state checksum is taken at every commit, and at 10,000 nodes hashing the nodes is
//! most of it, while most entries (load reports, key assignments) leave them as they were.
//! The version lets [`super::State::checksum`] reuse the hash of an unchanged node table.
//! Reads go through `Deref`; every way to change the table takes a new version first, so a
//! change cannot be missed (a version is handed out at most once in the process, so two
//! tables never share one unless one is the other).

use std::collections::BTreeMap;
use std::collections::btree_map::ValuesMut;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Node;
use crate::ids::NodeId;

/// Versions handed out so far (0 is never one).
static VERSIONS: AtomicU64 = AtomicU64::new(0);

fn next_version() -> u64 {
    VERSIONS.fetch_add(1, Ordering::Relaxed) + 1
}

#[derive(Debug)]
pub(crate) struct NodeTable {
    nodes: BTreeMap<NodeId, Node>,
    version: u64,
}

impl Default for NodeTable {
    fn default() -> Self {
        Self::from(BTreeMap::new())
    }
}

impl From<BTreeMap<NodeId, Node>> for NodeTable {
    fn from(nodes: BTreeMap<NodeId, Node>) -> Self {
        Self {
            nodes,
            version: next_version(),
        }
    }
}

impl Deref for NodeTable {
    type Target = BTreeMap<NodeId, Node>;

    fn deref(&self) -> &Self::Target {
        &self.nodes
    }
}

impl NodeTable {
    /// Changes whenever the nodes may have changed.
    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    pub(crate) fn get_mut(&mut self, id: &NodeId) -> Option<&mut Node> {
        self.version = next_version();
        self.nodes.get_mut(id)
    }

    pub(crate) fn values_mut(&mut self) -> ValuesMut<'_, NodeId, Node> {
        self.version = next_version();
        self.nodes.values_mut()
    }

    pub(crate) fn insert(&mut self, node: Node) -> Option<Node> {
        self.version = next_version();
        self.nodes.insert(node.id.clone(), node)
    }

    pub(crate) fn remove(&mut self, id: &NodeId) -> Option<Node> {
        self.version = next_version();
        self.nodes.remove(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_change_takes_a_new_version_and_reads_do_not() {
        use crate::damping::Penalty;
        use crate::health::NodeHealth;
        use crate::ids::EntryId;
        use crate::last_change::LastChange;
        let node = |id: &str| Node {
            id: NodeId::new(id).unwrap(),
            url: format!("http://{id}/health"),
            weight: 1,
            epoch: 1,
            health: NodeHealth::joining(),
            draining: false,
            since: EntryId::default(),
            last: LastChange::Joined,
            held: false,
            penalty: Penalty::default(),
            damped: false,
            token: 0,
            hands_off: false,
        };
        let mut table = NodeTable::default();
        let mut seen = vec![table.version()];
        let mut changed = |table: &NodeTable| {
            assert!(!seen.contains(&table.version()), "a version used twice");
            seen.push(table.version());
        };
        table.insert(node("a"));
        changed(&table);
        let _ = table.get_mut(&NodeId::new("a").unwrap());
        changed(&table);
        for n in table.values_mut() {
            n.weight = 2;
        }
        changed(&table);
        table.remove(&NodeId::new("a").unwrap());
        changed(&table);
        let before = table.version();
        let _ = (table.len(), table.get(&NodeId::new("a").unwrap()));
        assert_eq!(table.version(), before);
        // A new table never takes the version of another.
        changed(&NodeTable::default());
    }
}
