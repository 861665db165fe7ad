//! Hand-off of planned moves (see `docs/adr/0016-planned-moves-hand-off.md`).
//!
//! A node joined with `handoff` keeps an assigned key that a planned move gives to another
//! node until it releases it (a `released` entry, written by the worker library after it
//! stored the key's state) or the projector leader forces the move (`handoff_forced`, after
//! the policy's `handoff_timeout`). Meanwhile the key is *handing off*: its owner is still the
//! old node (`locate`, `keys`, tokens), and the old node's feed carries a `handoff` line.
//! Moves caused by a death, damping, a leave or a re-join, and moves away from nodes that do
//! not hand off, stay immediate.
//!
//! [`Handing`] is the index of the keys handing off, by owner. It is derived from the key
//! owners, the placement and the node states, so a restored state rebuilds it
//! ([`Handing::derive`]) and the checksum does not cover it.

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::NodeId;
use crate::state::State;

/// The assigned keys each node is handing off, by key hash and key, and since when (the
/// log time its set last became non-empty; unknown after a restore).
#[derive(Debug, Clone, Default)]
pub struct Handing {
    by_node: BTreeMap<NodeId, BTreeSet<(u64, Box<str>)>>,
    started: BTreeMap<NodeId, u64>,
}

/// Equal when the same keys are handing off (when each began is not part of the state).
impl PartialEq for Handing {
    fn eq(&self, other: &Self) -> bool {
        self.by_node == other.by_node
    }
}

impl Eq for Handing {}

impl Handing {
    /// The index of a restored state: every assigned key whose owner can hand off and is not
    /// where the placement puts it.
    pub fn derive(state: &State) -> Self {
        let mut handing = Self::default();
        if !state.nodes().any(|n| n.hands_off) {
            return handing;
        }
        for (key, owner) in state.keys().iter() {
            if let Some(owner) = owner
                && state.can_hand_off(owner)
                && state.target_owner(key, crate::placement::key_hash(key)) != Some(owner)
            {
                handing.insert(owner, crate::placement::key_hash(key), key, None);
            }
        }
        handing
    }

    pub fn is_empty(&self) -> bool {
        self.by_node.is_empty()
    }

    /// Whether `node` is handing off any key.
    pub fn has(&self, node: &NodeId) -> bool {
        self.by_node.contains_key(node)
    }

    pub fn contains(&self, node: &NodeId, hash: u64, key: &str) -> bool {
        self.by_node
            .get(node)
            .is_some_and(|keys| keys.contains(&(hash, Box::from(key))))
    }

    /// Records that `node` hands off `key` (asked at log time `at_ms`, when known); returns
    /// whether it was not recorded yet.
    pub fn insert(&mut self, node: &NodeId, hash: u64, key: &str, at_ms: Option<u64>) -> bool {
        let keys = self.by_node.entry(node.clone()).or_default();
        if keys.is_empty()
            && let Some(at) = at_ms
        {
            self.started.insert(node.clone(), at);
        }
        keys.insert((hash, Box::from(key)))
    }

    /// The log time (ms) `node` began handing off what it is handing off now, if known.
    pub fn started(&self, node: &NodeId) -> Option<u64> {
        self.started.get(node).copied()
    }

    /// Forgets that `node` hands off `key`; returns whether it did.
    pub fn remove(&mut self, node: &NodeId, hash: u64, key: &str) -> bool {
        let Some(keys) = self.by_node.get_mut(node) else {
            return false;
        };
        let was = keys.remove(&(hash, Box::from(key)));
        if keys.is_empty() {
            self.by_node.remove(node);
            self.started.remove(node);
        }
        was
    }

    /// How many keys `node` is handing off.
    pub fn count(&self, node: &NodeId) -> usize {
        self.by_node.get(node).map_or(0, |keys| keys.len())
    }

    /// The keys `node` is handing off, in hash order.
    pub fn of(&self, node: &NodeId) -> impl Iterator<Item = (u64, &str)> {
        self.by_node
            .get(node)
            .into_iter()
            .flatten()
            .map(|(h, k)| (*h, &**k))
    }

    /// Every key handing off, by hash and key.
    pub fn all(&self) -> Vec<(u64, Box<str>)> {
        self.by_node.values().flatten().cloned().collect()
    }

    /// The nodes handing off keys, with how many.
    pub fn nodes(&self) -> impl Iterator<Item = (&NodeId, usize)> {
        self.by_node.iter().map(|(n, keys)| (n, keys.len()))
    }
}
