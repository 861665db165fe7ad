//! Load-aware placement (ADR 0018) through the fold: a load that is not one is refused with a
//! reason and moves nothing; a hot key on an overloaded node moves (with a larger token) or
//! gains read replicas, and loses them when it cools; rounds are rate-limited and wait for
//! fresh reports; the same log gives the same placement; the placement order's first node is
//! the placement's owner; a node sheds only when above the band at two rounds in a row; one
//! round makes at most `MAX_MOVES_PER_ROUND` changes; `explain` says `moved for load` and
//! names read replicas; a `key_loads` report of more than 64 keys is refused.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use pantheon_domain::entry::{Command, LogEntry};
use pantheon_domain::event::EventKind;
use pantheon_domain::load::{ROUND_MS, format_load};
use pantheon_domain::placement::{self, Member, Strategy, key_hash};
use pantheon_domain::policy::PolicyChange;

const NODES: [&str; 4] = ["a", "b", "c", "d"];

fn epsilon(e: u32) -> LogEntry {
    LogEntry::new(Command::Policy(PolicyChange {
        load_epsilon: Some(e),
        ..PolicyChange::default()
    }))
}

fn loads(reports: &[(&str, &str)]) -> LogEntry {
    LogEntry::new(Command::Loads {
        reports: reports
            .iter()
            .map(|(n, l)| (node(n), (*l).to_owned()))
            .collect(),
    })
}

fn key_loads(n: &str, keys: &[(&str, u64)]) -> LogEntry {
    LogEntry::new(Command::KeyLoads {
        node: node(n),
        keys: keys
            .iter()
            .map(|(k, l)| ((*k).to_owned(), l * 1000))
            .collect(),
    })
}

/// Four nodes, 200 assigned keys, load placement on with ε = 10%.
fn cluster() -> Scenario {
    let mut entries: Vec<LogEntry> = NODES.iter().map(|n| join(n)).collect();
    entries.push(assign(keys(200)));
    entries.push(epsilon(10));
    Scenario::given(entries)
}

/// Reports that `owner` carries a hot key of `hot` on top of a base of 100 per node.
fn report_hot(s: &mut Scenario, key: &str, hot: u64) -> pantheon_domain::Applied {
    let owner = s.owner(key).unwrap();
    s.when(&key_loads(&owner, &[(key, hot)])).unwrap();
    s.clock += ROUND_MS;
    s.when(&owner_carries(&owner, hot)).unwrap()
}

/// A `loads` entry: every node at 100, `owner` at 100 + `hot`.
fn owner_carries(owner: &str, hot: u64) -> LogEntry {
    let reports: Vec<(String, String)> = NODES
        .iter()
        .map(|n| {
            let l = if *n == owner { 100 + hot } else { 100 };
            ((*n).to_owned(), l.to_string())
        })
        .collect();
    let reports: Vec<(&str, &str)> = reports
        .iter()
        .map(|(n, l)| (n.as_str(), l.as_str()))
        .collect();
    loads(&reports)
}

#[test]
fn a_load_that_is_not_one_is_refused_with_a_reason_and_nothing_moves() {
    let mut s = cluster();
    for garbage in ["fast", "-3", "NaN", "1e13", ""] {
        let applied = s.when(&loads(&[("a", garbage)])).unwrap();
        let refused: Vec<&EventKind> = applied
            .events
            .iter()
            .map(|e| &e.kind)
            .filter(|k| matches!(k, EventKind::LoadRefused { .. }))
            .collect();
        assert_eq!(refused.len(), 1, "{garbage:?}: {:?}", applied.events);
        if let EventKind::LoadRefused {
            node: n, reason, ..
        } = refused[0]
        {
            assert_eq!(n, &node("a"));
            assert!(reason.starts_with("load "), "{reason}");
        }
        assert!(applied.key_changes.is_empty());
        assert_eq!(s.state.loads().node(&node("a")), None);
    }
    // A decoder refuses a key load that is not one: the whole entry is rejected.
    let bad = LogEntry::decode(&[
        ("type", "key_loads"),
        ("node", "a"),
        ("key", "user:1"),
        ("load", "lots"),
    ]);
    assert!(bad.is_err());
}

