//! Hostile producers (issue 10): no input a producer can append — raw field/value bytes of any
//! entry type, valid or not, at any id, including ids far ahead or behind — can panic the
//! fold, change the state without the change being reported, or make replay differ.
//!
//! "Reported" means: a rejected entry leaves the state exactly as it was (checksum), and an
//! applied one that changes the state says what changed (events, key changes, changed node
//! records or a recorded `cmd`), which is what the projector writes to the read models.
//! Stalls are bounded by construction (entry size, field count, ring size limits in
//! `limits.rs`); every case here runs the whole fold.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use pantheon_domain::{Applied, EntryId, State};
use proptest::prelude::*;

type Raw = Vec<(Vec<u8>, Vec<u8>)>;

const TYPES: &[&str] = &[
    "join",
    "leave",
    "drain",
    "undrain",
    "weight",
    "assign",
    "unassign",
    "probe",
    "policy",
    "probers",
    "prober_degraded",
    "prober_recovered",
    "clock_skew",
    "generation",
    "tick",
    "explode",
];

const FIELDS: &[&str] = &[
    "node",
    "url",
    "address",
    "port",
    "path",
    "weight",
    "key",
    "epoch",
    "ok",
    "status",
    "latency",
    "error",
    "prober",
    "confirm",
    "fall",
    "rise",
    "strategy",
    "vnodes",
    "panic",
    "damp_penalty",
    "damp_suppress",
    "damp_reuse",
    "damp_half_life",
    "damp_max_suppress",
    "alive",
    "entry",
    "skew_ms",
    "previous",
    "archive",
    "cmd",
    "v",
    "junk",
];

/// Values a producer might send: valid-looking ones for the small fleet, edge numbers, ids,
/// URLs, and garbage (including invalid UTF-8 and long values).
fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop_oneof![Just("a"), Just("b"), Just("c"), Just("d")].prop_map(|s| s.as_bytes().to_vec()),
        2 => prop_oneof![
            Just("0"), Just("1"), Just("2"), Just("3"), Just("100"), Just("4096"), Just("65535"),
            Just("4294967295"), Just("18446744073709551615"), Just("-1"), Just("1e9"), Just(""),
        ].prop_map(|s| s.as_bytes().to_vec()),
        1 => prop_oneof![
            Just("99999999999999-0"), Just("18446744073709551615-18446744073709551615"),
            Just("0-0"), Just("5-x"), Just("1700000000000-3"),
        ].prop_map(|s| s.as_bytes().to_vec()),
        1 => prop_oneof![
            Just("http://127.0.0.1:1/health"), Just("http:///h"), Just("ftp://x/y"),
            Just("http://u:p@h/x"), Just("http://h/x?q#f"), Just("ring"), Just("rendezvous"),
            Just("refused"), Just("timeout"),
        ].prop_map(|s| s.as_bytes().to_vec()),
        1 => proptest::collection::vec(any::<u8>(), 0..24),
        1 => (1usize..5000).prop_map(|n| vec![b'x'; n]),
    ]
}

fn raw_entry() -> impl Strategy<Value = Raw> {
    (
        proptest::sample::select(TYPES),
        proptest::collection::vec((proptest::sample::select(FIELDS), value()), 0..8),
    )
        .prop_map(|(kind, fields)| {
            let mut raw: Raw = vec![(b"type".to_vec(), kind.as_bytes().to_vec())];
            raw.extend(fields.into_iter().map(|(k, v)| (k.as_bytes().to_vec(), v)));
            raw
        })
}

/// Entry ids as Redis would give them, plus explicit ones a producer may force (far ahead,
/// and below the previous id: Redis refuses those, the fold must not care either way).
fn ids(n: usize) -> impl Strategy<Value = Vec<EntryId>> {
    proptest::collection::vec(
        prop_oneof![
            8 => (1u64..2000).prop_map(|dt| (dt, false)),
            1 => Just((99_999_999_999_999u64, true)),
            1 => Just((0u64, true)),
        ],
        n,
    )
    .prop_map(|steps| {
        let mut ms = 1_700_000_000_000u64;
        steps
            .into_iter()
            .enumerate()
            .map(|(i, (v, absolute))| {
                ms = if absolute { v } else { ms.saturating_add(v) };
                EntryId::new(ms, i as u64)
            })
            .collect()
    })
}

fn reports_a_change(out: &Applied) -> bool {
    !out.events.is_empty()
        || !out.key_changes.is_empty()
        || !out.nodes_changed.is_empty()
        || out.cmd_recorded.is_some()
        || !out.cmds_evicted.is_empty()
}

/// A small fleet with keys, so hostile entries meet real state.
fn fleet() -> State {
    let mut state = State::default();
    let mut t = 1_600_000_000_000;
    let mut next = || {
        t += 1;
        EntryId::new(t, 0)
    };
    for n in ["a", "b", "c"] {
        state.apply(next(), &join(n)).unwrap();
    }
    state.apply(next(), &assign(keys(50))).unwrap();
    state
}

/// Folds `log` into a fresh fleet; the trace of outcomes and the final checksum.
fn fold(log: &[(EntryId, Raw)]) -> (Vec<String>, u64) {
    let mut state = fleet();
    let mut trace = Vec::new();
    for (id, raw) in log {
        match state.apply_raw(*id, raw, pantheon_domain::Origin::Client) {
            Ok(out) => trace.push(format!("{:?}", out.events)),
            Err(r) => trace.push(format!("rejected: {r}")),
        }
    }
    (trace, state.checksum())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn no_producer_input_panics_or_changes_state_unreported(
        (entries, ids) in proptest::collection::vec(raw_entry(), 1..40)
            .prop_flat_map(|e| { let n = e.len(); (Just(e), ids(n)) })
    ) {
        let mut state = fleet();
        for (raw, id) in entries.iter().zip(&ids) {
            let before = state.checksum();
            match state.apply_raw(*id, raw, pantheon_domain::Origin::Client) {
                Err(_) => prop_assert_eq!(state.checksum(), before, "a rejected entry changed the state"),
                Ok(out) => {
                    // The projector settles each batch: include what settling reports.
                    let settled = state.settle();
                    if state.checksum() != before {
                        prop_assert!(
                            reports_a_change(&out) || reports_a_change(&settled),
                            "entry {:?} changed the state without reporting it", raw
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn replay_with_hostile_entries_is_deterministic(
        (entries, ids) in proptest::collection::vec(raw_entry(), 1..40)
            .prop_flat_map(|e| { let n = e.len(); (Just(e), ids(n)) })
    ) {
        let log: Vec<(EntryId, Raw)> = ids.into_iter().zip(entries).collect();
        prop_assert_eq!(fold(&log), fold(&log));
    }
}
