//! The assigned keys and their owners, ordered by key hash so that the keys in a hash range
//! (the arcs of a ring that changed owner) are found without looking at any other key.

use std::collections::BTreeMap;
use std::ops::Bound;

use xxhash_rust::xxh3::Xxh3;

use crate::ids::NodeId;
use crate::placement::key_hash;

mod owners;

use owners::Owners;

/// Assigned keys → owner (`None` while no node can own keys).
///
/// Keeps an order-independent digest (wrapping sum of per-key hashes) up to date on every
/// change, so the state checksum never needs a pass over a million keys. Owners are held once
/// in a table and the map keeps a 4-byte slot per key ([`owners`]).
#[derive(Debug, Default, Clone)]
pub struct Keys {
    map: BTreeMap<(u64, Box<str>), u32>,
    owners: Owners,
    digest: u64,
}

fn entry_digest(key: &str, owner: Option<&NodeId>) -> u64 {
    let mut h = Xxh3::new();
    h.update(key.as_bytes());
    h.update(&[0xff]);
    if let Some(o) = owner {
        h.update(o.as_str().as_bytes());
    }
    h.digest()
}

impl Keys {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Wrapping sum of the per-key digests.
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// The owner of an assigned key: `None` if not assigned, `Some(None)` if unowned.
    pub fn get(&self, key: &str) -> Option<Option<&NodeId>> {
        self.map
            .get(&(key_hash(key), Box::from(key)))
            .map(|&slot| self.owners.get(slot))
    }

    /// Adds a key; returns false (and changes nothing) when it was already assigned.
    pub fn insert(&mut self, key: &str, owner: Option<NodeId>) -> bool {
        self.insert_hashed(key, key_hash(key), owner)
    }

    /// [`Keys::insert`] for a caller that already has the key's [`key_hash`]. Inserting a
    /// batch in hash order is several times faster than in any other order: each insert
    /// lands next to the previous one in the tree instead of at a random place.
    pub fn insert_hashed(&mut self, key: &str, hash: u64, owner: Option<NodeId>) -> bool {
        use std::collections::btree_map::Entry;
        match self.map.entry((hash, Box::from(key))) {
            Entry::Occupied(_) => false,
            Entry::Vacant(v) => {
                self.digest = self.digest.wrapping_add(entry_digest(key, owner.as_ref()));
                v.insert(self.owners.take(owner.as_ref()));
                true
            }
        }
    }

    /// Removes a key; returns its owner when it was assigned.
    pub fn remove(&mut self, key: &str) -> Option<Option<NodeId>> {
        let slot = self.map.remove(&(key_hash(key), Box::from(key)))?;
        let owner = self.owners.get(slot).cloned();
        self.owners.release(slot);
        self.digest = self.digest.wrapping_sub(entry_digest(key, owner.as_ref()));
        Some(owner)
    }

