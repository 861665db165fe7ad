//! The assigned keys and their owners, ordered by key hash so that the keys in a hash range
//! (the arcs of a ring that changed owner) are found without looking at any other key.

use std::collections::BTreeMap;
use std::ops::Bound;

use xxhash_rust::xxh3::Xxh3;

use crate::ids::NodeId;
use crate::placement::key_hash;

/// Assigned keys → owner (`None` while no node can own keys).
///
/// Keeps an order-independent digest (wrapping sum of per-key hashes) up to date on every
/// change, so the state checksum never needs a pass over a million keys.
#[derive(Debug, Default, Clone)]
pub struct Keys {
    map: BTreeMap<(u64, Box<str>), Option<NodeId>>,
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
            .map(Option::as_ref)
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
                v.insert(owner);
                true
            }
        }
    }

    /// Removes a key; returns its owner when it was assigned.
    pub fn remove(&mut self, key: &str) -> Option<Option<NodeId>> {
        let owner = self.map.remove(&(key_hash(key), Box::from(key)))?;
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
        let digest = &mut self.digest;
        let mut visit = |(hash, key): &(u64, Box<str>), current: &mut Option<NodeId>| {
            if let Some(next) = decide(key, *hash, current.as_ref())
                && current.as_ref() != next
            {
                *digest = digest
                    .wrapping_sub(entry_digest(key, current.as_ref()))
                    .wrapping_add(entry_digest(key, next));
                moved(key, current.as_ref(), next);
                *current = next.cloned();
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
            let Some(current) = self.map.get_mut(k) else {
                continue;
            };
            if let Some(next) = decide(&k.1, k.0, current.as_ref())
                && current.as_ref() != next
            {
                self.digest = self
                    .digest
                    .wrapping_sub(entry_digest(&k.1, current.as_ref()))
                    .wrapping_add(entry_digest(&k.1, next));
                *current = next.cloned();
            }
        }
    }

    /// Sets an assigned key's owner; returns whether it changed (false also when the key is
    /// not assigned).
    pub fn set_owner(&mut self, key: &str, hash: u64, owner: Option<NodeId>) -> bool {
        let Some(current) = self.map.get_mut(&(hash, Box::from(key))) else {
            return false;
        };
        if *current == owner {
            return false;
        }
        self.digest = self
            .digest
            .wrapping_sub(entry_digest(key, current.as_ref()))
            .wrapping_add(entry_digest(key, owner.as_ref()));
        *current = owner;
        true
    }

    /// All keys with their owners, in hash order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&NodeId>)> {
        self.map.iter().map(|((_, k), v)| (&**k, v.as_ref()))
    }
}
