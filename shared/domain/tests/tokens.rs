//! Ownership tokens: every newer owner of a key holds a larger token than any earlier owner,
//! tokens never fall, and they do not depend on where batches were cut (the checksum covers
//! them, and `batching.rs` checks that the checksum does not depend on the cuts).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::*;
use pantheon_domain::entry::{Command, LogEntry};
use pantheon_domain::placement::Strategy as Placement;
use pantheon_domain::policy::PolicyChange;
use pantheon_domain::{EntryId, State};
use proptest::prelude::*;

fn small_node() -> impl Strategy<Value = String> {
    (0u8..6).prop_map(|i| format!("n{i}"))
}

fn fleet_entry() -> impl Strategy<Value = LogEntry> {
    prop_oneof![
        3 => small_node().prop_map(|n| join(&n)),
        1 => small_node().prop_map(|n| leave(&n)),
        1 => small_node().prop_map(|n| LogEntry::new(Command::Drain { node: node(&n) })),
        1 => small_node().prop_map(|n| LogEntry::new(Command::Undrain { node: node(&n) })),
        1 => (small_node(), 1u32..4).prop_map(|(n, weight)| LogEntry::new(Command::Weight { node: node(&n), weight })),
        1 => proptest::collection::vec(0u32..60, 1..20).prop_map(|ks| assign(ks.into_iter().map(|k| format!("k{k}")))),
        10 => (small_node(), 1u64..14, any::<bool>()).prop_map(|(n, epoch, ok)| probe(&n, epoch, ok)),
        1 => (proptest::option::of(prop_oneof![Just(Placement::Ring), Just(Placement::Rendezvous)]), proptest::option::of(prop_oneof![Just(8u32), Just(64)]), proptest::option::of(prop_oneof![Just(0u32), Just(50)]))
            .prop_map(|(strategy, vnodes, panic)| LogEntry::new(Command::Policy(PolicyChange { strategy, vnodes, panic, ..PolicyChange::default() }))),
    ]
}

/// What a key has seen: its current owner and token, and the largest token any owner held.
#[derive(Default)]
struct Seen {
    owner: Option<String>,
    token: u64,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Assigned keys (`k*`) and keys only the ring places (`r*`): a key that gets a new owner
    /// gets a token larger than every earlier owner's, and no key's token ever falls.
    #[test]
    fn a_newer_owner_always_holds_a_larger_token(log in proptest::collection::vec(fleet_entry(), 0..100)) {
        let mut state = State::default();
        let mut seen: BTreeMap<String, Seen> = BTreeMap::new();
        let keys: Vec<String> = (0..60).map(|i| format!("k{i}")).chain((0..30).map(|i| format!("r{i}"))).collect();
        for (i, entry) in log.iter().enumerate() {
            // Entry times sometimes go back, as after a clock recovery: tokens must not.
            let ms = if i % 7 == 3 { 500 + i as u64 } else { 1000 + 10 * i as u64 };
            let _ = state.apply(EntryId::new(ms, i as u64), entry);
            for key in &keys {
                let now = state.owner_with_token(key).map(|(n, t)| (n.to_string(), t));
                let before = seen.entry(key.clone()).or_default();
                if let Some((owner, token)) = now {
                    prop_assert!(token >= before.token, "{key}: token fell from {} to {token}", before.token);
                    if before.owner.as_ref().is_some_and(|b| *b != owner) {
                        prop_assert!(token > before.token, "{key}: new owner {owner} kept token {token}");
                    }
                    *before = Seen { owner: Some(owner), token };
                }
            }
        }
    }
}

#[test]
fn a_death_gives_the_moved_keys_a_larger_token_and_a_replay_gives_the_same() {
    let log = [join("a"), join("b"), join("c"), assign(keys(200))];
    let mut s = Scenario::given(log.clone());
    let before: BTreeMap<String, (String, u64)> = keys(200)
        .into_iter()
        .map(|k| {
            let (n, t) = s.state.owner_with_token(&k).unwrap();
            (k.clone(), (n.to_string(), t))
        })
        .collect();
    for _ in 0..3 {
        s.when(&probe("a", 1, false)).unwrap();
    }
    let mut moved = 0;
    for (key, (owner, token)) in &before {
        let (now, t) = s.state.owner_with_token(key).unwrap();
        assert!(t >= *token);
        if owner == "a" {
            assert_ne!(now.as_str(), "a");
            assert!(t > *token, "{key} moved from a to {now} with token {t}");
            moved += 1;
        }
    }
    assert!(moved > 0);
    // Everything a node owns shares one token: its own or the floor.
    let b = s.state.token_of(&node("b")).unwrap();
    assert_eq!(
        b,
        s.state
            .tokens()
            .floor()
            .max(s.state.node(&node("b")).unwrap().token)
    );
    assert_eq!(
        s.state.token_of(&node("a")),
        None,
        "a dead node owns nothing"
    );
}

#[test]
fn the_token_clock_follows_entry_time_and_never_goes_back() {
    let mut state = State::default();
    state.apply(EntryId::new(5_000, 0), &join("a")).unwrap();
    state
        .apply(EntryId::new(5_001, 0), &probe("a", 1, true))
        .unwrap();
    assert_eq!(state.token_of(&node("a")), Some(5_001));
    // An entry from a clock that went back (a recovered clock starts lower): one more.
    state.apply(EntryId::new(10, 0), &join("b")).unwrap();
    state
        .apply(EntryId::new(11, 0), &probe("b", 2, true))
        .unwrap();
    assert_eq!(state.token_of(&node("b")), Some(5_002));
    assert_eq!(state.tokens().clock(), 5_002);
    // A probe that changes nothing does not tick the clock.
    state
        .apply(EntryId::new(12, 0), &probe("b", 2, true))
        .unwrap();
    assert_eq!(state.tokens().clock(), 5_002);
}