#[test]
fn a_load_report_names_each_changed_node_once_in_order_and_rewrites_no_record() {
    let mut s = cluster();
    s.when(&loads(&[("a", "100"), ("b", "100")])).unwrap();
    let applied = s
        .when(&loads(&[("c", "1"), ("b", "100"), ("a", "7"), ("c", "2")]))
        .unwrap();
    assert_eq!(applied.node_loads_changed, vec![node("a"), node("c")]);
    assert!(applied.nodes_changed.is_empty());
    assert_eq!(s.state.loads().node(&node("c")), Some(2_000));
    // Nothing changed: nothing to write.
    let again = s.when(&loads(&[("a", "7"), ("c", "2")])).unwrap();
    assert!(again.node_loads_changed.is_empty());
}

#[test]
fn a_node_that_stops_reporting_is_forgotten_not_frozen() {
    let mut s = cluster();
    s.when(&loads(&[("a", "300"), ("b", "100")])).unwrap();
    assert_eq!(s.state.loads().node(&node("a")), Some(300_000));
    let applied = s
        .when(&loads(&[("a", pantheon_domain::load::NO_LOAD)]))
        .unwrap();
    assert_eq!(s.state.loads().node(&node("a")), None);
    assert!(
        applied.node_loads_changed == vec![node("a")],
        "its load field is written again"
    );
    assert!(
        applied.nodes_changed.is_empty(),
        "its node record is not: loads live apart"
    );
    assert!(
        !applied
            .events
            .iter()
            .any(|e| matches!(e.kind, EventKind::LoadRefused { .. })),
        "`none` is no garbage"
    );
    assert_eq!(s.state.loads().node(&node("b")), Some(100_000));
}

#[test]
fn a_hot_key_gains_read_replicas_and_loses_them_when_it_cools() {
    let mut s = cluster();
    let key = "user:7";
    let owner = s.owner(key).unwrap();
    let token_before = s.state.owner_with_token(key).unwrap().1;
    // The hot key alone is 3× a node's base load: more than a node's fair share.
    let applied = report_hot(&mut s, key, 300);
    assert!(
        applied
            .events
            .iter()
            .any(|e| matches!(e.kind, EventKind::LoadBalanced { .. })),
        "{:?}",
        applied.events
    );
    let replicas = s.state.load_plan().replicas_of(key).to_vec();
    let moved = s.state.load_plan().moved_to(key).cloned();
    assert!(
        !replicas.is_empty() || moved.is_some(),
        "the hot key got help: {:?}",
        s.state.load_plan()
    );
    assert!(applied.replicas_changed.contains(&key.to_owned()) || moved.is_some());
    if let Some(to) = moved {
        assert_ne!(to.as_str(), owner);
        assert!(s.state.owner_with_token(key).unwrap().1 > token_before);
    }
    // It cools: after enough rounds with fresh reports its replicas go, one per round.
    for _ in 0..10 {
        report_hot(&mut s, key, 1);
    }
    assert!(
        s.state.load_plan().replicas_of(key).is_empty(),
        "{:?}",
        s.state.load_plan()
    );
}

#[test]
fn rounds_are_rate_limited_and_the_policy_off_moves_nothing() {
    let mut s = cluster();
    report_hot(&mut s, "user:7", 300);
    let round = s.state.load_plan().last_round_ms().unwrap();
    // A second report within the round interval runs no round.
    let applied = s.when(&loads(&[("a", "900"), ("b", "1")])).unwrap();
    assert_eq!(s.state.load_plan().last_round_ms(), Some(round));
    assert!(applied.key_changes.is_empty());

    let mut off = Scenario::given(
        NODES
            .iter()
            .map(|n| join(n))
            .chain([assign(keys(200))])
            .collect::<Vec<_>>(),
    );
    let owners: Vec<Option<String>> = keys(200).iter().map(|k| off.owner(k)).collect();
    report_hot(&mut off, "user:7", 300);
    report_hot(&mut off, "user:7", 300);
    assert!(off.state.load_plan().is_empty());
    let after: Vec<Option<String>> = keys(200).iter().map(|k| off.owner(k)).collect();
    assert_eq!(
        owners, after,
        "with load_epsilon 0 placement counts keys only"
    );
    assert!(off.state.loads().node(&node("a")).is_some());
}

#[test]
fn the_same_log_gives_the_same_placement() {
    let build = || {
        let mut s = cluster();
        for i in 0..6 {
            report_hot(&mut s, &format!("user:{}", i * 13), 150 + i * 40);
        }
        s
    };
    let (a, b) = (build(), build());
    assert_eq!(a.state.checksum(), b.state.checksum());
    assert_eq!(a.state.load_plan(), b.state.load_plan());
    assert!(!a.state.load_plan().is_empty());
}

