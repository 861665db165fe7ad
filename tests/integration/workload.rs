//! A deterministic, seeded workload: a fleet joining, keys assigned and unassigned, probes
//! killing and reviving nodes, drains, weight changes, leaves and re-joins, and malformed
//! entries — with explicit entry ids so two runs can be compared field for field.

use std::collections::BTreeMap;

use pantheon_domain::EntryId;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub type RawPairs = Vec<(String, String)>;

pub const BASE_MS: u64 = 1_700_000_000_000;

fn pairs(items: &[(&str, String)]) -> RawPairs {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// `count` entries for a fleet of `nodes`, deterministic for a seed.
pub fn generate(seed: u64, count: usize, nodes: usize) -> Vec<(EntryId, RawPairs)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(count);
    let mut epoch = 0u64;
    let mut epochs: BTreeMap<usize, u64> = BTreeMap::new();
    let push = |out: &mut Vec<(EntryId, RawPairs)>, p: RawPairs| {
        let id = EntryId::new(BASE_MS + out.len() as u64, 0);
        out.push((id, p));
    };
    for n in 0..nodes {
        epoch += 1;
        epochs.insert(n, epoch);
        push(
            &mut out,
            pairs(&[
                ("type", "join".into()),
                ("node", format!("node-{n}")),
                ("url", format!("http://127.0.0.1:{}/health", 9000 + n)),
            ]),
        );
    }
    while out.len() < count {
        let n = rng.random_range(0..nodes);
        let node = format!("node-{n}");
        let roll = rng.random_range(0..100);
        let entry = match roll {
            0..=14 => {
                let mut p = vec![("type".to_owned(), "assign".to_owned())];
                let start = rng.random_range(0..20_000);
                for k in start..start + rng.random_range(1..60) {
                    p.push(("key".into(), format!("key:{k}")));
                }
                if rng.random_bool(0.3) {
                    p.push(("cmd".into(), format!("c{}", rng.random_range(0..3000))));
                }
                p
            }
            15..=19 => {
                let mut p = vec![("type".to_owned(), "unassign".to_owned())];
                let start = rng.random_range(0..20_000);
                for k in start..start + rng.random_range(1..20) {
                    p.push(("key".into(), format!("key:{k}")));
                }
                p
            }
            20..=74 => {
                let current = epochs.get(&n).copied();
                let e = match current {
                    Some(e) if rng.random_bool(0.9) => e,
                    _ => rng.random_range(1..=epoch),
                };
                let ok = rng.random_bool(0.55);
                let mut p = pairs(&[
                    ("type", "probe".into()),
                    ("node", node),
                    ("epoch", e.to_string()),
                    ("ok", if ok { "1" } else { "0" }.into()),
                    ("latency", rng.random_range(0..50u32).to_string()),
                ]);
                if !ok {
                    p.push(("error".into(), "refused".into()));
                }
                p
            }
            75..=78 => pairs(&[("type", "drain".into()), ("node", node)]),
            79..=82 => pairs(&[("type", "undrain".into()), ("node", node)]),
            83..=85 => pairs(&[
                ("type", "weight".into()),
                ("node", node),
                ("weight", rng.random_range(1..4u32).to_string()),
            ]),
            86..=88 => {
                epochs.remove(&n);
                pairs(&[("type", "leave".into()), ("node", node)])
            }
            89..=93 => {
                epoch += 1;
                epochs.insert(n, epoch);
                pairs(&[
                    ("type", "join".into()),
                    ("node", node),
                    ("address", "http://127.0.0.1".into()),
                    ("port", (9000 + n).to_string()),
                    ("path", "health".into()),
                ])
            }
            94 => pairs(&[
                ("type", "policy".into()),
                ("fall", rng.random_range(1..4u32).to_string()),
            ]),
            _ => match rng.random_range(0..5) {
                0 => pairs(&[("type", "explode".into())]),
                1 => pairs(&[
                    ("type", "join".into()),
                    ("node", node),
                    ("url", "ftp://nope".into()),
                ]),
                2 => pairs(&[
                    ("type", "weight".into()),
                    ("node", node),
                    ("weight", "0".into()),
                ]),
                3 => pairs(&[("type", "leave".into()), ("node", "ghost".into())]),
                _ => pairs(&[("node", node)]),
            },
        };
        push(&mut out, entry);
    }
    out
}
