//! A lookup index for the ring that answers almost every lookup from one cache line.
//!
//! The hash space is cut into buckets by the top bits of the hash. Each bucket is one 64-byte
//! line holding, for the points that fall in it, 16 bits of each point's hash just below the
//! bucket bits and the point's member, plus the owner of the first point after the bucket.
//! A lookup reads its line, counts the fragments below the key's fragment with a fixed-length
//! loop (no branch depends on the data, so the CPU overlaps the cache misses of consecutive
//! lookups) and takes the owner at that count.
//!
//! Fragments lose the low bits, so the answer is exact only when no point in the line has the
//! key's fragment (about 1 lookup in 10,000); that case, and buckets with more points than a
//! line holds, fall back to a search over the points (of the bucket, for an overflowing one).

use std::ops::Range;

use super::ring::Point;

/// Points one line can hold.
const SLOTS: usize = 15;
/// At most this many points per bucket on average: buckets are a power of two, so the mean is
/// 4–8. With a Poisson spread of points, at a mean of 8 fewer than 1 bucket in 100 overflows
/// a line (1 in 200,000 at 4); the lines take 8–16 bytes per point.
const TARGET_PER_BUCKET: usize = 8;

/// One bucket. `owners[i]` is the member of the bucket's `i`-th point for `i < count`, and
/// the member owning everything after the bucket's last point in the remaining slots, so the
/// count of fragments below a key's fragment indexes its owner directly.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct Line {
    fragments: [u16; SLOTS],
    owners: [u16; SLOTS + 1],
    /// `u16::MAX` marks a bucket with more than `SLOTS` points: search the points instead. Such
    /// a line keeps the range of its points in `fragments` (see [`Line::spill`]).
    overflow: u16,
}

impl Line {
    /// An overflowing line has no use for its fragments: they hold the range of its points as
    /// two little-endian u32 (`start`, `end`). Ring sizes are capped far below 2^32 points.
    fn set_spill(&mut self, range: Range<usize>) {
        let [a, b, c, d] = (range.start as u32).to_le_bytes();
        let [e, f, g, h] = (range.end as u32).to_le_bytes();
        self.fragments[..4].copy_from_slice(&[
            u16::from_le_bytes([a, b]),
            u16::from_le_bytes([c, d]),
            u16::from_le_bytes([e, f]),
            u16::from_le_bytes([g, h]),
        ]);
    }

    fn spill(&self) -> Range<usize> {
        let w = |i: usize| self.fragments[i].to_le_bytes();
        let [a, b] = w(0);
        let [c, d] = w(1);
        let [e, f] = w(2);
        let [g, h] = w(3);
        u32::from_le_bytes([a, b, c, d]) as usize..u32::from_le_bytes([e, f, g, h]) as usize
    }
}

const EMPTY_LINE: Line = Line {
    // Unused slots hold the largest fragment so they never count as below a key.
    fragments: [u16::MAX; SLOTS],
    owners: [0; SLOTS + 1],
    overflow: 0,
};

#[derive(Debug, Clone)]
pub(super) struct LineIndex {
    lines: Vec<Line>,
    /// Bucket bits; a hash's bucket is `hash >> (64 - bits)`.
    bits: u32,
}

impl LineIndex {
    /// Builds the index over `(hash, member)` points sorted by hash. Returns `None` when there
    /// are no points or more members than a 16-bit owner can name.
    pub(super) fn build(points: &[Point]) -> Option<Self> {
        let len = points.len();
        let buckets_wanted = len.div_ceil(TARGET_PER_BUCKET).max(2);
        let bits = buckets_wanted
            .next_power_of_two()
            .trailing_zeros()
            .clamp(1, 24);
        let shift = 64 - bits;
        let mut lines = vec![EMPTY_LINE; 1usize << bits];
        let mut counts = vec![0usize; lines.len()];
        let first_member = points.first()?.member;

        for (i, p) in points.iter().enumerate() {
            let owner = u16::try_from(p.member).ok()?;
            let b = (p.hash >> shift) as usize;
            let slot = counts[b];
            counts[b] += 1;
            if slot < SLOTS {
                lines[b].fragments[slot] = fragment(p.hash, bits);
                lines[b].owners[slot] = owner;
            }
            if slot == SLOTS {
                lines[b].overflow = u16::MAX;
            }
            if slot >= SLOTS {
                // Points are sorted, so this bucket's points are the `slot + 1` up to here.
                lines[b].set_spill(i - slot..i + 1);
            }
        }

        // Walk buckets from the top down, carrying the owner of the next point above: past the
        // last point of the ring, keys wrap to the first one.
        let mut next_owner = first_member as u16;
        for (line, &count) in lines.iter_mut().zip(&counts).rev() {
            if count > SLOTS {
                next_owner = line.owners[0];
                continue;
            }
            for slot in count..=SLOTS {
                line.owners[slot] = next_owner;
            }
            if count > 0 {
                next_owner = line.owners[0];
            }
        }
        Some(Self { lines, bits })
    }

