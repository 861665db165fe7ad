//! Weighted rendezvous (highest random weight) hashing.
//!
//! Each node has a seed `xxh3_64(utf8(node))`; a key's score on a node is
//! `s = xxh3_64_with_seed(u64_le(key_hash), seed)`. With equal weights the highest `s` wins
//! (integer comparison, exact in every language). With unequal weights the score is
//! `-weight / ln(u)` with `u = ((s >> 11) + 0.5) / 2^53` (Schindelhauer & Schomaker's
//! logarithmic method), highest wins. Ties go to the smaller node id.

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use super::{Member, Placement};
use crate::NodeId;

#[derive(Debug, Clone)]
pub struct Rendezvous {
    members: Vec<Member>,
    seeds: Vec<u64>,
    equal_weights: bool,
}

/// A key's raw score on a node (see the module docs).
pub fn score(key_hash: u64, node_seed: u64) -> u64 {
    xxh3_64_with_seed(&key_hash.to_le_bytes(), node_seed)
}

/// A raw score weighted for a member of `weight` (used when weights differ).
pub fn weighted(raw: u64, weight: u32) -> f64 {
    let u = ((raw >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -f64::from(weight) / u.ln()
}

impl Rendezvous {
    pub fn new(mut members: Vec<Member>) -> Self {
        members.sort_by(|a, b| a.node.cmp(&b.node));
        members.dedup_by(|a, b| a.node == b.node);
        let seeds = members
            .iter()
            .map(|m| xxh3_64(m.node.as_str().as_bytes()))
            .collect();
        let equal_weights = members.windows(2).all(|w| w[0].weight == w[1].weight);
        Self {
            members,
            seeds,
            equal_weights,
        }
    }
}

impl Placement for Rendezvous {
    fn owner_of_hash(&self, _key: &str, hash: u64) -> Option<&NodeId> {
        // Members are sorted by id and only a strictly higher score replaces the best, so ties
        // go to the smaller id.
        let mut best: Option<usize> = None;
        if self.equal_weights {
            let mut best_score = 0u64;
            for (i, &seed) in self.seeds.iter().enumerate() {
                let s = score(hash, seed);
                if best.is_none() || s > best_score {
                    best = Some(i);
                    best_score = s;
                }
            }
        } else {
            let mut best_score = f64::NEG_INFINITY;
            for (i, (&seed, m)) in self.seeds.iter().zip(&self.members).enumerate() {
                let s = weighted(score(hash, seed), m.weight);
                if best.is_none() || s > best_score {
                    best = Some(i);
                    best_score = s;
                }
            }
        }
        best.map(|i| &self.members[i].node)
    }

    fn members(&self) -> &[Member] {
        &self.members
    }

    fn order_of_hash(&self, _key: &str, hash: u64, limit: usize) -> Vec<NodeId> {
        // Falling score, ties to the smaller id (members are sorted by id; the sort is
        // stable), as `owner_of_hash` decides the first.
        let mut ranked: Vec<(usize, f64, u64)> = self
            .seeds
            .iter()
            .zip(&self.members)
            .enumerate()
            .map(|(i, (&seed, m))| {
                let s = score(hash, seed);
                (i, weighted(s, m.weight), s)
            })
            .collect();
        if self.equal_weights {
            ranked.sort_by_key(|r| std::cmp::Reverse(r.2));
        } else {
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        }
        ranked
            .into_iter()
            .take(limit)
            .map(|(i, _, _)| self.members[i].node.clone())
            .collect()
    }

    fn changed_ranges(&self, _next: &dyn Placement) -> Option<Vec<(u64, u64)>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(spec: &[(&str, u32)]) -> Vec<Member> {
        spec.iter()
            .map(|(id, w)| Member {
                node: NodeId::new(id).unwrap(),
                weight: *w,
            })
            .collect()
    }

    #[test]
    fn weights_shift_load_proportionally() {
        let r = Rendezvous::new(members(&[("a", 1), ("b", 3)]));
        let mut b = 0;
        for i in 0..40_000 {
            if r.owner(&format!("k{i}")).map(NodeId::as_str) == Some("b") {
                b += 1;
            }
        }
        let share = f64::from(b) / 40_000.0;
        assert!((share - 0.75).abs() < 0.02, "share of b = {share}");
    }

    #[test]
    fn member_order_does_not_matter() {
        let x = Rendezvous::new(members(&[("a", 1), ("b", 1), ("c", 1)]));
        let y = Rendezvous::new(members(&[("c", 1), ("a", 1), ("b", 1)]));
        for i in 0..1000 {
            let k = format!("k{i}");
            assert_eq!(x.owner(&k), y.owner(&k));
        }
    }
}
