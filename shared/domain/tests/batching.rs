//! Bursts: changes of members applied with `apply_deferred` move the keys once per `settle`,
//! and the settled state is the same however the log is cut into batches.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use pantheon_domain::entry::{Command, LogEntry};
use pantheon_domain::event::EventKind;
use pantheon_domain::placement::Strategy as Placement;
use pantheon_domain::policy::PolicyChange;
use pantheon_domain::{EntryId, State};
use proptest::prelude::*;

fn small_node() -> impl Strategy<Value = String> {
    (0u8..8).prop_map(|i| format!("n{i}"))
}

/// Entries that mostly make sense for a small fleet, so the fold does real work.
fn fleet_entry() -> impl Strategy<Value = LogEntry> {
    prop_oneof![
        3 => small_node().prop_map(|n| join(&n)),
        1 => small_node().prop_map(|n| leave(&n)),
        1 => small_node().prop_map(|n| LogEntry::new(Command::Drain { node: node(&n) })),
        1 => small_node().prop_map(|n| LogEntry::new(Command::Undrain { node: node(&n) })),
        1 => (small_node(), 1u32..4).prop_map(|(n, weight)| LogEntry::new(Command::Weight { node: node(&n), weight })),
        2 => proptest::collection::vec(0u32..300, 1..30).prop_map(|ks| assign(ks.into_iter().map(|k| format!("k{k}")))),
        1 => proptest::collection::vec(0u32..300, 1..10).prop_map(|ks| LogEntry::new(Command::Unassign { keys: ks.into_iter().map(|k| format!("k{k}")).collect() })),
        8 => (small_node(), 1u64..14, any::<bool>()).prop_map(|(n, epoch, ok)| probe(&n, epoch, ok)),
        1 => (proptest::option::of(1u32..4), proptest::option::of(prop_oneof![Just(Placement::Ring), Just(Placement::Rendezvous)]), proptest::option::of(prop_oneof![Just(8u32), Just(64)]), proptest::option::of(prop_oneof![Just(0u32), Just(30), Just(50), Just(90)]))
            .prop_filter("policy sets something", |(a, b, c, d)| a.is_some() || b.is_some() || c.is_some() || d.is_some())
            .prop_map(|(fall, strategy, vnodes, panic)| LogEntry::new(Command::Policy(PolicyChange { fall, strategy, vnodes, panic, ..PolicyChange::default() }))),
    ]
}

/// What a fold decided, without the `rebalanced` events (whose number depends on the cut).
#[derive(Debug, PartialEq)]
struct Folded {
    checksum: u64,
    node_events: Vec<String>,
    rejections: Vec<String>,
}

fn id(i: usize) -> EntryId {
    EntryId::new(1000 + i as u64, 0)
}

/// Folds `log`, settling after each entry whose index is in `cuts` and at the end. Also
/// checks that every settled key sits where the placement puts it.
fn fold_cut(log: &[LogEntry], cuts: &[usize]) -> Folded {
    let mut state = State::default();
    let mut out = Folded {
        checksum: 0,
        node_events: Vec::new(),
        rejections: Vec::new(),
    };
    let note = |events: &[pantheon_domain::Event], out: &mut Folded| {
        out.node_events.extend(
            events
                .iter()
                .filter(|e| !matches!(e.kind, EventKind::Rebalanced { .. }))
                .map(|e| e.to_string()),
        );
    };
    for (i, entry) in log.iter().enumerate() {
        match state.apply_deferred(id(i), entry) {
            Ok(applied) => note(&applied.events, &mut out),
            Err(r) => out.rejections.push(format!("{i}: {r}")),
        }
        if cuts.contains(&i) {
            let settled = state.settle();
            assert!(settled.nodes_changed.is_empty());
            note(&settled.events, &mut out);
        }
    }
    let settled = state.settle();
    note(&settled.events, &mut out);
    for (key, owner) in state.keys().iter() {
        assert_eq!(owner, state.placement().owner(key), "key {key}");
    }
    out.checksum = state.checksum();
    out
}

