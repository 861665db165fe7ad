//! Load-aware placement (issue 23, ADR 0018) simulated through the real fold: Zipf s = 1.1
//! request load over 1,000,000 assigned keys on 100 nodes, the same workload with the policy
//! off (`load_epsilon` 0) and on (10), in one run.
//!
//! Every round the simulation computes each node's true load from the fold's owners and read
//! replicas (a key's load splits evenly over its holders), writes one `key_loads` entry per
//! node (its 32 hottest keys, as the worker library would) and the `loads` entries the
//! prober's own [`LoadReports`] writes for those node loads (its smoothing, 5% dead band and
//! refresh of settling nodes included), [`ROUND_MS`] of log time apart, and reads back busiest/mean and what
//! moved. After the cold start it keeps the load stable for 10 minutes of log time exactly,
//! then 20 minutes with ±2% noise on every node's and key's figure, and counts the moves
//! (target: none), and how long the load ran without any at the end (target: 10 minutes).
//!
//! ```text
//! cargo bench -p pantheon-tests --bench load_balance
//! ```
//!
//! `PANTHEON_BENCH_TRACE=1` runs only the noisy stable phase and prints every change it makes
//! (which key, its holders before and after, the shares reported for it) on stderr.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use pantheon_domain::entry::{Command, LogEntry, ProbeResult};
use pantheon_domain::event::EventKind;
use pantheon_domain::load::{ROUND_MS, format_load};
use pantheon_domain::policy::PolicyChange;
use pantheon_domain::{EntryId, KeyChange, NodeId, State};
use pantheon_prober::load_reports::LoadReports;

const NODES: u64 = 100;
const KEYS: usize = 1_000_000;
const ZIPF_S: f64 = 1.1;
/// Requests per second over the whole cluster (the unit does not matter, only ratios).
const TOTAL_LOAD: f64 = 1_000_000.0;
const TOP_K: usize = 32;
const COLD_ROUNDS: u64 = 60;
/// 10 minutes of log time.
const STABLE_ROUNDS: u64 = 10 * 60 * 1000 / ROUND_MS;

fn node(i: u64) -> NodeId {
    NodeId::new(&format!("node-{i}")).expect("node id")
}

/// Each node's hottest keys: (its share of the key's load, key index), hottest first.
type Hottest = BTreeMap<NodeId, Vec<(f64, usize)>>;

struct Sim {
    state: State,
    ms: u64,
    keys: Vec<String>,
    /// Per key, its share of all requests.
    weight: Vec<f64>,
    seed: u64,
    /// What the prober would write of the node loads.
    reports: LoadReports,
    /// Log time 0 for the prober's clock.
    t0: tokio::time::Instant,
}

impl Sim {
    fn new(epsilon: u32) -> Self {
        let mut sim = Self {
            state: State::default(),
            ms: 1_000_000,
            keys: (0..KEYS).map(|i| format!("tenant:{i}")).collect(),
            weight: Vec::new(),
            seed: 0x9e37_79b9_7f4a_7c15,
            reports: LoadReports::default(),
            t0: tokio::time::Instant::now(),
        };
        let norm: f64 = (1..=KEYS).map(|r| (r as f64).powf(-ZIPF_S)).sum();
        sim.weight = (1..=KEYS)
            .map(|r| (r as f64).powf(-ZIPF_S) / norm)
            .collect();
        for i in 0..NODES {
            sim.apply(Command::Join {
                node: node(i),
                url: format!("http://10.0.0.{i}:8080/health"),
                weight: None,
                handoff: false,
            });
            sim.apply(Command::Probe(ProbeResult {
                node: node(i),
                epoch: i + 1,
                ok: true,
                status: Some(200),
                latency_ms: 1,
                error: None,
                prober: Some("p1".into()),
            }));
        }
        for chunk in sim.keys.clone().chunks(10_000) {
            sim.apply(Command::Assign {
                keys: chunk.to_vec(),
            });
        }
        if epsilon > 0 {
            sim.apply(Command::Policy(PolicyChange {
                load_epsilon: Some(epsilon),
                ..PolicyChange::default()
            }));
        }
        sim
    }