#[test]
fn the_placement_order_starts_with_the_owner_for_both_strategies() {
    let members: Vec<Member> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|n| Member {
            node: node(n),
            weight: 1 + (n.len() as u32 % 2),
        })
        .collect();
    for strategy in [Strategy::Ring, Strategy::Rendezvous] {
        let p = placement::build(strategy, 64, members.clone());
        for i in 0..500 {
            let key = format!("k{i}");
            let order = p.order_of_hash(&key, key_hash(&key), usize::MAX);
            assert_eq!(order.len(), 5, "{strategy:?}");
            assert_eq!(Some(&order[0]), p.owner(&key), "{strategy:?} {key}");
            let mut sorted = order.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), 5, "each member once");
        }
    }
}

#[test]
fn loads_survive_the_wire() {
    let e = key_loads("a", &[("user:1", 12), ("user:2", 3)]);
    let decoded = LogEntry::decode(&e.encode()).unwrap();
    assert_eq!(decoded, e);
    let l = loads(&[("a", "12.5"), ("b", "garbage")]);
    assert_eq!(LogEntry::decode(&l.encode()).unwrap(), l);
    assert_eq!(format_load(12_500), "12.5");
    // A `loads` entry is the service's: nobody else may write it.
    assert!(l.command.is_service_only());
    assert!(!e.command.is_service_only());
    // At most 64 hot keys per report: a longer one is refused as it is read, so the fold
    // rejects it and changes nothing.
    let names: Vec<String> = (0..=pantheon_domain::load::MAX_KEY_LOADS)
        .map(|i| format!("k{i}"))
        .collect();
    let many: Vec<(&str, u64)> = names.iter().map(|k| (k.as_str(), 1)).collect();
    let too_many = key_loads("a", &many);
    let err = LogEntry::decode(&too_many.encode()).unwrap_err();
    assert!(err.to_string().contains("65"), "{err}");
    let mut s = cluster();
    let before = s.state.checksum();
    let id = s.next_id();
    assert!(
        s.state
            .apply_raw(id, &too_many.encode(), pantheon_domain::Origin::Service)
            .is_err()
    );
    assert_eq!(s.state.checksum(), before);
    let fit = key_loads("a", &many[..pantheon_domain::load::MAX_KEY_LOADS]);
    assert!(LogEntry::decode(&fit.encode()).is_ok());
}

/// A fold that keeps its log, so that `explain` can read it back.
struct Logged {
    state: pantheon_domain::State,
    log: Vec<(pantheon_domain::EntryId, LogEntry)>,
    clock: u64,
}

impl Logged {
    fn apply(&mut self, entry: LogEntry) {
        self.clock += 1;
        let id = pantheon_domain::EntryId::new(self.clock, 0);
        self.state.apply(id, &entry).unwrap();
        self.log.push((id, entry));
    }
}

