//! Placement timings: key lookup and ring build, for the ring, rendezvous hashing and the
//! `hashring` crate as a reference, in one run.
//!
//! ```text
//! cargo bench -p pantheon-domain --bench placement
//! ```
//!
//! Balance and key movement are counts, not times: they come from
//! `cargo run --release -p pantheon-domain --example placement_report`.
//! Results and the machine they were taken on are in `docs/benchmarks.md`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hashring::HashRing;
use pantheon_domain::placement::{Member, Placement, Rendezvous, Ring};
use pantheon_domain::{NodeId, Policy};

/// Lookups cycle through this many distinct keys so the key strings and the ring's hot points
/// are not all sitting in L1 the way a single repeated key would be.
const KEYS: usize = 100_000;
const NODE_COUNTS: [usize; 3] = [10, 100, 1_000];
const VNODE_SWEEP: [u32; 7] = [100, 160, 256, 512, 1_024, 1_536, 2_048];

fn members(n: usize) -> Vec<Member> {
    (1..=n)
        .map(|i| Member {
            node: NodeId::new(&format!("node-{i}")).expect("valid node id"),
            weight: 1,
        })
        .collect()
}

fn keys() -> Vec<String> {
    (0..KEYS).map(|i| format!("user:{i}")).collect()
}

/// `hashring` has no virtual nodes of its own: as its docs suggest, each point is a
/// `(node index, replica)` value, hashed with the crate's default SipHash.
fn hashring(n: usize, vnodes: u32) -> HashRing<(u32, u32)> {
    let mut ring = HashRing::new();
    let nodes = u32::try_from(n).expect("node count fits u32");
    ring.batch_add(
        (1..=nodes)
            .flat_map(|node| (0..vnodes).map(move |r| (node, r)))
            .collect(),
    );
    ring
}

/// Times one lookup per iteration, cycling through `keys`. Consecutive lookups are
/// independent, so the CPU may overlap their cache misses: this is throughput per lookup, as
/// when the projector recomputes owners for a batch of keys.
fn cycle<R>(b: &mut criterion::Bencher<'_>, keys: &[String], mut lookup: impl FnMut(&str) -> R) {
    let mut i = 0usize;
    b.iter(|| {
        let key = &keys[i];
        i += 1;
        if i == keys.len() {
            i = 0;
        }
        black_box(lookup(black_box(key.as_str())))
    });
}

fn lookup(c: &mut Criterion) {
    let keys = keys();
    let vnodes = Policy::DEFAULT_VNODES;
    let mut group = c.benchmark_group(format!("lookup/vnodes={vnodes}"));
    group.throughput(Throughput::Elements(1));
    for n in NODE_COUNTS {
        let ring = Ring::new(members(n), vnodes);
        group.bench_with_input(BenchmarkId::new("ring", n), &ring, |b, ring| {
            cycle(b, &keys, |k| {
                ring.owner(k).map(NodeId::as_str).map(str::len)
            })
        });
        let hrw = Rendezvous::new(members(n));
        group.bench_with_input(BenchmarkId::new("rendezvous", n), &hrw, |b, hrw| {
            cycle(b, &keys, |k| hrw.owner(k).map(NodeId::as_str).map(str::len))
        });
        let reference = hashring(n, vnodes);
        group.bench_with_input(BenchmarkId::new("hashring", n), &reference, |b, r| {
            cycle(b, &keys, |k| r.get(&k).map(|p| p.0))
        });
    }
    group.finish();
}

/// Ring lookup at 100 and 1,000 nodes against the virtual-node count: the ring's size decides
/// which cache level its points live in.
fn lookup_vnodes(c: &mut Criterion) {
    let keys = keys();
    for n in [100, 1_000] {
        lookup_vnodes_at(c, &keys, n);
    }
}

fn lookup_vnodes_at(c: &mut Criterion, keys: &[String], n: usize) {
    let mut group = c.benchmark_group(format!("lookup_vnodes/nodes={n}"));
    group.throughput(Throughput::Elements(1));
    for v in VNODE_SWEEP {
        let ring = Ring::new(members(n), v);
        group.bench_with_input(BenchmarkId::new("ring", v), &ring, |b, ring| {
            cycle(b, keys, |k| ring.owner(k).map(NodeId::as_str).map(str::len))
        });
        // Latency of one lookup on its own: the next key depends on the previous owner, so
        // lookups cannot overlap.
        group.bench_with_input(BenchmarkId::new("ring_dependent", v), &ring, |b, ring| {
            let mut i = 0usize;
            b.iter(|| {
                let owner = ring.owner(&keys[i]).expect("non-empty ring");
                i += 1 + (owner.as_str().len() & 1);
                if i >= keys.len() {
                    i -= keys.len();
                }
                black_box(owner);
            })
        });
    }
    group.finish();
}

fn build(c: &mut Criterion) {
    let vnodes = Policy::DEFAULT_VNODES;
    let mut group = c.benchmark_group(format!("build/vnodes={vnodes}"));
    group.sample_size(10);
    for n in NODE_COUNTS {
        let m = members(n);
        group.throughput(Throughput::Elements(n as u64 * u64::from(vnodes)));
        group.bench_with_input(BenchmarkId::new("ring", n), &m, |b, m| {
            b.iter(|| Ring::new(black_box(m.clone()), vnodes))
        });
        group.bench_with_input(BenchmarkId::new("hashring", n), &n, |b, &n| {
            b.iter(|| hashring(black_box(n), vnodes))
        });
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("rendezvous", n), &m, |b, m| {
            b.iter(|| Rendezvous::new(black_box(m.clone())))
        });
    }
    group.finish();
}

/// Ring build time at 1,000 nodes against the virtual-node count.
fn build_vnodes(c: &mut Criterion) {
    let n = 1_000;
    let m = members(n);
    let mut group = c.benchmark_group(format!("build_vnodes/nodes={n}"));
    group.sample_size(10);
    for v in [256, 1_024, 2_048] {
        group.throughput(Throughput::Elements(n as u64 * u64::from(v)));
        group.bench_with_input(BenchmarkId::new("ring", v), &m, |b, m| {
            b.iter(|| Ring::new(black_box(m.clone()), v))
        });
    }
    group.finish();
}

/// Calibration, not placement: one random read that depends on the previous one (a pointer
/// chase) in an array of the given size. Shows how much of the cache the machine really gives
/// this process, which is what decides ring lookup times once the ring outgrows it.
fn memory(c: &mut Criterion) {
    let mut group = c.benchmark_group("memory/dependent_read");
    group.throughput(Throughput::Elements(1));
    for mib in [1usize, 4, 8, 16, 64] {
        let next = random_cycle(mib << 17);
        group.bench_with_input(BenchmarkId::new("MiB", mib), &next, |b, next| {
            let mut p = 0u64;
            b.iter(|| {
                p = next[p as usize];
                p
            })
        });
    }
    group.finish();
}

/// `next[i]` for a single random cycle through `0..len` (xorshift, fixed seed).
fn random_cycle(len: usize) -> Vec<u64> {
    let mut order: Vec<u64> = (0..len as u64).collect();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..len).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let mut next = vec![0u64; len];
    for w in 0..len {
        next[order[w] as usize] = order[(w + 1) % len];
    }
    next
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = lookup, lookup_vnodes, build, build_vnodes, memory
}
criterion_main!(benches);
