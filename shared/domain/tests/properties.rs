//! Property tests: the parser never panics, encoding round-trips, the fold is deterministic,
//! and placement moves only the keys it must.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use pantheon_domain::entry::{Command, LogEntry, ProbeResult};
use pantheon_domain::health::ProbeError;
use pantheon_domain::placement::{self, Member};
use pantheon_domain::policy::PolicyChange;
use pantheon_domain::{EntryId, NodeId, State};
use proptest::prelude::*;

fn node_id() -> impl Strategy<Value = NodeId> {
    "[a-z][a-z0-9._:@-]{0,11}".prop_map(|s| NodeId::new(&s).unwrap())
}

fn small_node() -> impl Strategy<Value = NodeId> {
    (0u8..6).prop_map(|i| NodeId::new(&format!("n{i}")).unwrap())
}

fn arb_strategy() -> impl Strategy<Value = placement::Strategy> {
    prop_oneof![
        Just(placement::Strategy::Ring),
        Just(placement::Strategy::Rendezvous)
    ]
}

fn arb_command() -> impl Strategy<Value = Command> {
    let key = "[ -~]{1,40}";
    prop_oneof![
        (
            node_id(),
            "[a-z]{1,10}",
            1u16..=65535,
            "[a-z/]{0,10}",
            proptest::option::of(1u32..=100)
        )
            .prop_map(|(node, host, port, path, weight)| Command::Join {
                node,
                url: url::Url::parse(&format!("http://{host}:{port}/{path}"))
                    .unwrap()
                    .to_string(),
                weight,
                handoff: false,
            }),
        node_id().prop_map(|node| Command::Leave { node }),
        node_id().prop_map(|node| Command::Drain { node }),
        node_id().prop_map(|node| Command::Undrain { node }),
        (node_id(), 1u32..=100).prop_map(|(node, weight)| Command::Weight { node, weight }),
        proptest::collection::vec(key, 1..20).prop_map(|keys| Command::Assign { keys }),
        proptest::collection::vec(key, 1..20).prop_map(|keys| Command::Unassign { keys }),
        (
            node_id(),
            any::<u64>(),
            any::<bool>(),
            proptest::option::of(100u16..600),
            any::<u32>(),
            proptest::option::of(prop_oneof![
                Just(ProbeError::Refused),
                Just(ProbeError::Timeout),
                Just(ProbeError::Status),
                Just(ProbeError::Protocol),
                Just(ProbeError::Policy)
            ]),
            proptest::option::of("[a-z0-9-]{1,12}")
        )
            .prop_map(|(node, epoch, ok, status, latency_ms, error, prober)| {
                Command::Probe(ProbeResult {
                    node,
                    epoch,
                    ok,
                    status,
                    latency_ms,
                    error,
                    prober,
                })
            }),
        (
            proptest::option::of(1u32..=100),
            proptest::option::of(1u32..=100),
            proptest::option::of(arb_strategy()),
            proptest::option::of(1u32..=4096)
        )
            .prop_filter("policy sets something", |(a, b, c, d)| a.is_some()
                || b.is_some()
                || c.is_some()
                || d.is_some())
            .prop_map(
                |(fall, rise, strategy, vnodes)| Command::Policy(PolicyChange {
                    fall,
                    rise,
                    strategy,
                    vnodes,
                    ..PolicyChange::default()
                })
            ),
    ]
}

fn arb_entry() -> impl Strategy<Value = LogEntry> {
    (arb_command(), proptest::option::of("[a-zA-Z0-9-]{1,20}"))
        .prop_map(|(command, cmd)| LogEntry { cmd, command })
}

