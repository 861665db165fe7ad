//! Flap damping: deaths add a penalty that halves every half-life of log time; above the
//! suppress limit a node stays out of placement even while healthy, and returns once the
//! penalty decays to the reuse limit.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use pantheon_domain::entry::{Command, LogEntry};
use pantheon_domain::event::EventKind;
use pantheon_domain::policy::PolicyChange;
use pantheon_domain::{EntryId, Health, Policy, State};

/// A state fed entries at explicit log times (ms).
struct Clocked {
    state: State,
    seq: u64,
}

impl Clocked {
    fn new() -> Self {
        Self {
            state: State::default(),
            seq: 0,
        }
    }

    fn at(&mut self, ms: u64, entry: &LogEntry) -> Vec<EventKind> {
        self.seq += 1;
        let applied = self.state.apply(EntryId::new(ms, self.seq), entry).unwrap();
        applied.events.into_iter().map(|e| e.kind).collect()
    }
}

fn names(events: &[EventKind]) -> Vec<&'static str> {
    events.iter().map(EventKind::name).collect()
}

fn keys_of(state: &State, node: &str) -> usize {
    state
        .keys()
        .iter()
        .filter(|(_, o)| o.is_some_and(|n| n.as_str() == node))
        .count()
}

/// a, b, c (epochs 1-3) owning 600 keys, at t = 0.
fn three_nodes() -> Clocked {
    let mut c = Clocked::new();
    for (i, n) in ["a", "b", "c"].iter().enumerate() {
        c.at(i as u64, &join(n));
        c.at(i as u64, &probe(n, i as u64 + 1, true));
    }
    c.at(3, &assign(keys(600)));
    c
}

/// Three failed probes of `a` 200 ms apart from `t`; the events of the third.
fn a_dies(c: &mut Clocked, t: u64) -> Vec<EventKind> {
    c.at(t, &probe("a", 1, false));
    c.at(t + 200, &probe("a", 1, false));
    c.at(t + 400, &probe("a", 1, false))
}

fn a_revives(c: &mut Clocked, t: u64) -> Vec<EventKind> {
    c.at(t, &probe("a", 1, true));
    c.at(t + 5000, &probe("a", 1, true))
}

#[test]
fn one_death_does_not_damp() {
    let mut c = three_nodes();
    assert_eq!(names(&a_dies(&mut c, 10_000)), ["died", "rebalanced"]);
    assert_eq!(names(&a_revives(&mut c, 11_000)), ["revived", "rebalanced"]);
    let a = c.state.node(&node("a")).unwrap();
    assert!(!a.damped);
    assert_eq!(a.penalty.value, Policy::DEFAULT_DAMP_PENALTY);
    assert!(keys_of(&c.state, "a") > 0);
}

#[test]
fn a_second_death_within_a_half_life_damps_until_the_penalty_decays() {
    // Given a node that died and came back
    let mut c = three_nodes();
    a_dies(&mut c, 10_000);
    a_revives(&mut c, 11_000);
    // When it dies again 10 s later
    let events = a_dies(&mut c, 20_000);
    // Then it is damped, with the time it may return
    assert_eq!(names(&events), ["died", "damped", "rebalanced"]);
    let EventKind::Damped {
        penalty, reuse_at, ..
    } = events[1].clone()
    else {
        unreachable!()
    };
    assert!(penalty > Policy::DEFAULT_DAMP_SUPPRESS);
    // When its probes succeed again: revived, but it stays out and owns nothing
    assert_eq!(names(&a_revives(&mut c, 21_000)), ["revived"]);
    let a = c.state.node(&node("a")).unwrap();
    assert_eq!((a.health.health, a.damped), (Health::Alive, true));
    assert_eq!(keys_of(&c.state, "a"), 0);
    // When any entry arrives just before the reuse time, nothing changes
    assert!(c.at(reuse_at - 1, &probe("b", 2, true)).is_empty());
    // Then the first entry at or after it undamps the node and its keys return
    let events = c.at(reuse_at, &probe("b", 2, true));
    assert_eq!(names(&events), ["undamped", "rebalanced"]);
    assert!(keys_of(&c.state, "a") > 0);
    assert!(c.state.node(&node("a")).unwrap().penalty.value >= 1);
}