#[test]
fn explain_says_when_a_key_moved_for_load_and_names_read_replicas() {
    use pantheon_domain::Origin;
    use pantheon_domain::explain::Explainer;
    let mut f = Logged {
        state: pantheon_domain::State::default(),
        log: Vec::new(),
        clock: 1_700_000_000_000,
    };
    for n in NODES {
        f.apply(join(n));
        let epoch = f.state.node(&node(n)).unwrap().epoch;
        f.apply(probe(n, epoch, true));
    }
    f.apply(assign(keys(200)));
    f.apply(epsilon(10));
    // Eight keys of `a`, each too light for replicas, together put `a` above the band: two
    // rounds in a row, so it sheds some of them. One more key is hot enough for replicas.
    let of_a: Vec<String> = keys(200)
        .into_iter()
        .filter(|k| {
            f.state.keys().get(k).and_then(|o| o.map(|n| n.to_string())) == Some("a".into())
        })
        .collect();
    let warm = &of_a[..8];
    let hot = keys(200)
        .into_iter()
        .find(|k| f.state.keys().get(k).and_then(|o| o.map(|n| n.to_string())) == Some("b".into()))
        .unwrap();
    for _ in 0..3 {
        let mut reported: Vec<(&str, u64)> = warm.iter().map(|k| (k.as_str(), 20)).collect();
        f.apply(key_loads("a", &reported));
        reported = vec![(hot.as_str(), 300)];
        f.apply(key_loads("b", &reported));
        f.clock += ROUND_MS;
        f.apply(loads(&[
            ("a", "260"),
            ("b", "400"),
            ("c", "100"),
            ("d", "100"),
        ]));
    }
    let moved: Vec<String> = f
        .state
        .load_plan()
        .moved()
        .map(|(k, _)| k.to_owned())
        .collect();
    assert!(!moved.is_empty(), "{:?}", f.state.load_plan());
    let replicas = f.state.load_plan().replicas_of(&hot).to_vec();
    assert!(!replicas.is_empty(), "{:?}", f.state.load_plan());

    let explain = |key: &str| {
        let mut e = Explainer::full(key, pantheon_domain::State::default(), None);
        for (id, entry) in &f.log {
            e.entry(*id, entry, Origin::Service);
        }
        e.finish()
    };
    let x = explain(&moved[0]);
    let last = x.history.last().unwrap();
    assert_eq!(
        last.node.as_ref(),
        f.state.keys().get(&moved[0]).unwrap(),
        "{x:?}"
    );
    assert_ne!(last.node.as_ref().map(|n| n.as_str()), Some("a"), "{x:?}");
    assert!(last.why.contains("moved for load"), "{x:?}");
    assert!(x.replicas.is_empty(), "{x:?}");
    let x = explain(&hot);
    assert_eq!(x.replicas, replicas, "{x:?}");
    assert!(
        !x.history.iter().any(|o| o.why.contains("moved for load")),
        "replicas are no move: {x:?}"
    );
}

/// `a`'s keys `warm` (each too light for replicas) reported at `each`, and every node's load:
/// `a` at `a_load`, the others at 100. One round.
fn report_warm(
    s: &mut Scenario,
    warm: &[String],
    each: u64,
    a_load: u64,
) -> pantheon_domain::Applied {
    let reported: Vec<(&str, u64)> = warm.iter().map(|k| (k.as_str(), each)).collect();
    s.when(&key_loads("a", &reported)).unwrap();
    s.clock += ROUND_MS;
    let a = a_load.to_string();
    s.when(&loads(&[
        ("a", &a),
        ("b", "100"),
        ("c", "100"),
        ("d", "100"),
    ]))
    .unwrap()
}

fn keys_of(s: &Scenario, n: &str) -> Vec<String> {
    keys(200)
        .into_iter()
        .filter(|k| s.owner(k).as_deref() == Some(n))
        .collect()
}

#[test]
fn a_node_sheds_only_when_above_the_band_at_two_rounds_in_a_row() {
    let mut s = cluster();
    let warm: Vec<String> = keys_of(&s, "a")[..8].to_vec();
    // Above the band once, then back inside it: nothing moves.
    report_warm(&mut s, &warm, 20, 260);
    assert_eq!(s.state.load_plan().moved().count(), 0);
    report_warm(&mut s, &warm, 1, 105);
    assert_eq!(s.state.load_plan().moved().count(), 0);
    // Above it at two rounds in a row: `a` sheds keys, down to about the mean.
    report_warm(&mut s, &warm, 20, 260);
    assert_eq!(s.state.load_plan().moved().count(), 0, "once is noise");
    let applied = report_warm(&mut s, &warm, 20, 260);
    let moved: Vec<&str> = s.state.load_plan().moved().map(|(k, _)| k).collect();
    assert!(!moved.is_empty(), "{:?}", s.state.load_plan());
    assert!(moved.iter().all(|k| warm.iter().any(|w| w == k)));
    assert!(
        applied
            .events
            .iter()
            .any(|e| matches!(e.kind, EventKind::LoadBalanced { moved, .. } if moved > 0))
    );
}