/// Entries that mostly make sense for a small fleet, so the fold does real work.
fn fleet_entry() -> impl Strategy<Value = LogEntry> {
    prop_oneof![
        3 => small_node().prop_map(|n| join(n.as_str())),
        1 => small_node().prop_map(|n| leave(n.as_str())),
        1 => small_node().prop_map(|node| LogEntry::new(Command::Drain { node })),
        1 => small_node().prop_map(|node| LogEntry::new(Command::Undrain { node })),
        1 => (small_node(), 1u32..4).prop_map(|(node, weight)| LogEntry::new(Command::Weight { node, weight })),
        2 => proptest::collection::vec(0u32..300, 1..30).prop_map(|ks| assign(ks.into_iter().map(|k| format!("k{k}")))),
        1 => proptest::collection::vec(0u32..300, 1..10).prop_map(|ks| LogEntry::new(Command::Unassign { keys: ks.into_iter().map(|k| format!("k{k}")).collect() })),
        6 => (small_node(), 1u64..12, any::<bool>()).prop_map(|(n, epoch, ok)| probe(n.as_str(), epoch, ok)),
        1 => (proptest::option::of(1u32..4), proptest::option::of(arb_strategy()), proptest::option::of(prop_oneof![Just(8u32), Just(64), Just(256)]))
            .prop_filter("policy sets something", |(a, b, c)| a.is_some() || b.is_some() || c.is_some())
            .prop_map(|(fall, strategy, vnodes)| LogEntry::new(Command::Policy(PolicyChange { fall, strategy, vnodes, ..PolicyChange::default() }))),
    ]
}

