//! Placement balance and key movement: counts, not times, so this is a report binary and not
//! a criterion bench.
//!
//! ```text
//! cargo run --release -p pantheon-domain --example placement_report
//! ```
//!
//! Prints Markdown tables (pasted into `docs/benchmarks.md`):
//!
//! * balance: keys per node over 1,000,000 keys `user:{i}`, as busiest/mean, least/mean and
//!   std-dev/mean, for the ring at several virtual-node counts, rendezvous hashing and the
//!   `hashring` crate;
//! * movement: keys that change owner when one node joins (N → N+1) or leaves (N → N−1),
//!   against the ideal K/(N+1) and K/N.
//!
//! * vnode choice: busiest/mean at 100 nodes over [`CHOICE_SETS`] sets of node names, as the
//!   median, 90th and 99th percentile and worst, for the default virtual-node count decision.
//!
//! One set of node names is one draw of the ring's points, so every row is repeated over
//! [`SETS`] sets of names and reports the `node-{i}` set, the mean and the worst.
//! `placement_report balance|choice|movement` prints one section only.

use std::collections::HashMap;
use std::time::Instant;

use hashring::HashRing;
use pantheon_domain::placement::{Member, Placement, Rendezvous, Ring, key_hash};
use pantheon_domain::{NodeId, Policy};

const KEYS: usize = 1_000_000;
/// Sets of node names for the balance and movement tables.
const SETS: usize = 10;
/// Sets of node names for the vnode-choice table.
const CHOICE_SETS: usize = 100;
/// The busiest-node target: at most this × the mean, at 100 nodes over [`KEYS`] keys.
const TARGET: f64 = 1.10;
const NODE_COUNTS: [usize; 3] = [10, 100, 1_000];
const VNODE_SWEEP: [u32; 8] = [10, 100, 160, 256, 512, 1_024, 2_048, 4_096];
const CHOICE_SWEEP: [u32; 9] = [256, 512, 768, 1_024, 1_280, 1_536, 2_048, 3_072, 4_096];

/// A strategy under test, built over a list of node names.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Subject {
    Ring(u32),
    Rendezvous,
    /// The `hashring` crate (SipHash, binary search) with this many points per node.
    HashRing(u32),
}

impl Subject {
    fn label(self) -> String {
        match self {
            Subject::Ring(v) => format!("ring, {v} vnodes"),
            Subject::Rendezvous => "rendezvous".to_owned(),
            Subject::HashRing(v) => format!("hashring crate, {v} vnodes"),
        }
    }

    /// The owner (an index into `names`) of every key.
    fn owners(self, names: &[String], keys: &[String], hashes: &[u64]) -> Vec<u32> {
        let index: HashMap<&str, u32> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), u32::try_from(i).expect("few nodes")))
            .collect();
        let members: Vec<Member> = names
            .iter()
            .map(|n| Member {
                node: NodeId::new(n).expect("valid node id"),
                weight: 1,
            })
            .collect();
        let by_placement = |p: &dyn Placement| -> Vec<u32> {
            keys.iter()
                .zip(hashes)
                .map(|(k, &h)| {
                    let owner = p.owner_of_hash(k, h).expect("non-empty");
                    index[owner.as_str()]
                })
                .collect()
        };
        match self {
            Subject::Ring(v) => by_placement(&Ring::new(members, v)),
            Subject::Rendezvous => by_placement(&Rendezvous::new(members)),
            Subject::HashRing(v) => {
                // Points hash the node *name* so a node keeps its points when others come and go.
                let mut ring: HashRing<(&str, u32)> = HashRing::new();
                ring.batch_add(
                    names
                        .iter()
                        .flat_map(|n| (0..v).map(move |r| (n.as_str(), r)))
                        .collect(),
                );
                keys.iter()
                    .map(|k| index[ring.get(&k.as_str()).expect("non-empty").0])
                    .collect()
            }
        }
    }
}

/// Node names of set `set`: `node-{i}` for set 0, a few other common schemes, then
/// `s{set}-node-{i}`; `i` from 1.
fn names(set: usize, n: usize) -> Vec<String> {
    let prefix = match set {
        0 => "node-".to_owned(),
        1 => "worker-".to_owned(),
        2 => "n".to_owned(),
        3 => "pantheon-".to_owned(),
        4 => "10.0.0.".to_owned(),
        s => format!("s{s}-node-"),
    };
    (1..=n).map(|i| format!("{prefix}{i}")).collect()
}

