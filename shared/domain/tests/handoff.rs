//! Hand-offs of planned moves (docs/adr/0016): a node joined with `handoff` keeps the keys a
//! planned move gives away until it releases them or the move is forced; deaths stay
//! immediate; the outcome does not depend on where batches were cut; tokens still grow.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::*;
use pantheon_domain::entry::{Command, LogEntry};
use pantheon_domain::policy::PolicyChange;
use pantheon_domain::{EntryId, KeyChange, State};
use proptest::prelude::*;

fn join_h(id: &str) -> LogEntry {
    LogEntry::new(Command::Join {
        node: node(id),
        url: format!("http://{id}.local:8080/health"),
        weight: None,
        handoff: true,
    })
}

fn drain(id: &str) -> LogEntry {
    LogEntry::new(Command::Drain { node: node(id) })
}

fn undrain(id: &str) -> LogEntry {
    LogEntry::new(Command::Undrain { node: node(id) })
}

fn released(id: &str, keys: &[String]) -> LogEntry {
    LogEntry::new(Command::Released {
        node: node(id),
        keys: keys.to_vec(),
    })
}

fn forced(id: &str) -> LogEntry {
    LogEntry::new(Command::HandoffForced { node: node(id) })
}

fn handing(s: &Scenario, id: &str) -> Vec<String> {
    let mut keys: Vec<String> = s
        .state
        .handing_off()
        .of(&node(id))
        .map(|(_, k)| k.to_owned())
        .collect();
    keys.sort();
    keys
}

fn owned_by(s: &Scenario, id: &str) -> Vec<String> {
    let mut keys: Vec<String> = s
        .state
        .keys()
        .iter()
        .filter(|(_, o)| o.is_some_and(|o| o.as_str() == id))
        .map(|(k, _)| k.to_owned())
        .collect();
    keys.sort();
    keys
}

fn cluster() -> Scenario {
    Scenario::given([join_h("a"), join_h("b"), join_h("c"), assign(keys(300))])
}

#[test]
fn a_drained_node_keeps_its_keys_until_it_releases_them_then_they_move_in_one_commit() {
    let mut s = cluster();
    let mine = owned_by(&s, "a");
    assert!(!mine.is_empty());
    let token_before = s.state.token_of(&node("a")).unwrap();
    let applied = s.when(&drain("a")).unwrap();
    assert!(Scenario::event_names(&applied).contains(&"handoff_started"));
    assert_eq!(owned_by(&s, "a"), mine, "nothing moves before the release");
    assert_eq!(handing(&s, "a"), mine);
    let asked = applied
        .key_changes
        .iter()
        .filter(|c| matches!(c, KeyChange::HandoffAsked { .. }))
        .count();
    assert_eq!(asked, mine.len());
    // Still the owner, with a token no smaller than before.
    let (owner, token_handing) = s.state.owner_with_token(&mine[0]).unwrap();
    assert_eq!(owner.as_str(), "a");
    assert!(token_handing >= token_before);

    let applied = s.when(&released("a", &mine)).unwrap();
    let names = Scenario::event_names(&applied);
    assert!(
        names.contains(&"handed_off") && names.contains(&"rebalanced"),
        "{names:?}"
    );
    assert!(owned_by(&s, "a").is_empty());
    assert!(handing(&s, "a").is_empty());
    assert!(
        applied
            .key_changes
            .iter()
            .all(|c| matches!(c, KeyChange::HandedOver { .. }))
    );
    for key in &mine {
        let (owner, token) = s.state.owner_with_token(key).unwrap();
        assert_ne!(owner.as_str(), "a");
        assert!(
            token > token_handing,
            "{key}: new owner's token {token} ≤ {token_handing}"
        );
    }
    s.assert_keymap_consistent();
}

#[test]
fn a_join_taking_a_share_waits_for_the_old_owners() {
    let mut s = cluster();
    s.when(&join_h("d")).unwrap();
    let applied = s.answer("d");
    assert!(
        owned_by(&s, "d").is_empty(),
        "d gets nothing before releases"
    );
    let asked: BTreeMap<String, usize> =
        applied
            .key_changes
            .iter()
            .fold(BTreeMap::new(), |mut m, c| {
                if let KeyChange::HandoffAsked { from, to, .. } = c {
                    assert_eq!(to.as_ref().unwrap().as_str(), "d");
                    *m.entry(from.to_string()).or_default() += 1;
                }
                m
            });
    assert_eq!(asked.len(), 3, "every old owner gives some: {asked:?}");
    for n in ["a", "b", "c"] {
        let keys = handing(&s, n);
        s.when(&released(n, &keys)).unwrap();
    }
    assert!(!owned_by(&s, "d").is_empty());
    s.assert_keymap_consistent();
}

