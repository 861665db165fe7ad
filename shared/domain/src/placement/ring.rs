//! Consistent-hash ring with virtual nodes.
//!
//! Node `n` with weight `w` gets `vnodes × w` points; point `i` sits at
//! `xxh3_64(utf8(n) ++ 0x00 ++ u32_le(i))`. A key belongs to the first point at or after its
//! hash, wrapping past the top. Points with equal hashes are ordered by node id.

use xxhash_rust::xxh3::xxh3_64;

use super::line_index::{LineIndex, search};
use super::{Member, Placement};
use crate::NodeId;

/// Packed to 12 bytes (it would be 16 with the padding after `member`): a ring of 10,000
/// nodes at 2,048 vnodes holds 20 million of them, and the fields are only ever copied out.
#[derive(Debug, Clone, Copy)]
#[repr(C, packed(4))]
pub(super) struct Point {
    pub(super) hash: u64,
    pub(super) member: u32,
}

/// A consistent-hash ring. Lookups go through a [`LineIndex`], which answers almost all of
/// them from one cache line; the sorted points answer the rest and drive ring diffs.
#[derive(Debug, Clone)]
pub struct Ring {
    members: Vec<Member>,
    points: Vec<Point>,
    index: Option<LineIndex>,
    vnodes: u32,
}

/// The hash of point `i` of a node, as specified in docs/placement.md.
pub fn point_hash(node: &NodeId, i: u32) -> u64 {
    // Node ids are at most MAX_NODE_ID_BYTES, so the input fits on the stack (ring builds hash
    // millions of points; a heap buffer per point was a measurable share of the build time).
    let id = node.as_str().as_bytes();
    let mut buf = [0u8; crate::limits::MAX_NODE_ID_BYTES + 5];
    buf[..id.len()].copy_from_slice(id);
    buf[id.len()] = 0;
    buf[id.len() + 1..id.len() + 5].copy_from_slice(&i.to_le_bytes());
    xxh3_64(&buf[..id.len() + 5])
}

/// The owner of the key hashing to `hash` on the ring of `members` with `vnodes` points per
/// unit of weight, without building the ring: one pass over the points, nothing sorted or
/// kept. For one key this is far cheaper than [`Ring::new`] (no sort of millions of points);
/// for many keys build the ring once.
pub fn owner_without_building(members: &[Member], vnodes: u32, hash: u64) -> Option<NodeId> {
    // The first point at or after `hash` (ties by node id), else the lowest point overall
    // (the ring wraps).
    let mut after: Option<(u64, &NodeId)> = None;
    let mut lowest: Option<(u64, &NodeId)> = None;
    for m in members {
        for i in 0..vnodes.saturating_mul(m.weight) {
            let point = (point_hash(&m.node, i), &m.node);
            if point.0 >= hash && after.is_none_or(|a| point < a) {
                after = Some(point);
            }
            if lowest.is_none_or(|l| point < l) {
                lowest = Some(point);
            }
        }
    }
    after.or(lowest).map(|(_, n)| n.clone())
}

impl Ring {
    pub fn new(mut members: Vec<Member>, vnodes: u32) -> Self {
        members.sort_by(|a, b| a.node.cmp(&b.node));
        members.dedup_by(|a, b| a.node == b.node);
        let total: usize = members
            .iter()
            .map(|m| vnodes as usize * m.weight as usize)
            .sum();
        let mut points = Vec::with_capacity(total);
        for (idx, m) in members.iter().enumerate() {
            let count = vnodes.saturating_mul(m.weight);
            points.extend((0..count).map(|i| Point {
                hash: point_hash(&m.node, i),
                member: idx as u32,
            }));
        }
        // Members are sorted by id, so ordering ties by member index orders them by node id.
        points.sort_unstable_by_key(|p| (p.hash, p.member));

        let index = LineIndex::build(&points);
        Self {
            members,
            points,
            index,
            vnodes,
        }
    }