    fn apply(&mut self, command: Command) -> pantheon_domain::Applied {
        self.ms += 1;
        let id = EntryId::new(self.ms, 0);
        self.state
            .apply(id, &LogEntry::new(command))
            .expect("the fold takes the simulated entry")
    }

    fn noise(&mut self) -> f64 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        // Uniform in [0.98, 1.02].
        0.98 + (self.seed % 40_001) as f64 / 1_000_000.0
    }

    /// Each node's true load, and each node's hottest keys with their share of load.
    fn true_loads(&self) -> (BTreeMap<NodeId, f64>, Hottest) {
        let mut nodes: BTreeMap<NodeId, f64> = (0..NODES).map(|i| (node(i), 0.0)).collect();
        let mut hottest: Hottest = BTreeMap::new();
        let plan = self.state.load_plan();
        for (i, key) in self.keys.iter().enumerate() {
            let Some(Some(owner)) = self.state.keys().get(key) else {
                continue;
            };
            let replicas = plan.replicas_of(key);
            let share = self.weight[i] * TOTAL_LOAD / (1 + replicas.len()) as f64;
            for holder in std::iter::once(owner).chain(replicas) {
                *nodes.entry(holder.clone()).or_default() += share;
                let top = hottest.entry(holder.clone()).or_default();
                if top.len() < TOP_K || share > top[TOP_K - 1].0 {
                    top.push((share, i));
                    top.sort_by(|a, b| b.0.total_cmp(&a.0));
                    top.truncate(TOP_K);
                }
            }
        }
        (nodes, hottest)
    }

    fn busiest_over_mean(loads: &BTreeMap<NodeId, f64>) -> f64 {
        let max = loads.values().copied().fold(0.0, f64::max);
        let mean = loads.values().sum::<f64>() / loads.len() as f64;
        max / mean
    }

    /// One round: reports, then the `loads` entry that may run a round. Returns the true
    /// busiest/mean before it, owners moved, replica sets changed.
    fn round(&mut self, noisy: bool) -> (f64, u64, u64) {
        self.ms += ROUND_MS;
        let (loads, hottest) = self.true_loads();
        let ratio = Self::busiest_over_mean(&loads);
        for (n, top) in hottest {
            let keys = top
                .iter()
                .map(|(share, i)| {
                    let f = if noisy { self.noise() } else { 1.0 };
                    (self.keys[*i].clone(), (share * f * 1000.0) as u64)
                })
                .collect();
            self.apply(Command::KeyLoads { node: n, keys });
        }
        let now = self.t0 + Duration::from_millis(self.ms);
        for (n, l) in &loads {
            let f = if noisy { self.noise() } else { 1.0 };
            let text = format_load((l * f * 1000.0) as u64);
            self.reports.observe(n, true, Some(&text), now);
        }
        // The prober learns which nodes settle from the read models after each commit.
        self.reports
            .set_settling(self.state.loads().parts().2.clone());
        let due = self.reports.due(now);
        let (mut moved, mut replicas) = (0, 0);
        let trace = std::env::var_os("PANTHEON_BENCH_TRACE").is_some() && noisy;
        for entry in due {
            let before: BTreeMap<String, usize> = if trace {
                self.state
                    .load_plan()
                    .replicas()
                    .map(|(k, r)| (k.to_owned(), r.len()))
                    .collect()
            } else {
                BTreeMap::new()
            };
            let applied = self.apply(entry.command);
            if trace {
                for key in &applied.replicas_changed {
                    let after = self.state.load_plan().replicas_of(key).len();
                    let by = self
                        .state
                        .loads()
                        .keys()
                        .find(|(k, _)| *k == key)
                        .map(|(_, by)| by.clone());
                    eprintln!(
                        "TRACE t={} {key}: replicas {} -> {after}; reports {:?}; mean {:?}",
                        self.ms,
                        before.get(key).copied().unwrap_or(0),
                        by,
                        self.state.loads().parts().0.values().sum::<u64>() / NODES,
                    );
                }
                for c in &applied.key_changes {
                    if let KeyChange::Moved { key, from, to } = c {
                        eprintln!("TRACE t={} moved {key}: {from:?} -> {to:?}", self.ms);
                    }
                }
            }
            moved += applied
                .key_changes
                .iter()
                .filter(|c| matches!(c, KeyChange::Moved { .. }))
                .count() as u64;
            replicas += applied
                .events
                .iter()
                .map(|e| match e.kind {
                    EventKind::LoadBalanced { replicas, .. } => replicas,
                    _ => 0,
                })
                .sum::<u64>();
        }
        (ratio, moved, replicas)
    }
}

