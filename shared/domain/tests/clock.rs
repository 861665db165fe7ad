//! A poisoned log clock (an entry id far in the future, written by a producer using its own
//! clock): health keeps working while the ids stand still, the projector's `clock_skew`
//! report becomes an event, and a new log generation brings time back without losing state.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use pantheon_domain::clock::{ClockSkew, Generation};
use pantheon_domain::entry::{Command, LogEntry};
use pantheon_domain::event::{Event, EventKind};
use pantheon_domain::{EntryId, Health, Rejection, State};

/// Year 5138 in ms: what `XADD log 99999999999999-0 ...` leaves every later id at.
const POISON: u64 = 99_999_999_999_999;

/// Feeds entries the way Redis ids them: `XADD *` gives max(now, last ms) and bumps the
/// sequence when the clock is behind the last id.
struct Log {
    state: State,
    last: EntryId,
}

impl Log {
    fn new() -> Self {
        Self {
            state: State::default(),
            last: EntryId::ZERO,
        }
    }

    /// `XADD *` at server time `now`.
    fn add(&mut self, now: u64, entry: &LogEntry) -> Result<Vec<EventKind>, Rejection> {
        let id = if now > self.last.ms {
            EntryId::new(now, 0)
        } else {
            EntryId::new(self.last.ms, self.last.seq + 1)
        };
        self.add_at(id, entry)
    }

    /// `XADD <id>`: an explicit id (the poison).
    fn add_at(&mut self, id: EntryId, entry: &LogEntry) -> Result<Vec<EventKind>, Rejection> {
        self.last = id;
        let applied = self.state.apply(id, entry)?;
        Ok(applied.events.into_iter().map(|e| e.kind).collect())
    }

    /// A new generation: the log restarts empty, so `XADD *` follows the server clock again.
    fn new_generation(&mut self, now: u64) -> Vec<EventKind> {
        let previous = self.last;
        self.last = EntryId::ZERO;
        let marker = LogEntry::new(Command::Generation(Generation {
            previous,
            archive: "pantheon:{c}:log:archive:1".into(),
        }));
        self.add(now, &marker).unwrap()
    }
}

fn names(events: &[EventKind]) -> Vec<&'static str> {
    events.iter().map(EventKind::name).collect()
}

const T0: u64 = 1_700_000_000_000;

fn three_nodes_with_keys() -> Log {
    let mut log = Log::new();
    for (i, n) in ["a", "b", "c"].iter().enumerate() {
        log.add(T0 + i as u64, &join(n)).unwrap();
        log.add(T0 + i as u64, &probe(n, i as u64 + 1, true))
            .unwrap();
    }
    log.add(T0 + 10, &assign(keys(300))).unwrap();
    log
}

fn owned_by(state: &State, n: &str) -> usize {
    state
        .keys()
        .iter()
        .filter(|(_, o)| o.is_some_and(|o| o.as_str() == n))
        .count()
}

#[test]
fn after_a_poisoned_id_a_stopped_node_still_dies_and_its_keys_move() {
    // Given a poisoned entry: every later id stands still at the poisoned ms
    let mut log = three_nodes_with_keys();
    log.add_at(EntryId::new(POISON, 0), &probe("b", 2, true))
        .unwrap();
    assert!(owned_by(&log.state, "a") > 0);
    // When a's probes fail (ids POISON-1, -2, -3: log time does not move)
    let mut events = Vec::new();
    for i in 0..3 {
        events = log.add(T0 + 1000 + i, &probe("a", 1, false)).unwrap();
    }
    assert_eq!(log.last, EntryId::new(POISON, 3), "ids are stuck");
    // Then it dies, and its keys move to the others
    assert_eq!(names(&events), ["died", "rebalanced"]);
    assert_eq!(
        log.state.node(&node("a")).unwrap().health.health,
        Health::Dead
    );
    assert_eq!(owned_by(&log.state, "a"), 0);
    assert_eq!(owned_by(&log.state, "b") + owned_by(&log.state, "c"), 300);
    // And it revives and takes keys again
    for i in 0..2 {
        events = log.add(T0 + 2000 + i, &probe("a", 1, true)).unwrap();
    }
    assert_eq!(names(&events), ["revived", "rebalanced"]);
    assert!(owned_by(&log.state, "a") > 0);
}

