//! The load a round expects of each member: what it reported, as the round's own moves change
//! it.
//!
//! Built in one merge pass over the members and the reported loads, both sorted by node id: at
//! 10,000 nodes a lookup per member in the loads map (and a set of the members to look them up
//! from) was most of a round's cost, and a round runs every 2 s while loads move.

use std::collections::BTreeMap;

use crate::ids::NodeId;
use crate::placement::Member;

/// Each member that reported a load, with the load expected of it, sorted by node id.
#[derive(Debug)]
pub(super) struct Expected<'a>(Vec<(&'a NodeId, u64)>);

impl<'a> Expected<'a> {
    /// The reported loads of `members` (sorted by node id, as placements keep them).
    pub(super) fn of(members: &'a [Member], reported: &BTreeMap<NodeId, u64>) -> Self {
        debug_assert!(members.windows(2).all(|w| w[0].node < w[1].node));
        let mut expected = Vec::with_capacity(members.len().min(reported.len()));
        let mut reported = reported.iter().peekable();
        for member in members {
            while reported.next_if(|(n, _)| **n < member.node).is_some() {}
            if let Some((_, load)) = reported.next_if(|(n, _)| **n == member.node) {
                expected.push((&member.node, *load));
            }
        }
        Self(expected)
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn total(&self) -> u64 {
        self.0.iter().map(|(_, l)| l).sum()
    }

    /// The load expected of `node`, if it is a member that reported one.
    pub(super) fn get(&self, node: &NodeId) -> Option<u64> {
        self.at(node).map(|i| self.0[i].1)
    }

    pub(super) fn get_mut(&mut self, node: &NodeId) -> Option<&mut u64> {
        self.at(node).map(|i| &mut self.0[i].1)
    }

    /// Members and their expected loads, by node id.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&'a NodeId, u64)> + Clone + '_ {
        self.0.iter().copied()
    }

    fn at(&self, node: &NodeId) -> Option<usize> {
        self.0.binary_search_by(|(n, _)| (*n).cmp(node)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: &str) -> NodeId {
        NodeId::new(n).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn members_that_reported_are_expected_at_their_load() {
        let members: Vec<Member> = ["a", "c", "d", "f"]
            .into_iter()
            .map(|n| Member {
                node: id(n),
                weight: 1,
            })
            .collect();
        // `b` and `e` reported but are no members; `d` is a member that never reported.
        let reported: BTreeMap<NodeId, u64> = [("a", 1), ("b", 2), ("c", 3), ("e", 5), ("f", 6)]
            .into_iter()
            .map(|(n, l)| (id(n), l))
            .collect();
        let mut expected = Expected::of(&members, &reported);
        let all: Vec<(String, u64)> = expected.iter().map(|(n, l)| (n.to_string(), l)).collect();
        assert_eq!(all, vec![("a".into(), 1), ("c".into(), 3), ("f".into(), 6)]);
        assert_eq!((expected.len(), expected.total()), (3, 10));
        assert_eq!(expected.get(&id("d")), None);
        assert_eq!(expected.get(&id("b")), None);
        *expected.get_mut(&id("c")).unwrap_or_else(|| panic!("c")) += 4;
        assert_eq!(expected.get(&id("c")), Some(7));
    }
}