fn main() {
    println!(
        "load-aware placement: Zipf s = {ZIPF_S} over {KEYS} keys, {NODES} nodes, top {TOP_K} keys per node, rounds {ROUND_MS} ms apart"
    );
    let started = Instant::now();
    let mut off = Sim::new(0);
    let mut on = Sim::new(10);
    println!("set-up: {:.1} s", started.elapsed().as_secs_f64());

    let mut off_ratio = 0.0;
    for _ in 0..3 {
        off_ratio = off.round(false).0;
    }
    println!("policy off: busiest/mean load {off_ratio:.3}");

    let started = Instant::now();
    let (mut total_moved, mut total_replicas, mut max_moved) = (0u64, 0u64, 0u64);
    let mut converged_at = None;
    let mut ratio = 0.0;
    for r in 1..=COLD_ROUNDS {
        let (before, moved, replicas) = on.round(false);
        ratio = before;
        total_moved += moved;
        total_replicas += replicas;
        max_moved = max_moved.max(moved + replicas);
        if before <= 1.10 && converged_at.is_none() {
            converged_at = Some(r);
        }
        if r <= 10 || r % 10 == 0 {
            println!(
                "  round {r:3}: busiest/mean {before:.3} before, {moved} owners moved, {replicas} replica sets changed"
            );
        }
    }
    let (final_loads, _) = on.true_loads();
    let final_ratio = Sim::busiest_over_mean(&final_loads);
    let replicated = on.state.load_plan().replicas().count();
    let replica_count: usize = on.state.load_plan().replicas().map(|(_, r)| r.len()).sum();
    println!(
        "policy on (load_epsilon 10): busiest/mean load {final_ratio:.3} after {COLD_ROUNDS} rounds (target ≤ 1.10; off: {off_ratio:.3}, ratio {:.2}×)",
        off_ratio / final_ratio
    );
    println!(
        "  converged (≤ 1.10) after round {}; owners moved in all: {total_moved} of {KEYS} keys ({:.4}%); replica-set changes: {total_replicas}; most changes in one round: {max_moved} ({:.4}% of keys, target ≤ 5%)",
        converged_at.map_or("never".to_owned(), |r| r.to_string()),
        total_moved as f64 * 100.0 / KEYS as f64,
        max_moved as f64 * 100.0 / KEYS as f64,
    );
    println!(
        "  {replicated} hot keys have read replicas ({replica_count} replicas); last round's busiest/mean before it: {ratio:.3}"
    );
    println!("  {:.1} s of simulation", started.elapsed().as_secs_f64());

    let phases: &[(bool, &str, u64)] = if std::env::var_os("PANTHEON_BENCH_TRACE").is_some() {
        &[(true, "stable load with ±2% noise", STABLE_ROUNDS * 2)]
    } else {
        &[
            (false, "exactly stable load", STABLE_ROUNDS),
            (true, "stable load with ±2% noise", STABLE_ROUNDS * 2),
        ]
    };
    for &(noisy, what, rounds) in phases {
        let (mut stable_moved, mut stable_replicas) = (0u64, 0u64);
        let mut worst: f64 = 0.0;
        let mut last_change = None;
        for r in 1..=rounds {
            let (before, moved, replicas) = on.round(noisy);
            stable_moved += moved;
            stable_replicas += replicas;
            if moved + replicas > 0 {
                last_change = Some(r);
            }
            worst = worst.max(before);
        }
        let quiet_ms = (rounds - last_change.unwrap_or(0)) * ROUND_MS;
        println!(
            "{what} for {} min of log time ({rounds} rounds): {stable_moved} owners moved, {stable_replicas} replica-set changes (target 0; last at round {}); no change in the last {:.1} min (target ≥ 10); worst busiest/mean {worst:.3}",
            rounds * ROUND_MS / 60_000,
            last_change.map_or("-".to_owned(), |r| r.to_string()),
            quiet_ms as f64 / 60_000.0,
        );
    }
}
