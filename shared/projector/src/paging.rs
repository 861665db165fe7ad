//! How a fold sizes its XRANGE pages of the log. Redis cannot cap a reply by size, and a page
//! is parsed whole before it is folded, so the choice is between speed over narrow entries
//! and memory bounded whatever the entries hold.

use pantheon_domain::limits::MAX_FIELDS;
use pantheon_store::RawEntry;

/// Field pairs a bounded page holds at most (two pages are held at once: one folding, the
/// next arriving).
const BOUNDED_PAIRS: usize = 100_000;
/// Entries per bounded page: as many as fit [`BOUNDED_PAIRS`] when every one is as wide as
/// the decoder accepts (a full 10,000-key `assign`).
const BOUNDED: usize = max_usize(1, BOUNDED_PAIRS / MAX_FIELDS);
const _: () = assert!(BOUNDED * MAX_FIELDS <= BOUNDED_PAIRS || BOUNDED == 1);

/// Most entries per adaptive page.
const ADAPTIVE_MAX: usize = 10_000;
/// Adaptive pages are cut to about this many field pairs, from the previous page's width.
const ADAPTIVE_PAIRS: usize = 200_000;
/// The first adaptive page, before the width of the log's entries is known.
const ADAPTIVE_FIRST: usize = 16;

/// How a fold sizes its pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paging {
    /// Every page fits [`BOUNDED_PAIRS`] however wide its entries are: a round trip per 9
    /// entries. For `rebuild --verify`, whose peak memory is the key map plus two pages. Sizing
    /// a page from the entries already read cannot bound it: after a few narrow `join`s, a
    /// page asked for 10,000 entries and got every 10,000-key `assign` of the log at once (5M
    /// keys, about 1 GB parsed; issue 19).
    Bounded,
    /// Each page sized from the previous page's average width, up to 10,000 entries: fast over
    /// narrow entries (probes, joins), unbounded when wide entries follow narrow ones. For the
    /// projector's own folds, which must keep up with the log.
    Adaptive,
}

impl Paging {
    /// Entries to ask for in the first page.
    pub fn first(self) -> usize {
        match self {
            Paging::Bounded => BOUNDED,
            Paging::Adaptive => ADAPTIVE_FIRST,
        }
    }

    /// Entries to ask for in the page after `page`.
    pub fn after(self, page: &[RawEntry]) -> usize {
        match self {
            Paging::Bounded => BOUNDED,
            Paging::Adaptive => {
                let pairs: usize = page.iter().map(|e| e.fields.len()).sum();
                (ADAPTIVE_PAIRS * page.len() / pairs.max(1)).clamp(1, ADAPTIVE_MAX)
            }
        }
    }
}

const fn max_usize(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pantheon_domain::EntryId;

    fn entries(n: usize, pairs: usize) -> Vec<RawEntry> {
        (0..n)
            .map(|i| RawEntry {
                id: EntryId::new(i as u64 + 1, 0),
                fields: vec![(b"k".to_vec(), b"v".to_vec()); pairs],
            })
            .collect()
    }

    #[test]
    fn bounded_pages_fit_the_widest_entries_and_adaptive_ones_follow_the_log() {
        let widest = entries(Paging::Bounded.first(), MAX_FIELDS);
        let pairs: usize = widest.iter().map(|e| e.fields.len()).sum();
        assert!(pairs <= BOUNDED_PAIRS);
        assert_eq!(Paging::Bounded.after(&entries(16, 3)), BOUNDED);
        assert_eq!(Paging::Adaptive.after(&entries(16, 3)), ADAPTIVE_MAX);
        assert_eq!(Paging::Adaptive.after(&entries(9, 10_002)), 19);
    }
}