#[derive(Debug, Clone, Copy)]
struct Balance {
    max: f64,
    min: f64,
    std: f64,
}

fn balance(owners: &[u32], n: usize) -> Balance {
    let mut counts = vec![0u64; n];
    for &o in owners {
        counts[o as usize] += 1;
    }
    let mean = owners.len() as f64 / n as f64;
    let max = counts.iter().copied().max().unwrap_or(0) as f64;
    let min = counts.iter().copied().min().unwrap_or(0) as f64;
    let var = counts
        .iter()
        .map(|&c| (c as f64 - mean).powi(2))
        .sum::<f64>()
        / n as f64;
    Balance {
        max: max / mean,
        min: min / mean,
        std: var.sqrt() / mean,
    }
}

/// First, mean and largest of a list of values.
fn summary(values: &[f64]) -> (f64, f64, f64) {
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let worst = values.iter().copied().fold(f64::MIN, f64::max);
    (values[0], mean, worst)
}

fn balance_table(keys: &[String], hashes: &[u64]) {
    println!("### Balance: keys per node over {KEYS} keys\n");
    println!(
        "busiest/mean for the `node-{{i}}` names, then mean and worst over {} name sets; \
         least/mean and std-dev/mean for `node-{{i}}`.\n",
        SETS
    );
    for n in NODE_COUNTS {
        // Keys per node are a sample of K keys: even a perfect split has std-dev/mean of
        // about sqrt(n/K) from the sample alone.
        println!(
            "#### {n} nodes (mean {} keys per node; sampling noise alone gives std-dev/mean ≈ {:.3})\n",
            KEYS / n,
            (n as f64 / KEYS as f64).sqrt()
        );
        println!(
            "| placement | busiest/mean | mean of sets | worst of sets | least/mean | std-dev/mean |"
        );
        println!("|---|---:|---:|---:|---:|---:|");
        let mut subjects: Vec<Subject> = VNODE_SWEEP.iter().map(|&v| Subject::Ring(v)).collect();
        subjects.push(Subject::Rendezvous);
        subjects.extend([10, 160, Policy::DEFAULT_VNODES].map(Subject::HashRing));
        for s in subjects {
            let started = Instant::now();
            let per_set: Vec<Balance> = (0..SETS)
                .map(|set| balance(&s.owners(&names(set, n), keys, hashes), n))
                .collect();
            let (first, mean, worst) = summary(&per_set.iter().map(|b| b.max).collect::<Vec<_>>());
            println!(
                "| {} | {first:.3} | {mean:.3} | {worst:.3} | {:.3} | {:.3} |",
                s.label(),
                per_set[0].min,
                per_set[0].std
            );
            eprintln!(
                "  balance {n} nodes {}: {:.1?}",
                s.label(),
                started.elapsed()
            );
        }
        println!();
    }
}

/// Keys that changed owner, and how many of those moved between two nodes that are in both
/// placements (should be zero: only the joining or leaving node's keys may move).
fn moved(
    before: &[u32],
    before_names: &[String],
    after: &[u32],
    after_names: &[String],
) -> (usize, usize) {
    let mut moved = 0;
    let mut stray = 0;
    for (&b, &a) in before.iter().zip(after) {
        let (b, a) = (&before_names[b as usize], &after_names[a as usize]);
        if b != a {
            moved += 1;
            if before_names.contains(a) && after_names.contains(b) {
                stray += 1;
            }
        }
    }
    (moved, stray)
}