#[test]
fn a_tick_at_the_reuse_time_undamps_a_node_on_a_quiet_cluster() {
    // Given a damped node, revived, and then nothing written (healthy probes are not logged)
    let mut c = three_nodes();
    a_dies(&mut c, 10_000);
    a_revives(&mut c, 11_000);
    let events = a_dies(&mut c, 20_000);
    let EventKind::Damped { reuse_at, .. } = events[1].clone() else {
        unreachable!()
    };
    a_revives(&mut c, 21_000);
    assert_eq!(c.state.next_undamp(), Some(reuse_at));
    // When the projector's tick arrives at the reuse time
    let events = c.at(reuse_at, &LogEntry::new(Command::Tick));
    // Then the node is undamped and owns keys again
    assert_eq!(names(&events), ["undamped", "rebalanced"]);
    assert!(keys_of(&c.state, "a") > 0);
    assert_eq!(c.state.next_undamp(), None);
}

#[test]
fn a_damped_node_that_is_still_dead_at_reuse_time_stays_out() {
    let mut c = three_nodes();
    a_dies(&mut c, 10_000);
    a_revives(&mut c, 11_000);
    let events = a_dies(&mut c, 20_000);
    let EventKind::Damped { reuse_at, .. } = events[1].clone() else {
        unreachable!()
    };
    let events = c.at(reuse_at + 10, &probe("b", 2, true));
    assert_eq!(names(&events), ["undamped"]);
    assert_eq!(keys_of(&c.state, "a"), 0, "dead: still out");
}

#[test]
fn damping_off_and_bad_settings() {
    let mut c = three_nodes();
    let off = LogEntry::new(Command::Policy(PolicyChange {
        damp_penalty: Some(0),
        ..PolicyChange::default()
    }));
    c.at(5, &off);
    for round in 0..5 {
        let t = 10_000 + round * 10_000;
        assert_eq!(names(&a_dies(&mut c, t)), ["died", "rebalanced"]);
        assert_eq!(
            names(&a_revives(&mut c, t + 1000)),
            ["revived", "rebalanced"]
        );
    }
    let bad = LogEntry::new(Command::Policy(PolicyChange {
        damp_penalty: Some(1000),
        damp_reuse: Some(2000),
        ..PolicyChange::default()
    }));
    let before = c.state.checksum();
    assert!(c.state.apply(EntryId::new(99_999, 0), &bad).is_err());
    assert_eq!(c.state.checksum(), before);
}

#[test]
fn the_penalty_survives_a_rejoin() {
    let mut c = three_nodes();
    a_dies(&mut c, 10_000);
    c.at(10_500, &join("a"));
    assert_eq!(
        c.state.node(&node("a")).unwrap().penalty.value,
        Policy::DEFAULT_DAMP_PENALTY
    );
}

/// What the prober would report for a node flapping down/up every `half_period` ms, with the
/// default cadences (1 s alive, 200 ms suspect, 5 s dead), through the real fold, plus a
/// healthy node probed every second. Returns (rebalances while flapping, ms after the flapping
/// stopped until the node owned keys again).
fn flap(minutes: u64, half_period: u64, damping: bool) -> (usize, Option<u64>) {
    let mut c = three_nodes();
    if !damping {
        c.at(
            5,
            &LogEntry::new(Command::Policy(PolicyChange {
                damp_penalty: Some(0),
                ..PolicyChange::default()
            })),
        );
    }
    let start = 10_000u64;
    let stop = start + minutes * 60_000;
    let mut next_a = start;
    let mut next_b = start;
    let mut rebalances = 0;
    let mut back = None;
    let mut t = start;
    // Bounded: 20 minutes of log time after the flapping.
    while t < stop + 20 * 60_000 && back.is_none() {
        t = next_a.min(next_b);
        let events = if next_b <= next_a {
            next_b += 1000;
            c.at(t, &probe("b", 2, true))
        } else {
            let up = t >= stop || (t - start) / half_period % 2 == 1;
            let events = c.at(t, &probe("a", 1, up));
            let a = c.state.node(&node("a")).unwrap();
            next_a += match a.health.health {
                Health::Alive | Health::Joining => 1000,
                Health::Suspect => 200,
                Health::Dead => 5000,
            };
            events
        };
        let moved = events
            .iter()
            .any(|e| matches!(e, EventKind::Rebalanced { .. }));
        if moved && t < stop {
            rebalances += 1;
        }
        if t >= stop && keys_of(&c.state, "a") > 0 {
            back = Some(t - stop);
        }
    }
    (rebalances, back)
}

#[test]
fn flapping_every_two_seconds_for_ten_minutes_costs_at_most_three_rebalances() {
    let (damped, back) = flap(10, 2000, true);
    let (undamped, _) = flap(10, 2000, false);
    assert!(damped <= 3, "{damped} rebalances with damping");
    assert!(undamped > 30, "{undamped} rebalances without damping");
    // Back within about two minutes of becoming stable (max suppress 120 s, plus the
    // dead-probe interval and rise).
    let back = back.expect("the node returns");
    assert!(back <= 135_000, "back after {back} ms");
}
