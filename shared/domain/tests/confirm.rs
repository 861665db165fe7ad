//! Confirmed deaths and prober self-suspicion (issue 11 part 4, ADR 0008): a prober that marks
//! its probes (`confirm=0` regular, `confirm=1` confirmation) can only kill a node with a
//! failed confirmation; with two or more probers, only a replica other than the node's owner
//! confirms; `prober_degraded` / `prober_recovered` entries become events.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use pantheon_domain::confirm::{CheckedProbe, ProberHealth, owner_among};
use pantheon_domain::entry::{Command, LogEntry, ProbeResult};
use pantheon_domain::event::EventKind;
use pantheon_domain::health::ProbeError;
use pantheon_domain::{Event, Health, Policy, State};
use proptest::prelude::*;

fn checked(id: &str, epoch: u64, ok: bool, confirm: bool, prober: &str) -> LogEntry {
    LogEntry::new(Command::Checked(CheckedProbe {
        result: ProbeResult {
            node: node(id),
            epoch,
            ok,
            status: ok.then_some(200),
            latency_ms: 2,
            error: (!ok).then_some(ProbeError::Refused),
            prober: Some(prober.into()),
        },
        confirm,
    }))
}

fn regular_fail(id: &str) -> LogEntry {
    checked(id, 1, false, false, "p1")
}

fn confirm_fail(id: &str) -> LogEntry {
    checked(id, 1, false, true, "p1")
}

fn probers(alive: &[&str]) -> LogEntry {
    LogEntry::new(Command::Probers {
        alive: alive.iter().map(|s| (*s).to_owned()).collect(),
    })
}

fn health_of(s: &Scenario, id: &str) -> Health {
    s.state.node(&node(id)).unwrap().health.health
}

#[test]
fn regular_failures_of_a_confirming_prober_leave_the_node_suspect_with_its_keys() {
    // given a node owning keys
    let mut s = Scenario::given([join("a"), join("b"), assign(keys(200))]);
    let owned_by_a = s
        .state
        .keys()
        .iter()
        .filter(|(_, o)| o.is_some_and(|n| n.as_str() == "a"))
        .count();
    // when its prober reports ten regular failures (more than `fall`)
    let mut names = Vec::new();
    for _ in 0..10 {
        names.extend(Scenario::event_names(&s.when(&regular_fail("a")).unwrap()));
    }
    // then it is suspect, never dead, and keeps its keys
    assert_eq!(names, vec!["suspect"]);
    assert_eq!(health_of(&s, "a"), Health::Suspect);
    let still = s
        .state
        .keys()
        .iter()
        .filter(|(_, o)| o.is_some_and(|n| n.as_str() == "a"))
        .count();
    assert_eq!(still, owned_by_a);
}

#[test]
fn a_failed_confirmation_at_fall_kills() {
    // given a node with fall - 1 regular failures
    let mut s = Scenario::given([join("a"), join("b"), assign(keys(100))]);
    s.when(&regular_fail("a")).unwrap();
    s.when(&regular_fail("a")).unwrap();
    // when the confirmation on a fresh connection fails too
    let applied = s.when(&confirm_fail("a")).unwrap();
    // then it dies (the confirmation is its third consecutive failure) and its keys move
    assert_eq!(Scenario::event_names(&applied), vec!["died", "rebalanced"]);
    match &applied.events[0].kind {
        EventKind::Died { fails, .. } => assert_eq!(*fails, 3),
        other => panic!("{other:?}"),
    }
    assert_eq!(health_of(&s, "a"), Health::Dead);
}

#[test]
fn a_successful_confirmation_ends_the_failure_streak() {
    // given a suspect node with fall - 1 failures
    let mut s = Scenario::given([join("a"), regular_fail("a"), regular_fail("a")]);
    // when the fresh-connection confirmation succeeds (the pooled connection was the problem)
    s.when(&checked("a", 1, true, true, "p1")).unwrap();
    // then the streak is broken: the next confirmation failure does not kill
    assert_eq!(s.state.node(&node("a")).unwrap().health.fails, 0);
    let applied = s.when(&confirm_fail("a")).unwrap();
    assert!(Scenario::event_names(&applied).is_empty());
    assert_eq!(health_of(&s, "a"), Health::Suspect);
}

