//! The raw-Redis baselines of the distribution benchmarks: the read models a projector would
//! write for keys whose owners are known in advance, written straight with pipelined `HSET`
//! and `SADD` (no log, no projector) — the best any writer of that data can do. Shared by the
//! projector bench and the Redis-layer bench so both measure the same thing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

/// One key, its owner's node id and the key of that owner's key set.
#[derive(Debug, Clone, Copy)]
pub struct Placed<'a> {
    pub key: &'a str,
    pub owner: &'a str,
    pub set: &'a str,
}

/// Pairs each key with its owner (`owners[i]` owns `keys[i]`, named by `name`) and that
/// owner's key set (`sets`).
pub fn place<'a, O: Eq + std::hash::Hash>(
    keys: &'a [String],
    owners: &'a [O],
    name: impl Fn(&'a O) -> &'a str,
    sets: &'a std::collections::HashMap<O, String>,
) -> Vec<Placed<'a>> {
    keys.iter()
        .zip(owners)
        .map(|(key, owner)| Placed {
            key,
            owner: name(owner),
            set: &sets[owner],
        })
        .collect()
}

/// Baseline (a): one key per command (`HSET keymap key owner`, `SADD set key`),
/// `commands_per_pipe` commands per pipeline.
pub fn single_key_pipelines(
    keymap: &str,
    placed: &[Placed<'_>],
    commands_per_pipe: usize,
) -> Vec<redis::Pipeline> {
    placed
        .chunks((commands_per_pipe / 2).max(1))
        .map(|chunk| {
            let mut pipe = redis::pipe();
            for p in chunk {
                pipe.cmd("HSET")
                    .arg(keymap)
                    .arg(p.key)
                    .arg(p.owner)
                    .ignore();
                pipe.cmd("SADD").arg(p.set).arg(p.key).ignore();
            }
            pipe
        })
        .collect()
}

/// Baseline (b): per group of `keys_per_group` keys one variadic `HSET` and one `SADD` per
/// owner (what a projector's commit of one log entry writes), `groups_per_pipe` groups per
/// pipeline.
pub fn variadic_pipelines(
    keymap: &str,
    placed: &[Placed<'_>],
    keys_per_group: usize,
    groups_per_pipe: usize,
) -> Vec<redis::Pipeline> {
    let keys_per_group = keys_per_group.max(1);
    placed
        .chunks(keys_per_group * groups_per_pipe.max(1))
        .map(|chunk| {
            let mut pipe = redis::pipe();
            for group in chunk.chunks(keys_per_group) {
                let hset = pipe.cmd("HSET").arg(keymap);
                let mut by_set: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
                for p in group {
                    hset.arg(p.key).arg(p.owner);
                    by_set.entry(p.set).or_default().push(p.key);
                }
                hset.ignore();
                for (set, members) in by_set {
                    pipe.cmd("SADD").arg(set).arg(members).ignore();
                }
            }
            pipe
        })
        .collect()
}

/// Sends `pipes` one after another and returns how long that took.
///
/// # Panics
/// When Redis refuses a pipeline.
pub async fn run(con: &mut MultiplexedConnection, pipes: &[redis::Pipeline]) -> Duration {
    let started = Instant::now();
    for pipe in pipes {
        let () = pipe
            .query_async(con)
            .await
            .unwrap_or_else(|e| panic!("baseline pipeline: {e}"));
    }
    started.elapsed()
}

/// Deletes the key map and the key sets a baseline wrote.
///
/// # Panics
/// When Redis refuses the `DEL`.
pub async fn delete<'a>(
    con: &mut MultiplexedConnection,
    keymap: &str,
    sets: impl IntoIterator<Item = &'a str>,
) {
    let mut del = redis::cmd("DEL");
    del.arg(keymap);
    for set in sets {
        del.arg(set);
    }
    let _: u64 = del
        .query_async(con)
        .await
        .unwrap_or_else(|e| panic!("DEL of the baseline's keys: {e}"));
}