    /// The member owning `hash` among `points`, the sorted points this index was built from.
    pub(super) fn member_at(&self, points: &[Point], hash: u64) -> u32 {
        let line = &self.lines[(hash >> (64 - self.bits)) as usize];
        let key = fragment(hash, self.bits);
        let mut below = 0usize;
        let mut tie = false;
        for &f in &line.fragments {
            below += usize::from(f < key);
            tie |= f == key;
        }
        if line.overflow != 0 {
            return search(points, line.spill(), hash);
        }
        if tie {
            return search(points, 0..points.len(), hash);
        }
        u32::from(line.owners[below])
    }
}

/// The member of the first point in `within` at or after `hash`, wrapping past the last point
/// of the ring to the first. `points` must be sorted and non-empty; `within` must start at or
/// before the answer and end at or after it (the point just past `within` is checked too).
pub(super) fn search(points: &[Point], within: Range<usize>, hash: u64) -> u32 {
    let p = within.start + points[within].partition_point(|pt| pt.hash < hash);
    points.get(p).unwrap_or(&points[0]).member
}

/// The 16 bits of `hash` just below its top `bits` bits.
fn fragment(hash: u64, bits: u32) -> u16 {
    ((hash << bits) >> 48) as u16
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The definition: first point at or after the hash, else the first point.
    fn brute(points: &[Point], hash: u64) -> u32 {
        points
            .iter()
            .find(|p| p.hash >= hash)
            .unwrap_or(&points[0])
            .member
    }

    fn sorted(mut points: Vec<Point>) -> Vec<Point> {
        points.sort_unstable_by_key(|p| (p.hash, p.member));
        points
    }

    /// Hashes near every point (equal, one off, same fragment) plus random ones.
    fn probes(points: &[Point], random: &[u64]) -> Vec<u64> {
        let mut probes = vec![0, 1, u64::MAX, u64::MAX - 1];
        for p in points {
            probes.extend([
                p.hash,
                p.hash.wrapping_sub(1),
                p.hash.wrapping_add(1),
                p.hash ^ 1,
            ]);
        }
        probes.extend_from_slice(random);
        probes
    }

    fn check(points: Vec<Point>, random: &[u64]) {
        let points = sorted(points);
        let index = LineIndex::build(&points).expect("points and few members");
        for h in probes(&points, random) {
            assert_eq!(
                index.member_at(&points, h),
                brute(&points, h),
                "hash {h:#x}"
            );
        }
    }

    proptest! {
        /// Uniform points, as real rings have.
        #[test]
        fn lookups_match_the_definition(
            hashes in prop::collection::vec(any::<u64>(), 1..400),
            random in prop::collection::vec(any::<u64>(), 0..200),
        ) {
            let points = hashes.iter().enumerate()
                .map(|(i, &hash)| Point { hash, member: (i % 7) as u32 })
                .collect();
            check(points, &random);
        }

        /// Points crowded into a few narrow ranges: lines overflow and fragments collide.
        #[test]
        fn crowded_points_match_the_definition(
            bases in prop::collection::vec(any::<u64>(), 1..4),
            offsets in prop::collection::vec((0usize..4, 0u64..5_000), 1..300),
            random in prop::collection::vec(any::<u64>(), 0..100),
        ) {
            let points = offsets.iter().enumerate()
                .map(|(i, &(b, off))| Point {
                    hash: bases[b % bases.len()].wrapping_add(off),
                    member: (i % 5) as u32,
                })
                .collect();
            check(points, &random);
        }
    }

    #[test]
    fn too_many_members_for_16_bits_builds_no_index() {
        let points = vec![Point {
            hash: 1,
            member: 70_000,
        }];
        assert!(LineIndex::build(&points).is_none());
        assert!(LineIndex::build(&[]).is_none());
    }

    #[test]
    fn a_spill_range_round_trips() {
        let mut line = EMPTY_LINE;
        line.set_spill(70_000..16_777_216);
        assert_eq!(line.spill(), 70_000..16_777_216);
    }

    #[test]
    fn a_line_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Line>(), 64);
        assert_eq!(std::mem::align_of::<Line>(), 64);
    }
}