#[test]
fn a_forced_handoff_moves_everything_without_state() {
    let mut s = cluster();
    s.when(&drain("b")).unwrap();
    let waiting = handing(&s, "b");
    let applied = s.when(&forced("b")).unwrap();
    assert!(Scenario::event_names(&applied).contains(&"handoff_forced"));
    assert_eq!(applied.key_changes.len(), waiting.len());
    assert!(
        applied
            .key_changes
            .iter()
            .all(|c| matches!(c, KeyChange::Moved { .. }))
    );
    assert!(owned_by(&s, "b").is_empty());
    // A late release changes nothing.
    let late = s.when(&released("b", &waiting)).unwrap();
    assert!(late.key_changes.is_empty());
    s.assert_keymap_consistent();
}

#[test]
fn a_death_while_handing_off_moves_the_keys_at_once() {
    let mut s = cluster();
    s.when(&drain("a")).unwrap();
    assert!(!handing(&s, "a").is_empty());
    let epoch = s.state.node(&node("a")).unwrap().epoch;
    for _ in 0..3 {
        s.when(&probe("a", epoch, false)).unwrap();
    }
    // Drained and dead: its keys moved without waiting.
    assert!(owned_by(&s, "a").is_empty());
    assert!(handing(&s, "a").is_empty());
    s.assert_keymap_consistent();
}

#[test]
fn an_undone_move_keeps_the_keys_and_a_late_release_gives_them_back() {
    let mut s = cluster();
    let mine = owned_by(&s, "a");
    s.when(&drain("a")).unwrap();
    s.when(&undrain("a")).unwrap();
    assert!(handing(&s, "a").is_empty());
    assert_eq!(owned_by(&s, "a"), mine);
    let applied = s.when(&released("a", &mine)).unwrap();
    assert_eq!(owned_by(&s, "a"), mine, "nothing moved");
    let kept = applied
        .key_changes
        .iter()
        .filter(|c| matches!(c, KeyChange::Kept { .. }))
        .count();
    assert_eq!(kept, mine.len(), "the worker hears it still owns them");
}

#[test]
fn plain_nodes_and_a_zero_timeout_move_at_once_as_before() {
    let mut s = Scenario::given([join("a"), join("b"), assign(keys(100))]);
    s.when(&drain("a")).unwrap();
    assert!(owned_by(&s, "a").is_empty());

    let mut s = cluster();
    let off = PolicyChange {
        handoff_timeout: Some(0),
        ..PolicyChange::default()
    };
    s.when(&LogEntry::new(Command::Policy(off))).unwrap();
    s.when(&drain("a")).unwrap();
    assert!(owned_by(&s, "a").is_empty());
    s.assert_keymap_consistent();
}

#[test]
fn turning_handoffs_off_moves_what_was_waiting() {
    let mut s = cluster();
    s.when(&drain("c")).unwrap();
    assert!(!handing(&s, "c").is_empty());
    let off = PolicyChange {
        handoff_timeout: Some(0),
        ..PolicyChange::default()
    };
    s.when(&LogEntry::new(Command::Policy(off))).unwrap();
    // The policy entry changes no members: the next change of members settles it.
    s.state.settle();
    assert!(owned_by(&s, "c").is_empty());
    s.assert_keymap_consistent();
}

#[test]
fn a_restored_state_knows_what_is_handing_off() {
    let mut s = cluster();
    s.when(&drain("a")).unwrap();
    let st = &s.state;
    let restored = State::restore(
        *st.policy(),
        st.next_epoch(),
        st.nodes().cloned(),
        st.keys().iter().map(|(k, o)| (k.to_owned(), o.cloned())),
        st.recent_cmds().map(|(c, r)| (c.to_owned(), r)).collect(),
    );
    assert_eq!(restored.handing_off(), st.handing_off());
}

fn small_node() -> impl Strategy<Value = String> {
    (0u8..5).prop_map(|i| format!("n{i}"))
}

fn some_keys() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(0u32..80, 1..40)
        .prop_map(|ks| ks.into_iter().map(|k| format!("k{k}")).collect())
}

