//! Ownership tokens: a number that comes with every owner of a key, larger for every newer
//! owner, so a worker (or the storage it writes to) can refuse a request or a write from an
//! owner that has since lost the key. See `docs/adr/0015-ownership-tokens-and-feeds.md`.
//!
//! The token of a key is `max(floor, token of its owner)`, where a node's token is the token
//! clock's value when it last became a member. The floor rises to the clock whenever a member
//! stops being one, changes weight or leaves, and when the placement settings change: every
//! way a key can lose its owner. So:
//!
//! * a key that changes owner gets a token larger than any it had before: either its new
//!   owner just became a member (its token is the clock now), or the change that moved it
//!   raised the floor to the clock now;
//! * tokens never fall: a node's token and the floor only ever rise;
//! * all keys of one owner share one token, so a feed line, a snapshot and `locate` each
//!   carry one number per owner; the price is that a key's token may also grow when other
//!   keys move (compare tokens with `<`, never with `!=`);
//! * it is a function of the node records and two numbers, never of where the projector
//!   cut its batches, so a replay of the log gives the same tokens.
//!
//! The clock ticks at most once per entry, to `max(clock + 1, entry time in ms)`. It never
//! goes back, even when a clock recovery starts a generation with lower entry ids; and after
//! a Redis failover that lost the tail of the log, the entries written since carry later
//! times than the lost ones, so their tokens are larger than any the lost tail handed out.

use std::collections::BTreeMap;

use crate::ids::{EntryId, NodeId};
use crate::state::Node;

/// The token clock, the floor, and the members as last counted (with their weights).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tokens {
    clock: u64,
    floor: u64,
    counted: BTreeMap<NodeId, u32>,
}

impl Tokens {
    /// The tokens of a state restored from its parts (members counted from the nodes).
    pub fn restore<'a>(clock: u64, floor: u64, nodes: impl IntoIterator<Item = &'a Node>) -> Self {
        let counted = nodes
            .into_iter()
            .filter(|n| n.is_member())
            .map(|n| (n.id.clone(), n.weight))
            .collect();
        Self {
            clock,
            floor,
            counted,
        }
    }

    /// The clock: the largest token handed out so far (0 before any).
    pub fn clock(&self) -> u64 {
        self.clock
    }

    /// Every key's token is at least this.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// The token of the keys `node` owns, given its own token.
    pub fn of(&self, node: &Node) -> u64 {
        self.floor.max(node.token)
    }

    /// After entry `id` changed the nodes `changed` (and the placement settings, when
    /// `settings_changed`): a node that became a member takes the clock's next value as its
    /// token; a member that stopped being one, left or changed weight raises the floor to it.
    pub(crate) fn after_entry(
        &mut self,
        id: EntryId,
        nodes: &mut crate::state::NodeTable,
        changed: &[NodeId],
        settings_changed: bool,
    ) {
        let mut raise_floor = settings_changed;
        let mut joined: Vec<&NodeId> = Vec::new();
        for node_id in changed {
            let now = nodes
                .get(node_id)
                .filter(|n| n.is_member())
                .map(|n| n.weight);
            let before = self.counted.get(node_id).copied();
            match (before, now) {
                (None, None) => {}
                (None, Some(weight)) => {
                    self.counted.insert(node_id.clone(), weight);
                    joined.push(node_id);
                }
                (Some(_), None) => {
                    self.counted.remove(node_id);
                    raise_floor = true;
                }
                (Some(was), Some(weight)) => {
                    if was != weight {
                        self.counted.insert(node_id.clone(), weight);
                        raise_floor = true;
                    }
                }
            }
        }
        if !raise_floor && joined.is_empty() {
            return;
        }
        self.clock = (self.clock + 1).max(id.ms);
        if raise_floor {
            self.floor = self.clock;
        }
        for node_id in joined {
            if let Some(n) = nodes.get_mut(node_id) {
                n.token = self.clock;
            }
        }
    }
}