    /// This ring with its members replaced by `members`, without rebuilding it: only the
    /// points of members that joined or changed weight are hashed, the points of members that
    /// left are dropped, and one merge pass puts the two sorted lists together. Equal to
    /// `Ring::new(members, self.vnodes())` point for point (a burst of joins decided together
    /// costs one pass over the ring, not one rebuild per join).
    pub fn updated(&self, mut members: Vec<Member>) -> Ring {
        members.sort_by(|a, b| a.node.cmp(&b.node));
        members.dedup_by(|a, b| a.node == b.node);
        // Old member index → new member index, `None` when its points must go (it left or its
        // weight changed, so its points are hashed again below).
        let mut remap: Vec<Option<u32>> = vec![None; self.members.len()];
        let mut fresh = Vec::new();
        let (mut i, mut j) = (0usize, 0usize);
        while j < members.len() {
            let wanted = &members[j];
            while i < self.members.len() && self.members[i].node < wanted.node {
                i += 1;
            }
            match self.members.get(i) {
                Some(old) if old.node == wanted.node && old.weight == wanted.weight => {
                    remap[i] = Some(j as u32);
                }
                _ => {
                    let count = self.vnodes.saturating_mul(wanted.weight);
                    fresh.extend((0..count).map(|p| Point {
                        hash: point_hash(&wanted.node, p),
                        member: j as u32,
                    }));
                }
            }
            j += 1;
        }
        fresh.sort_unstable_by_key(|p| (p.hash, p.member));
        let kept = self.points.iter().filter_map(|p| {
            remap[p.member as usize].map(|member| Point {
                hash: p.hash,
                member,
            })
        });
        let mut points = Vec::with_capacity(self.points.len() + fresh.len());
        let mut fresh = fresh.into_iter().peekable();
        for p in kept {
            while let Some(f) = fresh.next_if(|f| (f.hash, f.member) < (p.hash, p.member)) {
                points.push(f);
            }
            points.push(p);
        }
        points.extend(fresh);
        let index = LineIndex::build(&points);
        Ring {
            members,
            points,
            index,
            vnodes: self.vnodes,
        }
    }

    /// Points per unit of weight this ring was built with.
    pub fn vnodes(&self) -> u32 {
        self.vnodes
    }

    /// Number of points on the ring.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Index of the member that owns `hash`.
    fn member_at(&self, hash: u64) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let member = match &self.index {
            Some(index) => index.member_at(&self.points, hash),
            None => search(&self.points, 0..self.points.len(), hash),
        };
        Some(member as usize)
    }

    fn owner_at(&self, hash: u64) -> Option<&NodeId> {
        self.member_at(hash).map(|m| &self.members[m].node)
    }

    /// Hash ranges (inclusive) whose owner differs between two rings.
    ///
    /// Every point of either ring is a boundary; between two consecutive boundaries both rings
    /// have a constant owner, the one at the upper boundary. One merge walk over both point
    /// lists finds the segments that changed owner, so no key outside them is looked at.
    pub fn diff(&self, next: &Ring) -> Vec<(u64, u64)> {
        match (self.points.is_empty(), next.points.is_empty()) {
            (true, true) => return Vec::new(),
            (true, false) | (false, true) => return vec![(0, u64::MAX)],
            _ => {}
        }
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        let mut push = |lo: u64, hi: u64| match ranges.last_mut() {
            Some(last) if last.1.checked_add(1) == Some(lo) => last.1 = hi,
            _ => ranges.push((lo, hi)),
        };
        let (old_points, new_points) = (&self.points, &next.points);
        // The owner at a boundary is the first point at or after it, past the last point the
        // first one (a hash wraps around).
        let old_at =
            |i: usize| &self.members[old_points[i % old_points.len()].member as usize].node;
        let new_at =
            |j: usize| &next.members[new_points[j % new_points.len()].member as usize].node;
        let first = old_points[0].hash.min(new_points[0].hash);
        let wrap_changed = self.owner_at(first) != next.owner_at(first);
        if wrap_changed {
            push(0, first);
        }
        // One merge walk over both point lists, without collecting the boundaries (at 10M
        // points that list alone was 16 B a point at the peak of a ring change): when a
        // boundary comes up, every point below it has been passed, so the cursors stand on
        // the owners at it.
        let (mut i, mut j) = (0, 0);
        let mut previous: Option<u64> = None;
        while i < old_points.len() || j < new_points.len() {
            let a = old_points.get(i).map_or(u64::MAX, |p| p.hash);
            let b = new_points.get(j).map_or(u64::MAX, |p| p.hash);
            let h = a.min(b);
            if previous != Some(h) {
                if let Some(lo) = previous
                    && old_at(i) != new_at(j)
                {
                    push(lo + 1, h);
                }
                previous = Some(h);
            }
            if i < old_points.len() && a == h {
                i += 1;
            }
            if j < new_points.len() && b == h {
                j += 1;
            }
        }
        if let Some(last) = previous
            && wrap_changed
            && last < u64::MAX
        {
            push(last + 1, u64::MAX);
        }
        ranges
    }
}

impl Placement for Ring {
    fn owner_of_hash(&self, _key: &str, hash: u64) -> Option<&NodeId> {
        self.owner_at(hash)
    }

    fn order_of_hash(&self, _key: &str, hash: u64, limit: usize) -> Vec<NodeId> {
        let limit = limit.min(self.members.len());
        let mut seen = vec![false; self.members.len()];
        let mut order = Vec::with_capacity(limit);
        let start = self.points.partition_point(|p| p.hash < hash);
        for i in 0..self.points.len() {
            if order.len() == limit {
                break;
            }
            let member = self.points[(start + i) % self.points.len()].member as usize;
            if !std::mem::replace(&mut seen[member], true) {
                order.push(self.members[member].node.clone());
            }
        }
        order
    }

    fn members(&self) -> &[Member] {
        &self.members
    }