/// A fleet of nodes that hand off (and some that do not), with their workers' releases and
/// the leader's forced hand-offs mixed in.
fn fleet_entry() -> impl Strategy<Value = LogEntry> {
    prop_oneof![
        3 => small_node().prop_map(|n| join_h(&n)),
        1 => small_node().prop_map(|n| join(&n)),
        1 => small_node().prop_map(|n| leave(&n)),
        2 => small_node().prop_map(|n| drain(&n)),
        2 => small_node().prop_map(|n| undrain(&n)),
        1 => (small_node(), 1u32..4).prop_map(|(n, weight)| LogEntry::new(Command::Weight { node: node(&n), weight })),
        2 => some_keys().prop_map(assign),
        3 => (small_node(), some_keys()).prop_map(|(n, keys)| released(&n, &keys)),
        1 => small_node().prop_map(|n| forced(&n)),
        8 => (small_node(), 1u64..7, any::<bool>()).prop_map(|(n, epoch, ok)| probe(&n, epoch, ok)),
        1 => Just(LogEntry::new(Command::Policy(PolicyChange { fall: Some(1), rise: Some(1), ..PolicyChange::default() }))),
        1 => prop_oneof![Just(0u32), Just(10_000)].prop_map(|t| LogEntry::new(Command::Policy(PolicyChange { handoff_timeout: Some(t), ..PolicyChange::default() }))),
    ]
}

/// One owner in a key's history: node, token, the entry that made it the owner.
type Owner = (Option<String>, Option<u64>, EntryId);

fn id(i: usize) -> EntryId {
    EntryId::new(1000 + i as u64, 0)
}

