//! `explain` on a log of 10,000 membership changes (issue 21's target: ≤ 1 s), against the
//! naive way — folding every entry with the full placement and reading the key's owner after
//! each one — in the same run.
//!
//! The log: 100 nodes join and answer their first probe, then 10,000 drains and undrains of
//! nodes chosen by a fixed-seed generator (each a change of members that moves keys), at the
//! default 2,048 vnodes per unit of weight. Measured in memory, through the real fold: the
//! log's read from Redis (10,000 entries, a few pages) is not included.
//!
//! ```text
//! cargo bench -p pantheon-tests --bench explain
//! ```

use std::time::Instant;

use pantheon_domain::entry::{Command, LogEntry, ProbeResult};
use pantheon_domain::explain::Explainer;
use pantheon_domain::{EntryId, NodeId, Origin, State};

const NODES: u64 = 100;
const CHANGES: u64 = 10_000;

fn node(i: u64) -> NodeId {
    NodeId::new(&format!("node-{i}")).expect("node id")
}

fn log() -> Vec<LogEntry> {
    let mut log = Vec::new();
    for i in 0..NODES {
        log.push(LogEntry::new(Command::Join {
            node: node(i),
            url: format!("http://10.0.0.{i}:8080/health"),
            weight: None,
            handoff: false,
        }));
        log.push(LogEntry::new(Command::Probe(ProbeResult {
            node: node(i),
            epoch: i + 1,
            ok: true,
            status: Some(200),
            latency_ms: 1,
            error: None,
            prober: Some("p1".into()),
        })));
    }
    let mut drained = vec![false; NODES as usize];
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..CHANGES {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let i = seed % NODES;
        let was = drained[i as usize];
        drained[i as usize] = !was;
        let command = if was {
            Command::Undrain { node: node(i) }
        } else {
            Command::Drain { node: node(i) }
        };
        log.push(LogEntry::new(command));
    }
    log
}

fn id(i: usize) -> EntryId {
    EntryId::new(1_700_000_000_000 + i as u64, 0)
}

fn main() {
    let log = log();
    let key = "tenant:4711";

    let started = Instant::now();
    let mut explainer = Explainer::new(key, State::default(), None);
    for (i, entry) in log.iter().enumerate() {
        explainer.entry(id(i), entry, Origin::Service);
    }
    let explained = explainer.finish();
    let fast = started.elapsed();

    // The naive way, on a prefix (it is far slower): full fold, owner read after each entry.
    let prefix = 2 * NODES as usize + 1_000;
    let started = Instant::now();
    let mut state = State::default();
    let mut owners = 0u64;
    let mut last = None;
    for (i, entry) in log.iter().take(prefix).enumerate() {
        let _ = state.apply(id(i), entry);
        let owner = state.placement().owner(key).cloned();
        if owner != last {
            owners += 1;
            last = owner;
        }
    }
    let naive = started.elapsed();
    let naive_per_change = naive.as_secs_f64() / (prefix as f64 - 2.0 * NODES as f64);
    let fast_per_change = fast.as_secs_f64() / CHANGES as f64;

    println!(
        "explain {key} over {} entries ({CHANGES} membership changes, {NODES} nodes, 2,048 vnodes):",
        log.len()
    );
    println!(
        "  explain:     {:>8.1} ms, {} owners in its history",
        fast.as_secs_f64() * 1e3,
        explained.history.len()
    );
    println!(
        "  naive fold:  {:>8.1} ms for the first {} changes ({owners} owners), {:.2} ms per change",
        naive.as_secs_f64() * 1e3,
        prefix - 2 * NODES as usize,
        naive_per_change * 1e3
    );
    println!(
        "  per change:  explain {:.1} µs vs naive {:.0} µs: {:.0}× faster",
        fast_per_change * 1e6,
        naive_per_change * 1e6,
        naive_per_change / fast_per_change
    );
}