fn movement_table(keys: &[String], hashes: &[u64]) {
    let vnodes = Policy::DEFAULT_VNODES;
    println!("### Movement: keys that change owner on one join or leave, {KEYS} keys\n");
    println!(
        "moved / ideal, ideal = K/(N+1) on a join (node N+1 joins), K/N on a leave (node 1 \
         leaves); first the `node-{{i}}` names, then mean and worst over {} name sets. \
         \"stray\" = keys moved between two nodes that stayed (summed over all sets; ideal 0).\n",
        SETS
    );
    println!(
        "| N | placement | join: moved | join: ratio | mean | worst | leave: moved | leave: ratio | mean | worst | stray |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for n in [10usize, 100] {
        let subjects = [
            Subject::Ring(160),
            Subject::Ring(512),
            Subject::Ring(vnodes),
            Subject::Ring(2_048),
            Subject::Rendezvous,
            Subject::HashRing(vnodes),
        ];
        for s in subjects {
            let started = Instant::now();
            let mut join = Vec::new();
            let mut leave = Vec::new();
            let mut join_moved0 = 0;
            let mut leave_moved0 = 0;
            let mut stray = 0;
            for set in 0..SETS {
                let base = names(set, n);
                let owners = s.owners(&base, keys, hashes);
                let joined = names(set, n + 1);
                let (m, st) = moved(&owners, &base, &s.owners(&joined, keys, hashes), &joined);
                join.push(m as f64 / (KEYS as f64 / (n + 1) as f64));
                stray += st;
                let left: Vec<String> = base[1..].to_vec();
                let (l, st) = moved(&owners, &base, &s.owners(&left, keys, hashes), &left);
                leave.push(l as f64 / (KEYS as f64 / n as f64));
                stray += st;
                if set == 0 {
                    join_moved0 = m;
                    leave_moved0 = l;
                }
            }
            let (j0, jm, jw) = summary(&join);
            let (l0, lm, lw) = summary(&leave);
            println!(
                "| {n} | {} | {join_moved0} | {j0:.3} | {jm:.3} | {jw:.3} | {leave_moved0} | {l0:.3} | {lm:.3} | {lw:.3} | {stray} |",
                s.label()
            );
            eprintln!(
                "  movement {n} nodes {}: {:.1?}",
                s.label(),
                started.elapsed()
            );
        }
    }
    println!();
}

/// Percentile `p` (0..=100) of sorted values, nearest rank.
fn percentile(sorted: &[f64], p: usize) -> f64 {
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

fn choice_table(keys: &[String], hashes: &[u64]) {
    let n = 100;
    println!("### Choosing the default vnode count: busiest/mean at {n} nodes, {KEYS} keys\n");
    println!(
        "Over {CHOICE_SETS} sets of node names (each set is one draw of the ring's points); \
         target busiest ≤ {TARGET:.2} × mean. Ring memory is for 1,000 nodes: 16 bytes a \
         point plus 4 bytes a bucket.\n"
    );
    println!(
        "| vnodes | median | p90 | p99 | worst | sets over {TARGET:.2} | ring memory at 1,000 nodes |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let mut subjects: Vec<Subject> = CHOICE_SWEEP.iter().map(|&v| Subject::Ring(v)).collect();
    subjects.push(Subject::Rendezvous);
    for s in subjects {
        let started = Instant::now();
        let mut maxes: Vec<f64> = (0..CHOICE_SETS)
            .map(|set| balance(&s.owners(&names(set, n), keys, hashes), n).max)
            .collect();
        maxes.sort_by(f64::total_cmp);
        let over = maxes.iter().filter(|&&m| m > TARGET).count();
        let (label, memory) = match s {
            Subject::Ring(v) => {
                let points = 1_000 * v as usize;
                let buckets = 1usize << (usize::BITS - points.leading_zeros()).clamp(1, 24);
                let mib = (points * 16 + (buckets + 1) * 4) as f64 / (1 << 20) as f64;
                (v.to_string(), format!("{mib:.1} MiB"))
            }
            other => (other.label(), "–".to_owned()),
        };
        println!(
            "| {label} | {:.3} | {:.3} | {:.3} | {:.3} | {over} of {CHOICE_SETS} | {memory} |",
            percentile(&maxes, 50),
            percentile(&maxes, 90),
            percentile(&maxes, 99),
            maxes[maxes.len() - 1],
        );
        eprintln!("  choice {}: {:.1?}", s.label(), started.elapsed());
    }
    println!();
}

fn main() {
    let started = Instant::now();
    let keys: Vec<String> = (0..KEYS).map(|i| format!("user:{i}")).collect();
    let hashes: Vec<u64> = keys.iter().map(|k| key_hash(k)).collect();
    let only = std::env::args().nth(1);
    let wanted = |section: &str| only.as_deref().is_none_or(|o| o == section);
    if wanted("balance") {
        balance_table(&keys, &hashes);
    }
    if wanted("choice") {
        choice_table(&keys, &hashes);
    }
    if wanted("movement") {
        movement_table(&keys, &hashes);
    }
    eprintln!("total {:.1?}", started.elapsed());
}