fn replay(log: &[LogEntry]) -> (State, Vec<String>) {
    let mut state = State::default();
    let mut trace = Vec::new();
    for (i, e) in log.iter().enumerate() {
        match state.apply(EntryId::new(1000 + i as u64, 0), e) {
            Ok(applied) => trace.extend(applied.events.iter().map(|ev| ev.to_string())),
            Err(r) => trace.push(format!("rejected: {r}")),
        }
    }
    (state, trace)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn decoding_never_panics_on_arbitrary_bytes(
        pairs in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..12), proptest::collection::vec(any::<u8>(), 0..40)), 0..12)
    ) {
        let _ = LogEntry::decode(&pairs);
        let _ = pantheon_domain::Event::decode(&pairs);
    }

    #[test]
    fn decoding_never_panics_on_near_valid_entries(
        kind in prop_oneof![Just("join"), Just("leave"), Just("drain"), Just("weight"), Just("assign"), Just("probe"), Just("policy")],
        fields in proptest::collection::vec((prop_oneof![Just("node"), Just("url"), Just("address"), Just("port"), Just("path"), Just("weight"), Just("key"), Just("epoch"), Just("ok"), Just("status"), Just("error"), Just("fall"), Just("strategy"), Just("vnodes"), Just("v")], ".{0,30}"), 0..8)
    ) {
        let mut pairs = vec![("type".to_owned(), kind.to_owned())];
        pairs.extend(fields.into_iter().map(|(k, v)| (k.to_owned(), v)));
        let _ = LogEntry::decode(&pairs);
        let mut state = State::default();
        let _ = state.apply_raw(EntryId::new(1, 0), &pairs, pantheon_domain::Origin::Client);
    }

    #[test]
    fn encode_then_decode_round_trips(entry in arb_entry()) {
        let encoded = entry.encode();
        let raw: Vec<(&[u8], &[u8])> = encoded.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())).collect();
        prop_assert_eq!(LogEntry::decode(&raw).unwrap(), entry);
    }

    #[test]
    fn the_same_log_gives_the_same_state_events_and_checksum(log in proptest::collection::vec(fleet_entry(), 0..60)) {
        let (a, trace_a) = replay(&log);
        let (b, trace_b) = replay(&log);
        prop_assert_eq!(a.checksum(), b.checksum());
        prop_assert_eq!(trace_a, trace_b);
    }

    #[test]
    fn a_checksum_taken_after_every_entry_equals_one_taken_afresh(log in proptest::collection::vec(fleet_entry(), 0..40)) {
        // The state keeps the hash of its nodes between checksums: a change it missed would
        // show as a checksum that differs from a replay's, which hashes everything once.
        let mut live = State::default();
        for (i, e) in log.iter().enumerate() {
            let _ = live.apply(EntryId::new(1000 + i as u64, 0), e);
            let (fresh, _) = replay(&log[..=i]);
            prop_assert_eq!(live.checksum(), fresh.checksum(), "after entry {}", i);
        }
    }

    #[test]
    fn incremental_moves_equal_a_full_recompute(log in proptest::collection::vec(fleet_entry(), 0..60)) {
        let (state, _) = replay(&log);
        for (key, owner) in state.keys().iter() {
            prop_assert_eq!(owner, state.placement().owner(key), "key {}", key);
        }
        // Events round-trip through their wire format too.
        let mut s = State::default();
        for (i, e) in log.iter().enumerate() {
            if let Ok(applied) = s.apply(EntryId::new(1000 + i as u64, 0), e) {
                for ev in applied.events {
                    let enc = ev.encode();
                    let raw: Vec<(&[u8], &[u8])> = enc.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())).collect();
                    prop_assert_eq!(pantheon_domain::Event::decode(&raw).unwrap(), ev);
                }
            }
        }
    }

    #[test]
    fn a_rejected_entry_changes_nothing(log in proptest::collection::vec(fleet_entry(), 0..30), bad in fleet_entry()) {
        let (mut state, _) = replay(&log);
        let before = state.checksum();
        if state.apply(EntryId::new(999_999, 0), &bad).is_err() {
            prop_assert_eq!(state.checksum(), before);
        }
    }

    #[test]
    fn removing_a_node_moves_only_its_keys(
        n in 2usize..12, removed in 0usize..12, strategy in arb_strategy(), weights in proptest::collection::vec(1u32..4, 12)
    ) {
        let removed = removed % n;
        let members: Vec<Member> = (0..n).map(|i| Member { node: node(&format!("n{i}")), weight: weights[i] }).collect();
        let before = placement::build(strategy, 64, members.clone());
        let mut rest = members.clone();
        let gone = rest.remove(removed).node;
        let after = placement::build(strategy, 64, rest);
        for k in keys(2000) {
            let (b, a) = (before.owner(&k), after.owner(&k));
            if b != Some(&gone) {
                prop_assert_eq!(a, b, "key {} moved but its owner stayed", k);
            } else {
                prop_assert_ne!(a, Some(&gone));
            }
        }
    }

    #[test]
    fn adding_a_node_moves_only_keys_that_go_to_it(n in 1usize..12, strategy in arb_strategy(), weight in 1u32..4) {
        let members: Vec<Member> = (0..n).map(|i| Member { node: node(&format!("n{i}")), weight: 1 }).collect();
        let before = placement::build(strategy, 64, members.clone());
        let mut more = members;
        let newcomer = node("newcomer");
        more.push(Member { node: newcomer.clone(), weight });
        let after = placement::build(strategy, 64, more);
        for k in keys(2000) {
            let (b, a) = (before.owner(&k), after.owner(&k));
            if a != b {
                prop_assert_eq!(a, Some(&newcomer), "key {} moved to an old node", k);
            }
        }
    }
}

/// The documented bound (docs/placement.md): with default settings, 100 equal nodes and
/// 1,000,000 keys, the busiest node holds at most 1.10 × the mean.
#[test]
fn balance_stays_within_the_documented_bound() {
    let policy = pantheon_domain::Policy::default();
    for strategy in [placement::Strategy::Ring, placement::Strategy::Rendezvous] {
        let members: Vec<Member> = (0..100)
            .map(|i| Member {
                node: node(&format!("node-{i}")),
                weight: 1,
            })
            .collect();
        let p = placement::build(strategy, policy.vnodes, members);
        let mut counts = std::collections::HashMap::new();
        let mut key = String::new();
        for i in 0..1_000_000u32 {
            use std::fmt::Write;
            key.clear();
            write!(key, "key-{i}").unwrap();
            *counts.entry(p.owner(&key).unwrap().clone()).or_insert(0u32) += 1;
        }
        let max = *counts.values().max().unwrap();
        let ratio = f64::from(max) / 10_000.0;
        assert!(
            ratio <= 1.10,
            "{strategy}: busiest node holds {ratio:.3} × the mean"
        );
    }
}
