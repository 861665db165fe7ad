//! `explain`: the per-key owner agrees with the placement for any members and both
//! strategies, and the history names each owner, its token and the cause.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use pantheon_domain::entry::{Command, LogEntry};
use pantheon_domain::explain::{Explainer, KeyOwner};
use pantheon_domain::placement::Strategy as Placement;
use pantheon_domain::policy::PolicyChange;
use pantheon_domain::{EntryId, Origin, State};
use proptest::prelude::*;

fn policy(strategy: Placement, vnodes: u32) -> LogEntry {
    LogEntry::new(Command::Policy(PolicyChange {
        strategy: Some(strategy),
        vnodes: Some(vnodes),
        ..PolicyChange::default()
    }))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// For members with any weights, and keys of any shape, the per-key owner is the
    /// placement's owner, under the ring and under rendezvous hashing.
    #[test]
    fn the_key_owner_agrees_with_the_placement(
        weights in proptest::collection::vec(1u32..4, 1..8),
        rendezvous in any::<bool>(),
        keys in proptest::collection::vec("[a-z0-9:]{1,12}", 1..40),
    ) {
        let strategy = if rendezvous { Placement::Rendezvous } else { Placement::Ring };
        let mut log = vec![policy(strategy, 16)];
        for (i, w) in weights.iter().enumerate() {
            log.push(join_weighted(&format!("n{i}"), *w));
        }
        let s = Scenario::given(log);
        for key in &keys {
            let mut owner = KeyOwner::new(key);
            let mine = owner.owner(&s.state);
            prop_assert_eq!(mine.as_ref(), s.state.placement().owner(key), "{}", key);
        }
    }
}

#[test]
fn the_history_names_each_owner_its_token_and_the_cause() {
    let mut log = Vec::new();
    for (i, n) in ["a", "b", "c"].iter().enumerate() {
        log.push(join(n));
        log.push(probe(n, i as u64 + 1, true));
    }
    log.push(assign(keys(100)));
    let key = "user:7";
    let mut e = Explainer::new(key, State::default(), None);
    let mut state = State::default();
    let mut ms = 1_700_000_000_000u64;
    let mut feed = |entry: &LogEntry, e: &mut Explainer, state: &mut State| {
        ms += 1;
        let id = EntryId::new(ms, 0);
        e.entry(id, entry, Origin::Service);
        state.apply(id, entry).unwrap();
    };
    for entry in &log {
        feed(entry, &mut e, &mut state);
    }
    let first = state.keys().get(key).unwrap().unwrap().clone();
    let epoch = state.node(&first).unwrap().epoch;
    for _ in 0..3 {
        feed(&probe(first.as_str(), epoch, false), &mut e, &mut state);
    }
    let x = e.finish();
    assert!(x.assigned);
    let last = x.history.last().unwrap();
    let now = state.keys().get(key).unwrap().unwrap();
    assert_eq!(last.node.as_ref(), Some(now));
    assert_ne!(now, &first);
    assert_eq!(last.token, state.token_of(now));
    assert!(
        last.why.starts_with(&format!(
            "{first} died: 3 failed probes in a row; placement moved it to {now}"
        )),
        "{}",
        last.why
    );
    let before = &x.history[x.history.len() - 2];
    assert_eq!(before.node.as_ref(), Some(&first));
    assert!(last.token > before.token);
    assert!(x.history.windows(2).all(|w| w[0].cause < w[1].cause));
    assert!(
        x.history[0].why.contains("placement gave it to"),
        "{:?}",
        x.history
    );
}