/// Owners, keys handing off and the checksum after folding `log` with settles after the
/// entries in `cuts` (and at the end).
fn fold_cut(log: &[LogEntry], cuts: &[usize]) -> (u64, Vec<(String, Option<String>)>, String) {
    let mut state = State::default();
    for (i, entry) in log.iter().enumerate() {
        let _ = state.apply_deferred(id(i), entry);
        if cuts.contains(&i) {
            state.settle();
        }
    }
    state.settle();
    let owners = state
        .keys()
        .iter()
        .map(|(k, o)| (k.to_owned(), o.map(|o| o.to_string())))
        .collect();
    (
        state.checksum(),
        owners,
        format!("{:?}", state.handing_off()),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// Where the projector cuts its batches changes nothing: owners, keys handing off and
    /// the checksum are those of settling after every entry.
    #[test]
    fn the_outcome_does_not_depend_on_the_batch_cuts(
        log in proptest::collection::vec(fleet_entry(), 0..80),
        cuts in proptest::collection::vec(0usize..80, 0..10),
    ) {
        let every: Vec<usize> = (0..log.len()).collect();
        prop_assert_eq!(fold_cut(&log, &cuts), fold_cut(&log, &every));
    }

    /// A key's owner changes only to a holder of a larger token, and a key owned by a node
    /// that hands off and stays healthy changes owner only through its release or a forced
    /// hand-off.
    #[test]
    fn owners_change_with_larger_tokens_and_healthy_hand_off_nodes_give_keys_only_when_released(
        log in proptest::collection::vec(fleet_entry(), 0..100),
    ) {
        let mut state = State::default();
        let keys: Vec<String> = (0..80).map(|i| format!("k{i}")).collect();
        // Each key's last owner (`None`: nobody) and the largest token any owner held.
        let mut seen: BTreeMap<String, (Option<String>, u64)> = BTreeMap::new();
        for (i, entry) in log.iter().enumerate() {
            let before: BTreeMap<String, bool> = state
                .nodes()
                .map(|n| (n.id.to_string(), state.can_hand_off(&n.id)))
                .collect();
            let Ok(applied) = state.apply(id(i), entry) else { continue };
            let releases = matches!(entry.command, Command::Released { .. } | Command::HandoffForced { .. });
            for key in &keys {
                let Some((owner, token)) = state.owner_with_token(key).map(|(n, t)| (n.to_string(), t)) else {
                    if let Some(entry) = seen.get_mut(key) {
                        entry.0 = None;
                    }
                    continue;
                };
                if let Some((was, was_token)) = seen.get(key)
                    && was.as_ref() != Some(&owner)
                {
                    prop_assert!(token > *was_token, "{key}: {was:?}→{owner} with token {token} ≤ {was_token}");
                    if let Some(was) = was {
                        let still_able = before.get(was).copied().unwrap_or(false)
                            && state.can_hand_off(&pantheon_domain::NodeId::new(was).unwrap());
                        if still_able && state.keys().get(key).is_some() {
                            prop_assert!(releases, "{key} left {was} (able to hand off) without a release: {entry}");
                        }
                    }
                    let _ = &applied;
                }
                seen.insert(key.clone(), (Some(owner), token));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// `explain`'s owner of an assigned key (one key, no placement built) is the fold's,
    /// hand-offs, releases and forced moves included.
    #[test]
    fn explain_follows_hand_offs_as_the_fold_does(log in proptest::collection::vec(fleet_entry(), 0..80)) {
        use pantheon_domain::explain::Explainer;
        use pantheon_domain::Origin;
        let keys: Vec<String> = (0..8).map(|i| format!("k{i}")).collect();
        let mut full = vec![assign(keys.clone())];
        full.extend(log);
        let mut state = State::default();
        let mut explainers: Vec<Explainer> = keys.iter().map(|k| Explainer::new(k, State::default(), None)).collect();
        for (i, entry) in full.iter().enumerate() {
            let _ = state.apply(id(i), entry);
            for e in &mut explainers {
                e.entry(id(i), entry, Origin::Service);
            }
        }
        for (key, e) in keys.iter().zip(explainers) {
            let fold = state.keys().get(key).and_then(|o| o.map(|n| n.to_string()));
            let explained = e.finish().history.last().and_then(|o| o.node.as_ref().map(|n| n.to_string()));
            prop_assert_eq!(fold, explained, "{}", key);
        }
    }

    /// `explain`'s history of a key (owners, tokens and causes) is the fold's, read after
    /// every entry: always for the full explanation, and for the members-only one whenever
    /// it does not ask for the full one. Tokens are where the two differ: a release of other
    /// keys raises this key's floor.
    #[test]
    fn explained_tokens_are_the_folds(
        log in proptest::collection::vec(fleet_entry(), 0..80),
        plain in any::<bool>(),
    ) {
        use pantheon_domain::explain::Explainer;
        use pantheon_domain::Origin;
        // Without hand-off joins the members-only explanation must be exact by itself.
        let log: Vec<LogEntry> = if plain {
            log.into_iter()
                .map(|e| match e.command {
                    Command::Join { node, url, weight, .. } => {
                        LogEntry::new(Command::Join { node, url, weight, handoff: false })
                    }
                    _ => e,
                })
                .collect()
        } else {
            log
        };
        let keys: Vec<String> = (0..8).map(|i| format!("k{i}")).collect();
        let mut full_log = vec![assign(keys[..4].to_vec())];
        full_log.extend(log);
        let mut state = State::default();
        let mut folded: Vec<Vec<Owner>> = vec![Vec::new(); keys.len()];
        let mut fast: Vec<Explainer> = keys.iter().map(|k| Explainer::new(k, State::default(), None)).collect();
        let mut full: Vec<Explainer> = keys.iter().map(|k| Explainer::full(k, State::default(), None)).collect();
        for (i, entry) in full_log.iter().enumerate() {
            let _ = state.apply(id(i), entry);
            for (k, key) in keys.iter().enumerate() {
                let owner = match state.keys().get(key) {
                    Some(o) => o.cloned(),
                    None => state.placement().owner(key).cloned(),
                };
                let token = owner.as_ref().and_then(|n| state.token_if_owner(n));
                let owner = owner.map(|n| n.to_string());
                let last = folded[k].last().map(|h| h.0.clone());
                if last.as_ref() != Some(&owner) && !(last.is_none() && owner.is_none()) {
                    folded[k].push((owner, token, id(i)));
                }
            }
            for e in fast.iter_mut().chain(full.iter_mut()) {
                e.entry(id(i), entry, Origin::Service);
            }
        }
        let history = |e: Explainer| -> Vec<Owner> {
            e.finish().history.into_iter().map(|o| (o.node.map(|n| n.to_string()), o.token, o.cause)).collect()
        };
        for ((key, want), (fast, full)) in keys.iter().zip(&folded).zip(fast.into_iter().zip(full)) {
            prop_assert!(!full.needs_full_fold());
            if plain {
                prop_assert!(!fast.needs_full_fold(), "{}: no node hands off", key);
            }
            if !fast.needs_full_fold() {
                prop_assert_eq!(&history(fast), want, "{} (members only)", key);
            }
            prop_assert_eq!(&history(full), want, "{} (full)", key);
        }
    }
}

#[test]
fn a_hand_off_knows_when_it_began_and_a_new_one_begins_afresh() {
    let mut s = cluster();
    s.when(&drain("a")).unwrap();
    let first = s.state.handing_off().started(&node("a")).unwrap();
    assert_eq!(first, s.clock, "began at the drain");
    let keys = handing(&s, "a");
    s.when(&released("a", &keys)).unwrap();
    assert_eq!(s.state.handing_off().started(&node("a")), None);
    s.when(&undrain("a")).unwrap();
    // Now b and c hand a's share back: their hand-offs begin at the undrain.
    let undrain_at = s.clock;
    assert_eq!(s.state.handing_off().started(&node("b")), Some(undrain_at));
    for n in ["b", "c"] {
        let keys = handing(&s, n);
        s.when(&released(n, &keys)).unwrap();
    }
    assert!(!owned_by(&s, "a").is_empty());
    s.when(&drain("a")).unwrap();
    assert!(s.state.handing_off().started(&node("a")).unwrap() > first);
}