/// Folds `log` as `rebuild --verify` does: settling without listing the keys that move, after
/// each entry in `cuts` and at the end. The state's checksum.
fn fold_unlisted(log: &[LogEntry], cuts: &[usize]) -> u64 {
    let mut state = State::default();
    for (i, entry) in log.iter().enumerate() {
        let _ = state.apply_deferred(id(i), entry);
        if cuts.contains(&i) {
            state.settle_unlisted();
        }
    }
    state.settle_unlisted();
    for (key, owner) in state.keys().iter() {
        assert_eq!(owner, state.placement().owner(key), "key {key}");
    }
    state.checksum()
}

/// The classic fold: every entry rebalances at once.
fn fold_each(log: &[LogEntry]) -> (Folded, usize) {
    let mut state = State::default();
    let mut out = Folded {
        checksum: 0,
        node_events: Vec::new(),
        rejections: Vec::new(),
    };
    let mut rebalances = 0;
    for (i, entry) in log.iter().enumerate() {
        match state.apply(id(i), entry) {
            Ok(applied) => {
                for e in &applied.events {
                    if matches!(e.kind, EventKind::Rebalanced { .. }) {
                        rebalances += 1;
                    } else {
                        out.node_events.push(e.to_string());
                    }
                }
            }
            Err(r) => out.rejections.push(format!("{i}: {r}")),
        }
    }
    out.checksum = state.checksum();
    (out, rebalances)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn one_batch_any_split_and_entry_by_entry_agree(
        log in proptest::collection::vec(fleet_entry(), 0..80),
        cuts in proptest::collection::vec(0usize..80, 0..12),
    ) {
        let whole = fold_cut(&log, &[]);
        let split = fold_cut(&log, &cuts);
        let every: Vec<usize> = (0..log.len()).collect();
        let each = fold_cut(&log, &every);
        let (classic, _) = fold_each(&log);
        prop_assert_eq!(&whole, &split);
        prop_assert_eq!(&whole, &each);
        prop_assert_eq!(&whole, &classic);
        prop_assert_eq!(whole.checksum, fold_unlisted(&log, &cuts));
    }
}

#[test]
fn a_burst_of_joins_rebalances_once_per_settle_and_reports_every_join() {
    // Given 200 keys and two nodes
    let mut state = State::default();
    let mut clock = 0;
    let mut next = || {
        clock += 1;
        EntryId::new(clock, 0)
    };
    for e in [
        join("a"),
        probe("a", 1, true),
        join("b"),
        probe("b", 2, true),
        assign(keys(200)),
    ] {
        state.apply(next(), &e).unwrap();
    }
    // When 50 more nodes join, and answer their first probe, in one batch
    let mut joined = 0;
    let mut last = None;
    for i in 0..50 {
        let name = format!("w{i}");
        for entry in [join(&name), probe(&name, i + 3, true)] {
            let at = next();
            let applied = state.apply_deferred(at, &entry).unwrap();
            assert!(
                applied.key_changes.is_empty(),
                "keys moved before the settle"
            );
            joined += applied
                .events
                .iter()
                .filter(|e| matches!(e.kind, EventKind::Ready { .. }))
                .count();
            last = Some(at);
        }
    }
    let settled = state.settle();
    // Then every node has its event, and one rebalance caused by the last first probe moved
    // the keys
    assert_eq!(joined, 50);
    let rebalances: Vec<_> = settled
        .events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Rebalanced { .. }))
        .collect();
    assert_eq!(rebalances.len(), 1);
    assert_eq!(Some(rebalances[0].cause), last);
    assert!(settled.ring_changed);
    assert!(state.is_settled());
    assert_eq!(state.placement().members().len(), 52);
    for (key, owner) in state.keys().iter() {
        assert_eq!(owner, state.placement().owner(key), "key {key}");
    }
}