#[test]
fn one_round_changes_at_most_the_rate_limit() {
    // 100 nodes; `n0` and `n1` each hold 64 slightly hot keys and run far above the band.
    // Shedding them down to the mean wants about 175 moves, and there are 98 nodes with room
    // (each takes one per round): more than one round may make.
    let names: Vec<String> = (0..100).map(|i| format!("n{i}")).collect();
    let mut entries: Vec<LogEntry> = names.iter().map(|n| join(n)).collect();
    entries.push(assign(keys(20_000)));
    entries.push(epsilon(10));
    let mut s = Scenario::given(entries);
    let hot_of = |s: &Scenario, n: &str| -> Vec<String> {
        keys(20_000)
            .into_iter()
            .filter(|k| s.owner(k).as_deref() == Some(n))
            .take(pantheon_domain::load::MAX_KEY_LOADS)
            .collect()
    };
    let (of_0, of_1) = (hot_of(&s, "n0"), hot_of(&s, "n1"));
    let node_loads: Vec<(&str, &str)> = names
        .iter()
        .map(|n| {
            (
                n.as_str(),
                if n == "n0" || n == "n1" {
                    "1000"
                } else {
                    "100"
                },
            )
        })
        .collect();
    let mut changes = Vec::new();
    for _ in 0..3 {
        for (n, hot) in [("n0", &of_0), ("n1", &of_1)] {
            let reported: Vec<(&str, u64)> = hot.iter().map(|k| (k.as_str(), 10)).collect();
            s.when(&key_loads(n, &reported)).unwrap();
        }
        s.clock += ROUND_MS;
        let applied = s.when(&loads(&node_loads)).unwrap();
        let n: u64 = applied
            .events
            .iter()
            .map(|e| match e.kind {
                EventKind::LoadBalanced {
                    moved, replicas, ..
                } => moved + replicas,
                _ => 0,
            })
            .sum();
        changes.push(n);
    }
    let limit = pantheon_domain::load::MAX_MOVES_PER_ROUND as u64;
    assert!(changes.iter().all(|&n| n <= limit), "{changes:?}");
    assert!(
        changes.contains(&limit),
        "the limit was reached: {changes:?}"
    );
}

#[test]
fn the_meta_and_round_read_models_are_written_exactly_when_they_change() {
    // `settling` and `above` are one read-model field, the round's time another: every entry
    // that changes them says so, and one that changes neither does not (at 10,000 nodes the
    // `meta` field lists thousands of nodes, and most rounds leave it as it was).
    let mut s = cluster();
    let meta = |s: &Scenario| {
        let (_, _, settling, above) = s.state.loads().parts();
        (settling.clone(), above.clone())
    };
    let round = |s: &Scenario| s.state.load_plan().last_round_ms();
    let check = |s: &mut Scenario, e: LogEntry, what: &str| -> (bool, bool) {
        let before = (meta(s), round(s));
        let applied = s.when(&e).unwrap();
        let changed = (meta(s) != before.0, round(s) != before.1);
        assert_eq!(
            (applied.load_meta_changed, applied.load_round_changed),
            changed,
            "{what}"
        );
        changed
    };
    let mut changed = Vec::new();
    for i in 0..6 {
        let hot = if i < 4 { 300 } else { 1 };
        let owner = s.owner("user:7").unwrap();
        check(&mut s, key_loads(&owner, &[("user:7", hot)]), "key_loads");
        s.clock += ROUND_MS;
        // The owner carries the hot key: above the band while it is hot.
        changed.push(check(&mut s, owner_carries(&owner, hot), "a round"));
        // Within the round interval: no round, and nodes that report again leave `settling`.
        changed.push(check(&mut s, loads(&[("b", "100")]), "a report"));
    }
    assert!(changed.iter().any(|c| c.0), "meta changed: {changed:?}");
    assert!(
        changed.iter().any(|c| c.1 && !c.0),
        "a round that leaves meta as it was: {changed:?}"
    );
    check(&mut s, leave("c"), "a leave");
}

#[test]
fn the_nodes_above_the_band_follow_each_round() {
    // A round keeps the nodes above the band (hysteresis needs them at the next round) by
    // what entered and left it since the last one: nodes enter and leave in every position,
    // the last node of the list included.
    let mut s = cluster();
    let above = |s: &Scenario| -> Vec<String> {
        let (_, _, _, above) = s.state.loads().parts();
        above.iter().map(ToString::to_string).collect()
    };
    let rounds: [(&[&str], &[&str]); 5] = [
        (&["a"], &["a"]),
        (&["b", "d"], &["b", "d"]),
        (&["a", "d"], &["a", "d"]),
        (&["c"], &["c"]),
        (&[], &[]),
    ];
    for (hot, expected) in rounds {
        let figures: Vec<(&str, &str)> = NODES
            .iter()
            .map(|n| (*n, if hot.contains(n) { "200" } else { "100" }))
            .collect();
        s.clock += ROUND_MS;
        let applied = s.when(&loads(&figures)).unwrap();
        assert_eq!(above(&s), expected, "hot {hot:?}");
        assert!(applied.load_round_changed, "a round ran");
    }
}
