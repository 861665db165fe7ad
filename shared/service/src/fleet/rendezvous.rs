//! Who owns which cluster: weighted rendezvous hashing over the live processes of a kind.

use std::collections::BTreeSet;

use pantheon_domain::NodeId;
use pantheon_domain::placement::{self, Member, Strategy};

/// The clusters of `clusters` that `me` owns among the `live` processes (weighted rendezvous
/// hashing, all weights 1: adding or removing a process moves only the clusters it wins or
/// held). Ids that are not valid node ids are hashed under a stand-in, so they still count.
pub fn owned(clusters: &[String], live: &[String], me: &str) -> BTreeSet<String> {
    let members: Vec<Member> = live
        .iter()
        .filter_map(|p| NodeId::new(p).ok())
        .map(|node| Member { node, weight: 1 })
        .collect();
    let ring = placement::build(Strategy::Rendezvous, 1, members);
    clusters
        .iter()
        .filter(|c| ring.owner(c).is_some_and(|o| o.as_str() == me))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize, p: &str) -> Vec<String> {
        (0..n).map(|i| format!("{p}{i}")).collect()
    }

    #[test]
    fn every_cluster_has_exactly_one_owner() {
        let clusters = names(300, "c");
        let live = names(3, "up-");
        let mut seen = BTreeSet::new();
        for p in &live {
            let mine = owned(&clusters, &live, p);
            assert!(mine.len() > 60, "{p} owns only {}", mine.len());
            for c in mine {
                assert!(seen.insert(c), "two owners");
            }
        }
        assert_eq!(seen.len(), clusters.len());
    }

    #[test]
    fn a_new_process_takes_clusters_only_from_others_never_shuffles_them() {
        let clusters = names(300, "c");
        let three = names(3, "up-");
        let mut four = three.clone();
        four.push("up-new".into());
        for p in &three {
            let before = owned(&clusters, &three, p);
            let after = owned(&clusters, &four, p);
            assert!(after.is_subset(&before), "{p} gained a cluster");
        }
        assert!(!owned(&clusters, &four, "up-new").is_empty());
    }
}
