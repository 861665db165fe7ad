//! The keys the worker believes it owns, with their tokens, and the pure rules that turn a
//! feed line into callbacks: no I/O here, so the rules are tested without Redis.

use std::collections::{BTreeMap, BTreeSet};

use pantheon_client::{NodeId, WatchLine, WatchOp};

/// Key → the token it was acquired with (or the latest snapshot's).
pub(crate) type Owned = BTreeMap<String, u64>;

/// One callback to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Acquire {
        keys: Vec<String>,
        token: u64,
        from: Option<NodeId>,
    },
    Release {
        keys: Vec<String>,
        token: u64,
        to: Option<NodeId>,
    },
    /// Hand these owned keys over to `to`: store their state, then release them.
    HandOff {
        keys: Vec<String>,
        to: Option<NodeId>,
    },
}

/// The callbacks `line` means for a worker that owns `owned`. A snapshot is compared with
/// `owned`, so only true changes are named: release what is no longer owned, then acquire
/// what is new (a snapshot at the very start, with nothing owned, is one acquire of all).
/// Keys named by an acquire or release are passed on as the feed says.
pub(crate) fn plan(owned: &Owned, line: &WatchLine) -> Vec<Step> {
    let steps = match line.op {
        WatchOp::Acquire => vec![Step::Acquire {
            keys: line.keys.clone(),
            token: line.token,
            from: line.peer.clone(),
        }],
        // Only keys it holds: after a crash a hand-off line may name keys a snapshot since
        // showed gone.
        WatchOp::Handoff => vec![Step::HandOff {
            keys: line
                .keys
                .iter()
                .filter(|k| owned.contains_key(*k))
                .cloned()
                .collect(),
            to: line.peer.clone(),
        }],
        WatchOp::Release => vec![Step::Release {
            keys: line.keys.clone(),
            token: line.token,
            to: line.peer.clone(),
        }],
        WatchOp::Snapshot => {
            let now: BTreeSet<&str> = line.keys.iter().map(String::as_str).collect();
            let gone = owned
                .keys()
                .filter(|k| !now.contains(k.as_str()))
                .cloned()
                .collect();
            let new = line
                .keys
                .iter()
                .filter(|k| !owned.contains_key(*k))
                .cloned()
                .collect();
            vec![
                Step::Release {
                    keys: gone,
                    token: line.token,
                    to: None,
                },
                Step::Acquire {
                    keys: new,
                    token: line.token,
                    from: None,
                },
            ]
        }
    };
    steps
        .into_iter()
        .filter(|s| match s {
            Step::Acquire { keys, .. }
            | Step::Release { keys, .. }
            | Step::HandOff { keys, .. } => !keys.is_empty(),
        })
        .collect()
}

/// Applies `line` to `owned` (a snapshot replaces the set, an acquire adds, a release
/// removes). Keys kept across a snapshot take its token, the node's current one.
pub(crate) fn fold(owned: &mut Owned, line: &WatchLine) {
    match line.op {
        WatchOp::Snapshot => {
            *owned = line.keys.iter().map(|k| (k.clone(), line.token)).collect();
        }
        WatchOp::Acquire => owned.extend(line.keys.iter().map(|k| (k.clone(), line.token))),
        WatchOp::Release => {
            for k in &line.keys {
                owned.remove(k);
            }
        }
        // Still owned until the release line.
        WatchOp::Handoff => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pantheon_client::EntryId;

    fn line(op: WatchOp, keys: &[&str], token: u64, peer: Option<&str>) -> WatchLine {
        WatchLine {
            id: EntryId::ZERO,
            op,
            keys: keys.iter().map(|k| (*k).to_owned()).collect(),
            token,
            peer: peer.map(|p| NodeId::new(p).expect("node id")),
            cause: None,
            state: false,
        }
    }

    fn owned(keys: &[(&str, u64)]) -> Owned {
        keys.iter().map(|(k, t)| ((*k).to_owned(), *t)).collect()
    }

    #[test]
    fn a_snapshot_at_start_acquires_the_whole_set_from_nobody() {
        let snap = line(WatchOp::Snapshot, &["a", "b"], 7, None);
        assert_eq!(
            plan(&Owned::new(), &snap),
            vec![Step::Acquire {
                keys: vec!["a".into(), "b".into()],
                token: 7,
                from: None
            }]
        );
    }

    #[test]
    fn a_snapshot_after_a_gap_names_only_true_changes_release_first() {
        let held = owned(&[("a", 3), ("b", 3), ("c", 3)]);
        let snap = line(WatchOp::Snapshot, &["b", "c", "d"], 9, None);
        assert_eq!(
            plan(&held, &snap),
            vec![
                Step::Release {
                    keys: vec!["a".into()],
                    token: 9,
                    to: None
                },
                Step::Acquire {
                    keys: vec!["d".into()],
                    token: 9,
                    from: None
                },
            ]
        );
        let mut after = held.clone();
        fold(&mut after, &snap);
        assert_eq!(after, owned(&[("b", 9), ("c", 9), ("d", 9)]));
    }

    #[test]
    fn a_snapshot_equal_to_what_is_held_calls_nothing() {
        let held = owned(&[("a", 3)]);
        assert!(plan(&held, &line(WatchOp::Snapshot, &["a"], 5, None)).is_empty());
    }

    #[test]
    fn acquire_and_release_pass_on_the_feed_line_with_its_peer() {
        let acq = line(WatchOp::Acquire, &["x"], 11, Some("n2"));
        let rel = line(WatchOp::Release, &["a"], 12, Some("n3"));
        let mut held = owned(&[("a", 3)]);
        assert_eq!(
            plan(&held, &acq),
            vec![Step::Acquire {
                keys: vec!["x".into()],
                token: 11,
                from: Some(NodeId::new("n2").expect("id"))
            }]
        );
        fold(&mut held, &acq);
        assert_eq!(
            plan(&held, &rel),
            vec![Step::Release {
                keys: vec!["a".into()],
                token: 12,
                to: Some(NodeId::new("n3").expect("id"))
            }]
        );
        fold(&mut held, &rel);
        assert_eq!(held, owned(&[("x", 11)]));
    }

    #[test]
    fn a_handoff_names_only_held_keys_and_keeps_them_until_the_release() {
        let held = owned(&[("a", 3), ("b", 3)]);
        let ask = line(WatchOp::Handoff, &["a", "z"], 3, Some("n2"));
        assert_eq!(
            plan(&held, &ask),
            vec![Step::HandOff {
                keys: vec!["a".into()],
                to: Some(NodeId::new("n2").expect("id"))
            }]
        );
        let mut after = held.clone();
        fold(&mut after, &ask);
        assert_eq!(after, held);
    }
}