#[test]
fn with_two_probers_the_owner_cannot_confirm_its_own_suspicion() {
    // given two live probers, and `a` with fall - 1 failures from its owner
    let live = ["pa", "pb"].map(String::from);
    let owner = owner_among(&live, &node("a")).unwrap().to_owned();
    let other = live.iter().find(|p| **p != owner).unwrap().clone();
    let mut s = Scenario::given([join("a"), probers(&["pa", "pb"])]);
    s.when(&checked("a", 1, false, false, &owner)).unwrap();
    s.when(&checked("a", 1, false, false, &owner)).unwrap();
    // when the owner itself sends a "confirmation"
    let applied = s.when(&checked("a", 1, false, true, &owner)).unwrap();
    // then it counts as a regular failure only
    assert!(Scenario::event_names(&applied).is_empty());
    assert_eq!(health_of(&s, "a"), Health::Suspect);
    // when the second replica confirms (SWIM's indirect probe)
    let applied = s.when(&checked("a", 1, false, true, &other)).unwrap();
    // then the node dies
    assert_eq!(Scenario::event_names(&applied)[0], "died");
}

#[test]
fn when_the_second_prober_is_gone_the_owner_confirms_itself_again() {
    let mut s = Scenario::given([
        join("a"),
        join("b"),
        probers(&["pa", "pb"]),
        probers(&["pa"]),
    ]);
    s.when(&checked("a", 1, false, false, "pa")).unwrap();
    s.when(&checked("a", 1, false, false, "pa")).unwrap();
    let applied = s.when(&checked("a", 1, false, true, "pa")).unwrap();
    assert_eq!(Scenario::event_names(&applied), vec!["died"]);
}

#[test]
fn probes_without_confirm_keep_the_plain_fall_rule() {
    let mut s = Scenario::given([join("a"), join("b")]);
    s.when(&probe("a", 1, false)).unwrap();
    s.when(&probe("a", 1, false)).unwrap();
    let applied = s.when(&probe("a", 1, false)).unwrap();
    assert_eq!(Scenario::event_names(&applied), vec!["died"]);
}

#[test]
fn a_dead_node_revives_on_confirmed_or_regular_successes() {
    let mut s = Scenario::given([
        join("a"),
        join("b"),
        regular_fail("a"),
        regular_fail("a"),
        confirm_fail("a"),
    ]);
    s.when(&checked("a", 1, true, false, "p1")).unwrap();
    let applied = s.when(&checked("a", 1, true, true, "p1")).unwrap();
    assert_eq!(Scenario::event_names(&applied), vec!["revived"]);
}

#[test]
fn prober_degraded_and_recovered_become_events_with_the_prober_numbers() {
    // given a cluster
    let mut s = Scenario::given([join("a")]);
    let before = s.state.checksum();
    // when a prober reports it suspects itself
    let degraded = LogEntry::decode(&[
        ("type", "prober_degraded"),
        ("prober", "p1"),
        ("failing", "180"),
        ("probed", "200"),
        ("lag_ms", "12"),
    ])
    .unwrap();
    let applied = s.when(&degraded).unwrap();
    // then a prober_degraded event carries its numbers, and the state is unchanged
    assert_eq!(
        applied.events[0].kind,
        EventKind::ProberDegraded {
            prober: "p1".into(),
            failing: 180,
            probed: 200,
            lag_ms: 12
        }
    );
    assert_eq!(s.state.checksum(), before);
    let wire = applied.events[0].encode();
    assert_eq!(Event::decode(&wire).unwrap(), applied.events[0]);
    // when it recovers
    let recovered = LogEntry::new(Command::ProberHealth(ProberHealth {
        prober: "p1".into(),
        degraded: false,
        failing: 0,
        probed: 200,
        lag_ms: 3,
    }));
    let applied = s.when(&recovered).unwrap();
    assert_eq!(Scenario::event_names(&applied), vec!["prober_recovered"]);
}

