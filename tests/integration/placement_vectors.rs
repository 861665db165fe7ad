//! Placement vectors for clients in other languages: `clients/python/tests/vectors/
//! placement.json` holds members (with weights), vnodes, both strategies and 100,000 keys
//! with the owner the Rust placement gives each. This test recomputes the file and fails when
//! the checked-in copy drifts from it; the Python client's tests fail when Python disagrees
//! with any vector.
//!
//! Regenerate after an intended change of the placement (and say so in docs/placement.md):
//!
//! ```text
//! PANTHEON_WRITE_VECTORS=1 cargo nextest run -p pantheon-tests -E 'test(placement_vectors)'
//! ```

use std::path::PathBuf;

use pantheon_domain::NodeId;
use pantheon_domain::placement::{self, Member, Strategy};

/// One placement to pin: a strategy over members, and how many keys to place with it.
struct Case {
    name: &'static str,
    strategy: Strategy,
    vnodes: u32,
    members: Vec<(String, u32)>,
    keys: usize,
}

fn members(spec: &[(&str, u32)]) -> Vec<(String, u32)> {
    spec.iter().map(|(id, w)| ((*id).to_owned(), *w)).collect()
}

fn numbered(count: usize, prefix: &str, weight: impl Fn(usize) -> u32) -> Vec<(String, u32)> {
    (0..count)
        .map(|i| (format!("{prefix}{i:02}"), weight(i)))
        .collect()
}

/// The cases: ring and rendezvous, equal and unequal weights, one vnode (every key near a
/// wrap or a boundary), many members, one member, none. 100,000 keys in total.
fn cases() -> Vec<Case> {
    use Strategy::{Rendezvous, Ring};
    let case = |name, strategy, vnodes, members, keys| Case {
        name,
        strategy,
        vnodes,
        members,
        keys,
    };
    vec![
        case(
            "ring-default-equal",
            Ring,
            2048,
            members(&[("web-1", 1), ("web-2", 1), ("web-3", 1)]),
            20_000,
        ),
        case(
            "ring-weighted",
            Ring,
            64,
            members(&[("a", 1), ("b", 2), ("c", 3), ("D", 5), ("e.f", 1)]),
            15_000,
        ),
        case(
            "ring-one-vnode",
            Ring,
            1,
            members(&[("n1", 1), ("n2", 1), ("n3", 1)]),
            8_000,
        ),
        case(
            "ring-many",
            Ring,
            16,
            numbered(40, "node-", |i| 1 + (i % 4) as u32),
            10_000,
        ),
        case("ring-single", Ring, 8, members(&[("solo", 3)]), 1_000),
        case("ring-empty", Ring, 2048, Vec::new(), 500),
        case(
            "rendezvous-equal",
            Rendezvous,
            2048,
            members(&[("a@x:1", 1), ("b", 1), ("c_2", 1), ("d", 1)]),
            15_000,
        ),
        case(
            "rendezvous-weighted",
            Rendezvous,
            2048,
            members(&[("a", 1), ("b", 2), ("c", 3), ("d", 10), ("e", 100)]),
            20_000,
        ),
        case(
            "rendezvous-many-weighted",
            Rendezvous,
            2048,
            numbered(25, "w-", |i| 1 + (i % 7) as u32),
            9_000,
        ),
        case(
            "rendezvous-single",
            Rendezvous,
            2048,
            members(&[("only", 1)]),
            500,
        ),
        case("rendezvous-empty", Rendezvous, 2048, Vec::new(), 1_000),
    ]
}

/// SplitMix64: a fixed, dependency-free sequence, so the keys never change by accident.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Keys of the shapes real callers use, plus UTF-8, JSON-escaped characters and, one in a
/// hundred, a key of 1 to 1,024 bytes (xxh3 hashes short, medium and long inputs differently).
fn key(i: usize, rng: &mut SplitMix) -> String {
    let r = rng.next();
    if i % 100 == 7 {
        let len = 1 + (r % 1024) as usize;
        let unit = format!("long-{i}-");
        return unit.repeat(len / unit.len() + 1)[..len].to_owned();
    }
    match i % 7 {
        0..=2 => format!("user:{i}"),
        3 => format!("tenant-{:012x}", r >> 16),
        4 => format!("clé-{i}-ü✓-日本"),
        5 => format!("q\"\\\t/{}", r % 1_000_000),
        _ => format!("{i}"),
    }
}

fn json(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// The vectors file: one line per key, so a drift shows as a readable diff.
fn render() -> String {
    let mut out = String::from(
        "{\"format\": 1,\n\"generated_by\": \"tests/integration/placement_vectors.rs\",\n\"cases\": [\n",
    );
    let mut index = 0usize;
    let all = cases();
    for (c, case) in all.iter().enumerate() {
        let placement_members: Vec<Member> = case
            .members
            .iter()
            .map(|(id, weight)| Member {
                node: NodeId::new(id).unwrap(),
                weight: *weight,
            })
            .collect();
        let placement = placement::build(case.strategy, case.vnodes, placement_members);
        let members: Vec<String> = case
            .members
            .iter()
            .map(|(id, w)| format!("[{}, {w}]", json(id)))
            .collect();
        out.push_str(&format!(
            "{{\"name\": {}, \"strategy\": {}, \"vnodes\": {}, \"members\": [{}], \"keys\": [\n",
            json(case.name),
            json(case.strategy.as_str()),
            case.vnodes,
            members.join(", ")
        ));
        let mut rng = SplitMix(c as u64 + 1);
        for k in 0..case.keys {
            let key = key(index, &mut rng);
            index += 1;
            let owner = placement
                .owner(&key)
                .map_or_else(|| "null".to_owned(), |n| json(n.as_str()));
            let sep = if k + 1 == case.keys { "" } else { "," };
            out.push_str(&format!("[{}, {owner}]{sep}\n", json(&key)));
        }
        let sep = if c + 1 == all.len() { "" } else { "," };
        out.push_str(&format!("]}}{sep}\n"));
    }
    out.push_str("]}\n");
    out
}

fn vectors_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../clients/python/tests/vectors/placement.json")
}

#[test]
fn placement_vectors_match_the_rust_placement() {
    let cases = cases();
    assert_eq!(cases.iter().map(|c| c.keys).sum::<usize>(), 100_000);
    let expected = render();
    let path = vectors_path();
    if std::env::var("PANTHEON_WRITE_VECTORS").as_deref() == Ok("1") {
        std::fs::write(&path, &expected).unwrap();
        return;
    }
    let found = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; write it with PANTHEON_WRITE_VECTORS=1",
            path.display()
        )
    });
    if found != expected {
        let line = found
            .lines()
            .zip(expected.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| found.lines().count().min(expected.lines().count()));
        panic!(
            "{} drifted from the Rust placement at line {}: file has {:?}, Rust gives {:?}. \
             If the placement changed on purpose, regenerate it with PANTHEON_WRITE_VECTORS=1 \
             (every client must change with it)",
            path.display(),
            line + 1,
            found.lines().nth(line),
            expected.lines().nth(line)
        );
    }
}