#[test]
fn the_projectors_report_becomes_a_clock_skew_event() {
    let mut log = three_nodes_with_keys();
    let before = log.state.checksum();
    let report = LogEntry::new(Command::ClockSkew(ClockSkew {
        entry: EntryId::new(POISON, 0),
        skew_ms: POISON - T0,
    }));
    let events = log.add(T0 + 20, &report).unwrap();
    assert_eq!(
        events,
        [EventKind::ClockSkew {
            entry: EntryId::new(POISON, 0),
            skew_ms: POISON - T0
        }]
    );
    assert_eq!(log.state.checksum(), before, "a report changes no state");
    // The event survives its wire format.
    let event = Event {
        cause: log.last,
        kind: events[0].clone(),
    };
    let encoded: Vec<(String, String)> = event
        .encode()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    assert_eq!(Event::decode(&encoded).unwrap(), event);
}

#[test]
fn a_new_generation_keeps_the_state_and_lets_penalties_decay_again() {
    // Given a node damped while the ids stood at the poisoned ms
    let mut log = three_nodes_with_keys();
    log.add_at(EntryId::new(POISON, 0), &probe("b", 2, true))
        .unwrap();
    for round in 0..2 {
        for _ in 0..3 {
            log.add(T0, &probe("a", 1, false)).unwrap();
        }
        if round == 0 {
            for _ in 0..2 {
                log.add(T0, &probe("a", 1, true)).unwrap();
            }
        }
    }
    for _ in 0..2 {
        log.add(T0, &probe("a", 1, true)).unwrap();
    }
    let a = log.state.node(&node("a")).unwrap();
    assert!(a.damped, "two deaths at one instant of frozen time damp");
    assert_eq!(a.penalty.at, POISON);
    let keys_before = log.state.keys().len();
    let nodes_before: Vec<_> = log.state.nodes().map(|n| n.id.clone()).collect();

    // When the operator moves the log to a new generation at real time T1
    let t1 = T0 + 60_000;
    let events = log.new_generation(t1);
    // Then the marker says so and names what it rebased; nothing else changed
    assert_eq!(
        events[0],
        EventKind::GenerationStarted {
            previous: EntryId::new(POISON, 10),
            archive: "pantheon:{c}:log:archive:1".into(),
            rebased: 1,
        }
    );
    assert_eq!(log.state.keys().len(), keys_before);
    let nodes_after: Vec<_> = log.state.nodes().map(|n| n.id.clone()).collect();
    assert_eq!(nodes_after, nodes_before);
    let a = log.state.node(&node("a")).unwrap();
    assert_eq!(a.penalty.at, t1);
    assert!(a.damped);
    // And with time moving again, the node is undamped within damp_max_suppress (120 s)
    let mut undamped_at = None;
    for s in 1..=130u64 {
        let events = log.add(t1 + s * 1000, &probe("b", 2, true)).unwrap();
        if names(&events).contains(&"undamped") {
            undamped_at = Some(s);
            break;
        }
    }
    let s = undamped_at.expect("undamped after the new generation");
    assert!(s <= 120, "undamped after {s} s");
    assert!(owned_by(&log.state, "a") > 0);
}

#[test]
fn a_new_generation_starts_a_fresh_window_of_command_ids() {
    let mut log = three_nodes_with_keys();
    log.add(T0 + 20, &leave("c").with_cmd("c-1")).unwrap();
    log.new_generation(T0 + 30);
    assert_eq!(log.state.recent_cmds().count(), 0);
    // The same cmd is a new command in the new generation.
    let events = log.add(T0 + 40, &join("c").with_cmd("c-1")).unwrap();
    assert_eq!(names(&events)[0], "joined");
}

#[test]
fn a_clock_skew_or_generation_entry_with_a_bad_id_is_rejected() {
    for (kind, field) in [("clock_skew", "entry"), ("generation", "previous")] {
        let mut fields = vec![("type", kind), (field, "not-an-id")];
        fields.push(if kind == "clock_skew" {
            ("skew_ms", "5")
        } else {
            ("archive", "x")
        });
        let err = LogEntry::decode(&fields).unwrap_err();
        assert!(err.to_string().contains("stream entry id"), "{err}");
    }
}