    fn changed_ranges(&self, next: &dyn Placement) -> Option<Vec<(u64, u64)>> {
        next.as_ring().map(|next| self.diff(next))
    }

    fn as_ring(&self) -> Option<&Ring> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::key_hash;

    fn member(id: &str, weight: u32) -> Member {
        Member {
            node: NodeId::new(id).unwrap(),
            weight,
        }
    }

    fn brute_owner(ring: &Ring, hash: u64) -> Option<NodeId> {
        let mut pts = ring.points.clone();
        pts.sort_by_key(|p| (p.hash, p.member));
        pts.iter()
            .find(|p| p.hash >= hash)
            .or(pts.first())
            .map(|p| ring.members[p.member as usize].node.clone())
    }

    #[test]
    fn one_key_without_building_is_the_built_rings_owner() {
        let members = vec![
            member("a", 1),
            member("b", 3),
            member("c", 1),
            member("dd", 2),
        ];
        let ring = Ring::new(members.clone(), 40);
        let mut edges: Vec<u64> = vec![0, 1, u64::MAX, u64::MAX - 1];
        edges.extend(ring.points.iter().take(20).map(|p| p.hash));
        edges.extend(ring.points.iter().take(20).map(|p| p.hash.wrapping_add(1)));
        edges.push(ring.points.last().map_or(0, |p| p.hash + 1));
        for h in (0..3000)
            .map(|i| key_hash(&format!("key-{i}")))
            .chain(edges)
        {
            assert_eq!(
                owner_without_building(&members, 40, h).as_ref(),
                ring.owner_at(h),
                "hash {h}"
            );
        }
        assert_eq!(owner_without_building(&[], 40, 7), None);
    }

    #[test]
    fn empty_ring_owns_nothing() {
        let ring = Ring::new(vec![], 16);
        assert_eq!(ring.owner("k"), None);
    }

    #[test]
    fn indexed_lookup_matches_a_linear_scan() {
        let ring = Ring::new(vec![member("a", 1), member("b", 2), member("c", 1)], 50);
        for i in 0..5000 {
            let key = format!("key-{i}");
            let h = key_hash(&key);
            assert_eq!(ring.owner(&key).cloned(), brute_owner(&ring, h), "{key}");
        }
        for h in [
            0,
            1,
            u64::MAX,
            u64::MAX - 1,
            ring.points[0].hash,
            ring.points[3].hash,
        ] {
            assert_eq!(ring.owner_at(h).cloned(), brute_owner(&ring, h));
        }
    }

    #[test]
    fn diff_covers_exactly_the_keys_that_changed_owner() {
        let before = Ring::new(vec![member("a", 1), member("b", 1), member("c", 1)], 40);
        let after = Ring::new(vec![member("a", 1), member("c", 2), member("d", 1)], 40);
        let ranges = before.diff(&after);
        for i in 0..20_000 {
            let key = format!("k{i}");
            let h = key_hash(&key);
            let changed = before.owner(&key) != after.owner(&key);
            let covered = ranges.iter().any(|&(lo, hi)| lo <= h && h <= hi);
            assert_eq!(changed, covered, "{key}");
        }
    }

    fn same_points(a: &Ring, b: &Ring) -> bool {
        a.members == b.members
            && a.points.len() == b.points.len()
            && a.points
                .iter()
                .zip(&b.points)
                .all(|(x, y)| x.hash == y.hash && x.member == y.member)
    }

    #[test]
    fn an_updated_ring_equals_a_rebuilt_one() {
        let before = Ring::new(vec![member("b", 1), member("c", 2), member("e", 1)], 64);
        let cases = [
            vec![
                member("a", 1),
                member("b", 1),
                member("c", 2),
                member("e", 1),
            ],
            vec![member("b", 1), member("e", 1)],
            vec![member("b", 3), member("d", 1), member("f", 2)],
            vec![],
            vec![member("c", 2)],
        ];
        for members in cases {
            let updated = before.updated(members.clone());
            let rebuilt = Ring::new(members.clone(), 64);
            assert!(same_points(&updated, &rebuilt), "{members:?}");
            for i in 0..2000 {
                let key = format!("k{i}");
                assert_eq!(updated.owner(&key), rebuilt.owner(&key), "{key}");
            }
        }
        let empty = Ring::new(vec![], 64);
        let grown = empty.updated(vec![member("x", 2), member("y", 1)]);
        assert!(same_points(
            &grown,
            &Ring::new(vec![member("x", 2), member("y", 1)], 64)
        ));
    }

    #[test]
    fn point_hash_is_pinned() {
        // Pinned so a change of the byte layout cannot slip through: other languages rely on it.
        let n = NodeId::new("node-1").unwrap();
        let mut bytes = b"node-1\0".to_vec();
        bytes.extend_from_slice(&7u32.to_le_bytes());
        assert_eq!(point_hash(&n, 7), xxh3_64(&bytes));
        assert_eq!(key_hash("user:1"), xxh3_64(b"user:1"));
    }
}