    /// Re-computes owners of the keys whose hash lies in one of `ranges` (inclusive), or of
    /// every key when `ranges` is `None`; calls `moved(key, from, to)` for each change.
    pub fn reassign<'p>(
        &mut self,
        ranges: Option<&[(u64, u64)]>,
        owner: impl Fn(&str, u64) -> Option<&'p NodeId>,
        mut moved: impl FnMut(&str, Option<&NodeId>, Option<&NodeId>),
    ) {
        self.reassign_with(
            ranges,
            |key, hash, current| {
                let next = owner(key, hash);
                (current != next).then_some(next)
            },
            |key, from, to| moved(key, from, to),
        );
    }

    /// [`Keys::reassign`] where `decide(key, hash, current owner)` says what to do: `None`
    /// keeps the owner, `Some(to)` makes `to` the owner (calling `moved` if it differs).
    pub fn reassign_with<'p>(
        &mut self,
        ranges: Option<&[(u64, u64)]>,
        mut decide: impl FnMut(&str, u64, Option<&NodeId>) -> Option<Option<&'p NodeId>>,
        mut moved: impl FnMut(&str, Option<&NodeId>, Option<&NodeId>),
    ) {
        let (digest, owners) = (&mut self.digest, &mut self.owners);
        let mut visit = |(hash, key): &(u64, Box<str>), slot: &mut u32| {
            if let Some(next) = decide(key, *hash, owners.get(*slot))
                && owners.get(*slot) != next
            {
                let current = owners.get(*slot);
                *digest = digest
                    .wrapping_sub(entry_digest(key, current))
                    .wrapping_add(entry_digest(key, next));
                moved(key, current, next);
                let taken = owners.take(next);
                owners.release(*slot);
                *slot = taken;
            }
        };
        match ranges {
            None => {
                for (k, v) in self.map.iter_mut() {
                    visit(k, v);
                }
            }
            Some(ranges) => {
                for &(lo, hi) in ranges {
                    let start = Bound::Included((lo, Box::<str>::from("")));
                    for (k, v) in self.map.range_mut((start, Bound::Unbounded)) {
                        if k.0 > hi {
                            break;
                        }
                        visit(k, v);
                    }
                }
            }
        }
    }

    /// [`Keys::reassign_with`] for the listed keys (by hash and key); keys not assigned are
    /// skipped.
    pub fn reassign_listed<'p>(
        &mut self,
        keys: &[(u64, Box<str>)],
        mut decide: impl FnMut(&str, u64, Option<&NodeId>) -> Option<Option<&'p NodeId>>,
    ) {
        for k in keys {
            let Some(slot) = self.map.get_mut(k) else {
                continue;
            };
            let current = self.owners.get(*slot);
            if let Some(next) = decide(&k.1, k.0, current)
                && current != next
            {
                self.digest = self
                    .digest
                    .wrapping_sub(entry_digest(&k.1, current))
                    .wrapping_add(entry_digest(&k.1, next));
                let taken = self.owners.take(next);
                self.owners.release(*slot);
                *slot = taken;
            }
        }
    }

    /// Sets an assigned key's owner; returns whether it changed (false also when the key is
    /// not assigned).
    pub fn set_owner(&mut self, key: &str, hash: u64, owner: Option<NodeId>) -> bool {
        let Some(slot) = self.map.get_mut(&(hash, Box::from(key))) else {
            return false;
        };
        let current = self.owners.get(*slot);
        if current == owner.as_ref() {
            return false;
        }
        self.digest = self
            .digest
            .wrapping_sub(entry_digest(key, current))
            .wrapping_add(entry_digest(key, owner.as_ref()));
        let taken = self.owners.take(owner.as_ref());
        self.owners.release(*slot);
        *slot = taken;
        true
    }

    /// All keys with their owners, in hash order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&NodeId>)> {
        self.map
            .iter()
            .map(|((_, k), &slot)| (&**k, self.owners.get(slot)))
    }

    /// How many keys each owner holds (owners with none are left out), without a pass over
    /// the keys.
    pub fn per_owner(&self) -> impl Iterator<Item = (&NodeId, u64)> {
        self.owners.counts()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn id(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    fn counted(keys: &Keys) -> BTreeMap<String, u64> {
        let mut by = BTreeMap::new();
        for (_, owner) in keys.iter() {
            *by.entry(owner.map_or("-".into(), |n| n.to_string()))
                .or_default() += 1;
        }
        by
    }

    fn per_owner(keys: &Keys) -> BTreeMap<String, u64> {
        let mut by: BTreeMap<String, u64> =
            keys.per_owner().map(|(n, k)| (n.to_string(), k)).collect();
        let owned: u64 = by.values().sum();
        if keys.len() as u64 > owned {
            by.insert("-".into(), keys.len() as u64 - owned);
        }
        by
    }

    #[test]
    fn owners_and_their_counts_follow_every_kind_of_change() {
        let (a, b, c) = (id("a"), id("b"), id("c"));
        let mut keys = Keys::default();
        for i in 0..300 {
            let owner = [Some(a.clone()), Some(b.clone()), None][i % 3].clone();
            assert!(keys.insert(&format!("k{i}"), owner));
        }
        assert!(!keys.insert("k0", Some(c.clone())), "already assigned");
        assert_eq!(keys.get("k0"), Some(Some(&a)));
        assert_eq!(keys.get("k2"), Some(None));
        assert_eq!(keys.get("nope"), None);
        assert_eq!(per_owner(&keys), counted(&keys));

        // The keys first given to `a` move to `c`; every other key becomes unowned.
        let mut moves = 0;
        keys.reassign(
            None,
            |key, _| match keys_owner_of(key) {
                0 => Some(&c),
                _ => None,
            },
            |_, _, _| moves += 1,
        );
        assert!(moves > 0);
        assert_eq!(per_owner(&keys), counted(&keys));
        assert!(keys.per_owner().all(|(n, _)| n != &a), "a owns nothing now");

        let hash = key_hash("k1");
        assert!(keys.set_owner("k1", hash, Some(a.clone())));
        assert!(!keys.set_owner("k1", hash, Some(a.clone())), "unchanged");
        assert_eq!(keys.remove("k1"), Some(Some(a.clone())));
        assert_eq!(keys.remove("k1"), None);
        assert_eq!(per_owner(&keys), counted(&keys));
        assert!(keys.per_owner().all(|(n, _)| n != &a), "a's last key left");
        let listed: Vec<(u64, Box<str>)> = (0..30)
            .map(|i| format!("k{i}"))
            .map(|k| (key_hash(&k), k.into_boxed_str()))
            .collect();
        keys.reassign_listed(&listed, |_, _, _| Some(Some(&b)));
        assert_eq!(per_owner(&keys), counted(&keys));
    }

    /// Which of the three owners `insert` gave a key in the test above.
    fn keys_owner_of(key: &str) -> usize {
        key[1..].parse::<usize>().unwrap() % 3
    }
}
