//! The owners of the assigned keys, each held once. The key map stores a 4-byte slot per key
//! instead of a 16-byte [`NodeId`]: at millions of keys that shrinks every B-tree node of the
//! map by a third (issue 19: `rebuild --verify` must fold 5M keys in half of Redis's memory).

use std::collections::HashMap;

use crate::ids::NodeId;

/// The slot of "no owner" (a key assigned while no node can own keys).
pub(super) const UNOWNED: u32 = u32::MAX;

/// Owner slots, counted: a slot whose last key left is freed and reused, so a cluster whose
/// node ids churn does not grow the table.
#[derive(Debug, Default, Clone)]
pub(super) struct Owners {
    ids: Vec<Option<NodeId>>,
    keys: Vec<u64>,
    slots: HashMap<NodeId, u32>,
    free: Vec<u32>,
}

impl Owners {
    /// The owner in `slot`.
    pub(super) fn get(&self, slot: u32) -> Option<&NodeId> {
        if slot == UNOWNED {
            return None;
        }
        self.ids.get(slot as usize).and_then(Option::as_ref)
    }

    /// The slot of `owner`, counting one more key in it.
    pub(super) fn take(&mut self, owner: Option<&NodeId>) -> u32 {
        let Some(owner) = owner else {
            return UNOWNED;
        };
        let slot = match self.slots.get(owner) {
            Some(&slot) => slot,
            None => {
                let slot = match self.free.pop() {
                    Some(slot) => {
                        self.ids[slot as usize] = Some(owner.clone());
                        slot
                    }
                    None => {
                        self.ids.push(Some(owner.clone()));
                        self.keys.push(0);
                        (self.ids.len() - 1) as u32
                    }
                };
                self.slots.insert(owner.clone(), slot);
                slot
            }
        };
        self.keys[slot as usize] += 1;
        slot
    }

    /// Counts one key fewer in `slot`, freeing it with its last key.
    pub(super) fn release(&mut self, slot: u32) {
        if slot == UNOWNED {
            return;
        }
        let i = slot as usize;
        self.keys[i] -= 1;
        if self.keys[i] == 0
            && let Some(id) = self.ids[i].take()
        {
            self.slots.remove(&id);
            self.free.push(slot);
        }
    }

    /// How many keys each owner holds.
    pub(super) fn counts(&self) -> impl Iterator<Item = (&NodeId, u64)> {
        self.ids
            .iter()
            .zip(&self.keys)
            .filter_map(|(id, &n)| id.as_ref().map(|id| (id, n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    #[test]
    fn a_slot_is_freed_with_its_last_key_and_reused() {
        let mut owners = Owners::default();
        let a = owners.take(Some(&id("a")));
        assert_eq!(owners.take(Some(&id("a"))), a);
        let b = owners.take(Some(&id("b")));
        assert_ne!(a, b);
        assert_eq!(owners.take(None), UNOWNED);
        assert_eq!(owners.get(UNOWNED), None);
        owners.release(a);
        assert_eq!(owners.get(a), Some(&id("a")), "one key of a is left");
        owners.release(a);
        assert_eq!(owners.get(a), None);
        let c = owners.take(Some(&id("c")));
        assert_eq!(c, a, "the freed slot is reused");
        let counts: Vec<(String, u64)> = owners.counts().map(|(n, k)| (n.to_string(), k)).collect();
        assert_eq!(counts, vec![("c".into(), 1), ("b".into(), 1)]);
    }
}
