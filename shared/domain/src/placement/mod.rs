//! Placement: which member owns a key. Two strategies behind one small trait, both specified
//! byte for byte in `docs/placement.md` so other languages can compute owners themselves.

mod line_index;
mod rendezvous;
mod ring;

use std::fmt;
use std::str::FromStr;

pub use rendezvous::{Rendezvous, score, weighted};
pub use ring::{Ring, point_hash};

use crate::NodeId;

/// Hash of a key: xxh3-64 (seed 0) of its UTF-8 bytes. Both strategies start from it.
pub fn key_hash(key: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key.as_bytes())
}

/// A ring member: a node id and its weight (`1..=MAX_WEIGHT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub node: NodeId,
    pub weight: u32,
}

/// Maps keys to members.
pub trait Placement: Send + Sync {
    /// The owner of a key given its [`key_hash`], or `None` when there are no members.
    fn owner_of_hash(&self, key: &str, hash: u64) -> Option<&NodeId>;

    /// The owner of a key, or `None` when there are no members.
    fn owner(&self, key: &str) -> Option<&NodeId> {
        self.owner_of_hash(key, key_hash(key))
    }

    fn members(&self) -> &[Member];

    /// Up to `limit` members in the key's placement order, its owner first: on a ring the
    /// members of the points clockwise from the key; with rendezvous hashing the members by
    /// falling score. Load-aware placement moves a hot key to the first of them with room.
    fn order_of_hash(&self, key: &str, hash: u64, limit: usize) -> Vec<NodeId>;

    /// The hash ranges whose owner may differ between `self` and `next`, as inclusive
    /// `(start, end)` pairs over key hashes. `None` means "cannot tell, check every key"
    /// (rendezvous hashing after a join: every key compares against the new node).
    fn changed_ranges(&self, next: &dyn Placement) -> Option<Vec<(u64, u64)>>;

    /// This placement as a ring, when it is one (lets ring diffs avoid a key scan).
    fn as_ring(&self) -> Option<&Ring> {
        None
    }
}

/// Which placement a cluster uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Strategy {
    /// Consistent-hash ring with `vnodes × weight` points per node (the default).
    #[default]
    Ring,
    /// Weighted rendezvous (highest random weight) hashing.
    Rendezvous,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Ring => "ring",
            Strategy::Rendezvous => "rendezvous",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ring" => Ok(Strategy::Ring),
            "rendezvous" => Ok(Strategy::Rendezvous),
            other => Err(format!(
                "unknown placement strategy {other:?} (expected ring or rendezvous)"
            )),
        }
    }
}

/// The owner of one key, computed without building a [`Ring`] (see
/// [`ring::owner_without_building`]); rendezvous placement has nothing to build.
pub fn owner_of_one(
    strategy: Strategy,
    vnodes: u32,
    members: Vec<Member>,
    key: &str,
) -> Option<NodeId> {
    match strategy {
        Strategy::Ring => {
            let mut members = members;
            members.sort_by(|a, b| a.node.cmp(&b.node));
            members.dedup_by(|a, b| a.node == b.node);
            ring::owner_without_building(&members, vnodes, key_hash(key))
        }
        Strategy::Rendezvous => Rendezvous::new(members).owner(key).cloned(),
    }
}

/// Builds the placement for a strategy over members (sorted by node id by the caller or not:
/// the result does not depend on member order).
pub fn build(strategy: Strategy, vnodes: u32, members: Vec<Member>) -> Box<dyn Placement> {
    match strategy {
        Strategy::Ring => Box::new(Ring::new(members, vnodes)),
        Strategy::Rendezvous => Box::new(Rendezvous::new(members)),
    }
}