#[test]
fn bad_confirm_and_prober_health_fields_are_rejected_with_a_reason() {
    let bad = LogEntry::decode(&[
        ("type", "probe"),
        ("node", "a"),
        ("epoch", "1"),
        ("ok", "0"),
        ("confirm", "maybe"),
    ]);
    assert!(bad.unwrap_err().to_string().contains("confirm"));
    let typo = LogEntry::decode(&[
        ("type", "prober_degraded"),
        ("prober", "p1"),
        ("failng", "3"),
    ]);
    assert!(typo.unwrap_err().to_string().contains("failng"));
    let no_id = LogEntry::decode(&[("type", "prober_recovered")]);
    assert!(no_id.unwrap_err().to_string().contains("prober"));
}

/// One step of a random probe history of node `a`: (ok, confirm, by the second prober).
fn step() -> impl Strategy<Value = (bool, bool, bool)> {
    (any::<bool>(), any::<bool>(), any::<bool>())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever the history: a node dies only on a failed confirmation that counts, after at
    /// least `fall` consecutive failures; never on a regular failure; and a confirmation that
    /// brings the streak to `fall` always kills a suspect node.
    #[test]
    fn a_death_is_always_a_counting_confirmation_at_fall(
        fall in 1u32..5,
        two_probers in any::<bool>(),
        steps in proptest::collection::vec(step(), 1..60),
    ) {
        let mut s = Scenario::given([join("a")]);
        s.when(&LogEntry::new(Command::Policy(pantheon_domain::policy::PolicyChange { fall: Some(fall), ..Default::default() }))).unwrap();
        let live = ["pa", "pb"].map(String::from);
        let owner = owner_among(&live, &node("a")).unwrap().to_owned();
        let other = live.iter().find(|p| **p != owner).unwrap().clone();
        if two_probers {
            s.when(&probers(&["pa", "pb"])).unwrap();
        }
        let mut streak = 0u32;
        for (ok, confirm, by_other) in steps {
            let prober = if by_other { &other } else { &owner };
            let before = health_of(&s, "a");
            let applied = s.when(&checked("a", 1, ok, confirm, prober)).unwrap();
            streak = if ok { 0 } else { streak + 1 };
            let died = Scenario::event_names(&applied).contains(&"died");
            let counts = confirm && (!two_probers || by_other);
            let expect = !ok && counts && before != Health::Dead && streak >= fall;
            prop_assert_eq!(died, expect, "streak {} fall {} confirm {} counts {}", streak, fall, confirm, counts);
            prop_assert_eq!(s.state.node(&node("a")).unwrap().health.fails, streak);
        }
    }

    /// Checked probes and prober health reports survive the wire unchanged.
    #[test]
    fn checked_probes_and_prober_health_round_trip(
        ok in any::<bool>(), confirm in any::<bool>(), degraded in any::<bool>(),
        failing in 0u32..100_000, probed in 0u32..100_000, lag in 0u32..100_000,
    ) {
        for entry in [
            checked("n-1", 7, ok, confirm, "p-1"),
            LogEntry::new(Command::ProberHealth(ProberHealth { prober: "p-1".into(), degraded, failing, probed, lag_ms: lag })),
        ] {
            let wire = entry.encode();
            prop_assert_eq!(LogEntry::decode(&wire).unwrap(), entry);
        }
    }
}

#[test]
fn the_default_policy_is_what_the_simulation_assumes() {
    // The false-death arithmetic of ADR 0008 (fall - 1 regular failures + one confirmation)
    // assumes fall = 3.
    assert_eq!(Policy::default().fall, 3);
    assert_eq!(State::default().policy().fall, 3);
}