#[test]
fn an_assign_in_a_batch_lands_on_the_owner_decided_before_it() {
    // Given two nodes, and in one batch a third node joins, then keys are assigned
    let mut state = State::default();
    state.apply(EntryId::new(1, 0), &join("a")).unwrap();
    state
        .apply(EntryId::new(1, 1), &probe("a", 1, true))
        .unwrap();
    state.apply(EntryId::new(2, 0), &join("b")).unwrap();
    state
        .apply(EntryId::new(2, 1), &probe("b", 2, true))
        .unwrap();
    state
        .apply_deferred(EntryId::new(3, 0), &join("c"))
        .unwrap();
    state
        .apply_deferred(EntryId::new(3, 1), &probe("c", 3, true))
        .unwrap();
    // When the keys are assigned before the batch is settled
    let applied = state
        .apply_deferred(EntryId::new(4, 0), &assign(keys(300)))
        .unwrap();
    // Then the join's rebalance ran first (nothing to move yet) and the new keys use all three
    assert!(state.is_settled());
    assert!(applied.ring_changed);
    let on_c = state
        .keys()
        .iter()
        .filter(|(_, o)| o.map(|n| n.as_str()) == Some("c"))
        .count();
    assert!(on_c > 0);
    for (key, owner) in state.keys().iter() {
        assert_eq!(owner, state.placement().owner(key), "key {key}");
    }
}

#[test]
fn a_mass_death_in_one_batch_is_one_rebalance() {
    // Given 20 nodes with keys
    let mut state = State::default();
    let mut clock = 0u64;
    let mut next = || {
        clock += 1;
        EntryId::new(clock, 0)
    };
    for i in 0..20 {
        state.apply(next(), &join(&format!("n{i}"))).unwrap();
        state
            .apply(next(), &probe(&format!("n{i}"), i + 1, true))
            .unwrap();
    }
    state.apply(next(), &assign(keys(2000))).unwrap();
    // When 8 of them fail three probes each, all in one batch
    let mut died = 0;
    for round in 0..3 {
        for i in 0..8 {
            let epoch = i + 1;
            let applied = state
                .apply_deferred(next(), &probe(&format!("n{i}"), epoch, false))
                .unwrap();
            died += applied
                .events
                .iter()
                .filter(|e| matches!(e.kind, EventKind::Died { .. }))
                .count();
            assert!(applied.key_changes.is_empty(), "round {round}");
        }
    }
    let settled = state.settle();
    // Then 8 died events, and one rebalance moves every key off the dead nodes
    assert_eq!(died, 8);
    let Some(EventKind::Rebalanced { flows, .. }) = settled.events.first().map(|e| &e.kind) else {
        panic!("no rebalance: {:?}", settled.events);
    };
    assert_eq!(settled.events.len(), 1);
    assert!(flows.iter().all(|f| f.to.as_ref().is_some_and(|n| {
        let i: u32 = n.as_str()[1..].parse().unwrap();
        i >= 8
    })));
    assert_eq!(state.placement().members().len(), 12);
}

#[test]
fn a_batched_rebalance_with_many_flows_round_trips_through_its_wire_format() {
    // Given 200 nodes with keys, when 40 die in one batch
    let mut state = State::default();
    let mut t = 0u64;
    let mut next = || {
        t += 1;
        EntryId::new(t, 0)
    };
    for i in 0..200 {
        state.apply(next(), &join(&format!("n{i}"))).unwrap();
        state
            .apply(next(), &probe(&format!("n{i}"), i + 1, true))
            .unwrap();
    }
    state.apply(next(), &assign(keys(4000))).unwrap();
    for _ in 0..3 {
        for i in 0..40u64 {
            state
                .apply_deferred(next(), &probe(&format!("n{i}"), i + 1, false))
                .unwrap();
        }
    }
    let settled = state.settle();
    // Then its one rebalance has a flows field longer than an input field may be, and decodes
    let event = &settled.events[0];
    let encoded = event.encode();
    let flows = &encoded.iter().find(|(k, _)| *k == "flows").unwrap().1;
    assert!(flows.len() > 2048, "{} bytes", flows.len());
    let raw: Vec<(&[u8], &[u8])> = encoded
        .iter()
        .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
        .collect();
    assert_eq!(&pantheon_domain::Event::decode(&raw).unwrap(), event);
}
