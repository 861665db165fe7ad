//! Snapshots in chunks (docs/adr/0017-chunked-snapshots.md) against a real Redis: a snapshot
//! of many chunks reads back byte for byte; a missing, short or altered chunk is a damaged
//! snapshot, which a rebuild refuses as it always did; a snapshot in the format before chunks
//! still loads and the next write replaces it; chunks written without their manifest (a crash
//! in between) leave the previous snapshot whole and are deleted by the next write.

use std::collections::BTreeSet;
use std::time::Duration;

use pantheon_domain::entry::{Command, LogEntry, ProbeResult};
use pantheon_domain::{EntryId, NodeId, State};
use pantheon_projector::{ProjectorError, rebuild, verify};
use pantheon_store::lease::Lease;
use pantheon_store::snapshot::{self, Manifest, Prepared, Snapshot};
use pantheon_store::{Batch, CommitError, StoreError, keys};

use crate::cluster::{TestCluster, assert_same_models, read_models};
use crate::projector::write_workload;
use crate::workload;

const WAIT: Duration = Duration::from_secs(20);
/// Small enough that a few thousand keys make dozens of chunks.
const SMALL: usize = 4096;

/// A state of two healthy nodes and `keys` assigned keys, folded in memory.
fn state_with(keys: usize) -> (State, EntryId) {
    let mut state = State::default();
    let mut t = 1;
    let mut apply = |state: &mut State, command: Command| {
        // Only the size of the state matters here, not whether each entry was accepted.
        let _ = state.apply(EntryId::new(t, 0), &LogEntry::new(command));
        t += 1;
        EntryId::new(t - 1, 0)
    };
    for (i, n) in ["a", "b"].iter().enumerate() {
        apply(
            &mut state,
            Command::Join {
                node: NodeId::new(n).unwrap(),
                url: format!("http://127.0.0.1:{}/health", 9000 + i),
                weight: None,
                handoff: false,
            },
        );
        apply(
            &mut state,
            Command::Probe(ProbeResult {
                node: NodeId::new(n).unwrap(),
                epoch: i as u64 + 1,
                ok: true,
                status: None,
                latency_ms: 1,
                error: None,
                prober: None,
            }),
        );
    }
    let last = apply(
        &mut state,
        Command::Assign {
            keys: (0..keys).map(|i| format!("tenant:{i:06}")).collect(),
        },
    );
    (state, last)
}

/// A lease this test holds, and a checkpoint at `last_id`, so fenced commits go through.
async fn lead(c: &mut TestCluster, last_id: EntryId) -> Lease {
    let lease = Lease::new(c.layout.lease(), "test", Duration::from_secs(60));
    lease.seize(&mut c.con).await.unwrap();
    let _: () = redis::cmd("HSET")
        .arg(c.layout.checkpoint())
        .arg("last_id")
        .arg(last_id.to_string())
        .query_async(&mut c.con)
        .await
        .unwrap();
    lease
}

/// Writes the chunks of `json` and commits its manifest, fenced on `lease`.
async fn write(
    c: &mut TestCluster,
    lease: &Lease,
    last_id: EntryId,
    json: &[u8],
) -> Result<Prepared, CommitError> {
    let prepared = snapshot::prepare(&mut c.con, &c.layout, last_id, json, SMALL)
        .await
        .unwrap();
    let mut batch = Batch::new();
    snapshot::stage_write(&mut batch, &c.layout, &prepared);
    batch
        .commit(
            &mut c.con,
            lease.key(),
            &c.layout.checkpoint(),
            lease.token(),
            &last_id.to_string(),
        )
        .await?;
    Ok(prepared)
}

async fn chunk_keys(c: &mut TestCluster) -> BTreeSet<String> {
    keys::matching(&mut c.con, &c.layout.snapshot_chunks_pattern())
        .await
        .unwrap()
        .into_iter()
        .collect()
}

async fn manifest(c: &mut TestCluster) -> Manifest {
    let raw: Vec<u8> = redis::cmd("GET")
        .arg(c.layout.snapshot())
        .query_async(&mut c.con)
        .await
        .unwrap();
    assert!(
        Manifest::is_manifest(&raw),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    serde_json::from_slice(&raw).unwrap()
}

fn damaged(result: Result<Option<Snapshot>, StoreError>) -> String {
    match result {
        Err(StoreError::Damaged { reason, .. }) => reason,
        Err(e) => panic!("not reported as damaged: {e}"),
        Ok(s) => panic!("a damaged snapshot loaded: {:?}", s.map(|s| s.last_id)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_many_chunks_reads_back_exactly() {
    let mut c = TestCluster::start().await;
    let (state, last_id) = state_with(3000);
    let json = serde_json::to_vec(&Snapshot::of(&state, last_id)).unwrap();
    let lease = lead(&mut c, last_id).await;
    let prepared = write(&mut c, &lease, last_id, &json).await.unwrap();

    let m = manifest(&mut c).await;
    assert_eq!(&m, prepared.manifest());
    assert_eq!(m.bytes, json.len() as u64);
    assert!(m.chunks >= 10, "{} chunks of {SMALL} bytes", m.chunks);
    // No single value holds more than a chunk.
    for key in m.chunk_keys(&c.layout) {
        let len: u64 = redis::cmd("STRLEN")
            .arg(&key)
            .query_async(&mut c.con)
            .await
            .unwrap();
        assert!(len > 0 && len <= SMALL as u64, "{key}: {len} bytes");
    }
    let bytes = snapshot::load_bytes(&mut c.con, &c.layout)
        .await
        .unwrap()
        .unwrap();
    assert!(bytes == json, "the chunks do not read back as written");
    let (restored, id) = rebuild::load_snapshot(&mut c.con, &c.layout)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(id, last_id);
    assert_eq!(restored.checksum(), state.checksum());
    assert_eq!(restored.keys().len(), 3000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_short_or_altered_chunk_is_a_damaged_snapshot() {
    let mut c = TestCluster::start().await;
    let (state, last_id) = state_with(2000);
    let json = serde_json::to_vec(&Snapshot::of(&state, last_id)).unwrap();
    let lease = lead(&mut c, last_id).await;
    write(&mut c, &lease, last_id, &json).await.unwrap();
    let m = manifest(&mut c).await;
    let key = m.chunk_keys(&c.layout)[3].clone();
    let good: Vec<u8> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut c.con)
        .await
        .unwrap();
    let mut altered = good.clone();
    altered[100] ^= 0x20;
    let short = good[..good.len() - 1].to_vec();
    let manifest_raw = serde_json::to_vec(&m).unwrap();
    let mut miscounted = m.clone();
    miscounted.chunks += 1;

    let snapshot_key = c.layout.snapshot();
    let set = async |c: &mut TestCluster, key: &str, value: &[u8]| {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query_async(&mut c.con)
            .await
            .unwrap();
    };
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut c.con)
        .await
        .unwrap();
    let reason = damaged(snapshot::load(&mut c.con, &c.layout).await);
    assert!(
        reason.contains("missing") && reason.contains(&key),
        "{reason}"
    );
    set(&mut c, &key, &short).await;
    let reason = damaged(snapshot::load(&mut c.con, &c.layout).await);
    assert!(reason.contains("bytes"), "{reason}");
    set(&mut c, &key, &altered).await;
    let reason = damaged(snapshot::load(&mut c.con, &c.layout).await);
    assert!(reason.contains("checksum"), "{reason}");
    set(&mut c, &key, &good).await;
    set(
        &mut c,
        &snapshot_key,
        &serde_json::to_vec(&miscounted).unwrap(),
    )
    .await;
    let reason = damaged(snapshot::load(&mut c.con, &c.layout).await);
    assert!(reason.contains("chunks"), "{reason}");
    set(&mut c, &snapshot_key, b"{\"manifest\":1,\"id\":").await;
    let reason = damaged(snapshot::load(&mut c.con, &c.layout).await);
    assert!(reason.contains("manifest"), "{reason}");

    // A rebuild refuses a damaged snapshot, as it refused one damaged in a single string:
    // the log may be trimmed below it, so folding without it would be wrong.
    set(&mut c, &snapshot_key, &manifest_raw).await;
    set(&mut c, &key, &altered).await;
    match rebuild::load_snapshot(&mut c.con, &c.layout).await {
        Err(ProjectorError::Snapshot(reason)) => assert!(reason.contains("checksum"), "{reason}"),
        other => panic!("expected an unusable snapshot, got {other:?}"),
    }
    set(&mut c, &key, &good).await;
    let (restored, _) = rebuild::load_snapshot(&mut c.con, &c.layout)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(restored.checksum(), state.checksum());
}

/// The projector with a damaged chunk and its read models gone: it does not rebuild (nor
/// commit anything) while the snapshot is damaged, and rebuilds exactly once it is whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projector_does_not_rebuild_from_a_damaged_chunk() {
    let mut c = TestCluster::start().await;
    let entries = workload::generate(17, 2000, 5);
    let mut config = c.config("p1");
    config.snapshot_every = 500;
    config.log_min_age = None;
    let p = c.spawn(config);
    let last = write_workload(&mut c, &entries).await;
    c.wait_applied(last, WAIT).await;
    p.stop().await;
    let before = read_models(&mut c.con, &c.layout).await;

    let m = manifest(&mut c).await;
    let key = m.chunk_keys(&c.layout)[0].clone();
    let good: Vec<u8> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut c.con)
        .await
        .unwrap();
    let mut altered = good.clone();
    altered[10] ^= 0x01;
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(&altered)
        .query_async(&mut c.con)
        .await
        .unwrap();
    assert!(matches!(
        verify::verify(&mut c.con, &c.layout, |_| {}).await,
        Err(ProjectorError::Snapshot(_))
    ));
    let _: () = redis::cmd("DEL")
        .arg(c.layout.checkpoint())
        .arg(c.layout.keymap())
        .query_async(&mut c.con)
        .await
        .unwrap();
    let p = c.spawn_projector("p2");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        c.checkpoint().await.is_empty(),
        "committed a rebuild from a damaged snapshot"
    );
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(&good)
        .query_async(&mut c.con)
        .await
        .unwrap();
    c.wait_applied(last, WAIT).await;
    p.stop().await;
    let mut after = read_models(&mut c.con, &c.layout).await;
    let mut before = before;
    for k in ["checkpoint/ring_version", "ring/version"] {
        before.remove(k);
        after.remove(k);
    }
    assert_same_models(&after, &before);
}

/// A deployment from before chunks has the whole snapshot in one string: a rebuild still
/// starts from it (the log below it is trimmed, so nothing else would do), and the next
/// snapshot the projector writes is chunked and replaces it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_in_one_string_still_loads_and_the_next_write_replaces_it() {
    let mut c = TestCluster::start().await;
    let entries = workload::generate(23, 4000, 6);
    let mut config = c.config("p1");
    config.snapshot_every = 1000;
    config.log_min_age = None;
    let p = c.spawn(config.clone());
    let last = write_workload(&mut c, &entries[..2500]).await;
    c.wait_applied(last, WAIT).await;
    p.stop().await;
    let log_len: u64 = redis::cmd("XLEN")
        .arg(c.layout.log())
        .query_async(&mut c.con)
        .await
        .unwrap();
    assert!(log_len < 2500, "the log was not trimmed (XLEN {log_len})");
    let before = read_models(&mut c.con, &c.layout).await;

    // The same snapshot as the format before chunks stored it.
    let m = manifest(&mut c).await;
    let json = snapshot::load_bytes(&mut c.con, &c.layout)
        .await
        .unwrap()
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(c.layout.snapshot())
        .arg(&json)
        .query_async(&mut c.con)
        .await
        .unwrap();
    keys::delete(&mut c.con, &m.chunk_keys(&c.layout))
        .await
        .unwrap();
    assert!(chunk_keys(&mut c).await.is_empty());
    let old = snapshot::load(&mut c.con, &c.layout)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(old.last_id, m.id.split('.').next().unwrap());

    // A rebuild from it.
    let _: () = redis::cmd("DEL")
        .arg(c.layout.checkpoint())
        .arg(c.layout.keymap())
        .query_async(&mut c.con)
        .await
        .unwrap();
    let p = c.spawn(config);
    c.wait_applied(last, WAIT).await;
    let mut after = read_models(&mut c.con, &c.layout).await;
    let mut before = before;
    for k in ["checkpoint/ring_version", "ring/version"] {
        before.remove(k);
        after.remove(k);
    }
    assert_same_models(&after, &before);

    // The next snapshot is chunked.
    let last = write_workload(&mut c, &entries[2500..]).await;
    c.wait_applied(last, WAIT).await;
    p.stop().await;
    let m = manifest(&mut c).await;
    assert_eq!(
        chunk_keys(&mut c).await,
        m.chunk_keys(&c.layout).into_iter().collect()
    );
    let v = verify::verify(&mut c.con, &c.layout, |_| {}).await.unwrap();
    assert!(v.matches(), "{v:?}");
}

/// A crash after the chunks and before the manifest (simulated: chunks written, nothing
/// committed) and a commit that is fenced both leave the previous snapshot whole; the next
/// snapshot's commit deletes every chunk but its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_without_a_manifest_change_nothing_and_the_next_write_deletes_them() {
    let mut c = TestCluster::start().await;
    let (first, first_id) = state_with(1000);
    let first_json = serde_json::to_vec(&Snapshot::of(&first, first_id)).unwrap();
    let lease = lead(&mut c, first_id).await;
    let committed = write(&mut c, &lease, first_id, &first_json).await.unwrap();

    // A write that never reaches its commit, at the same log id.
    let (second, _) = state_with(1500);
    let second_json = serde_json::to_vec(&Snapshot::of(&second, first_id)).unwrap();
    let orphan = snapshot::prepare(&mut c.con, &c.layout, first_id, &second_json, SMALL)
        .await
        .unwrap();
    assert_ne!(orphan.manifest().id, committed.manifest().id);
    // One whose commit is fenced (another process holds the lease).
    let stranger = Lease::new(c.layout.lease(), "stranger", Duration::from_secs(60));
    let fenced = write(&mut c, &stranger, first_id, &second_json).await;
    assert!(matches!(fenced, Err(CommitError::Fenced)), "{fenced:?}");
    let all = chunk_keys(&mut c).await;
    assert!(
        orphan
            .manifest()
            .chunk_keys(&c.layout)
            .iter()
            .all(|k| all.contains(k))
    );
    assert!(all.len() > committed.manifest().chunks as usize + orphan.manifest().chunks as usize);

    let bytes = snapshot::load_bytes(&mut c.con, &c.layout)
        .await
        .unwrap()
        .unwrap();
    assert!(bytes == first_json, "the committed snapshot changed");

    // The next write's commit deletes the orphans and the previous snapshot's chunks.
    let third_id = EntryId::new(100, 0);
    let third_json = serde_json::to_vec(&Snapshot::of(&second, third_id)).unwrap();
    let _: () = redis::cmd("HSET")
        .arg(c.layout.checkpoint())
        .arg("last_id")
        .arg(third_id.to_string())
        .query_async(&mut c.con)
        .await
        .unwrap();
    let third = write(&mut c, &lease, third_id, &third_json).await.unwrap();
    assert_eq!(third.stale().len(), all.len());
    assert_eq!(
        chunk_keys(&mut c).await,
        third.manifest().chunk_keys(&c.layout).into_iter().collect()
    );
    let (restored, id) = rebuild::load_snapshot(&mut c.con, &c.layout)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((restored.checksum(), id), (second.checksum(), third_id));
}

/// Not a check, a measurement (docs/benchmarks.md, "Restart and takeover at millions of
/// keys"): Redis's own time per command (`SLOWLOG`) when a snapshot of
/// `PANTHEON_BENCH_KEYS` keys (default 1,000,000) is written the way it was before chunks
/// (one `SET` inside the fenced Lua commit) and in chunks, and the load time of each.
/// `cargo nextest run -p pantheon-tests --test integration --run-ignored only --no-capture snapshot_write_timing`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, minutes in a debug build"]
async fn snapshot_write_timing() {
    use std::time::Instant;
    let keys: usize = std::env::var("PANTHEON_BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mut c = TestCluster::start().await;
    let (state, last_id) = state_with(keys);
    let json = serde_json::to_vec(&Snapshot::of(&state, last_id)).unwrap();
    let lease = lead(&mut c, last_id).await;
    let slowlog = async |c: &mut TestCluster| -> Vec<(String, u64)> {
        let entries: Vec<redis::Value> = redis::cmd("SLOWLOG")
            .arg("GET")
            .arg(-1)
            .query_async(&mut c.con)
            .await
            .unwrap();
        let _: () = redis::cmd("SLOWLOG")
            .arg("RESET")
            .query_async(&mut c.con)
            .await
            .unwrap();
        entries
            .into_iter()
            .filter_map(|e| match e {
                redis::Value::Array(f) => match (&f[2], &f[3]) {
                    (redis::Value::Int(us), redis::Value::Array(args)) => match &args[0] {
                        redis::Value::BulkString(name) => {
                            Some((String::from_utf8_lossy(name).into_owned(), *us as u64))
                        }
                        _ => None,
                    },
                    _ => None,
                },
                _ => None,
            })
            .collect()
    };
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-log-slower-than")
        .arg(0)
        .query_async(&mut c.con)
        .await
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-max-len")
        .arg(10_000)
        .query_async(&mut c.con)
        .await
        .unwrap();
    slowlog(&mut c).await;
    let report = |what: &str, log: &[(String, u64)], took: Duration| {
        let longest = log
            .iter()
            .max_by_key(|(_, us)| *us)
            .cloned()
            .unwrap_or_default();
        let total: u64 = log.iter().map(|(_, us)| us).sum();
        println!(
            "{what}: {:.1} ms wall, {} commands, Redis busy {:.1} ms, longest {} {:.1} ms",
            took.as_secs_f64() * 1e3,
            log.len(),
            total as f64 / 1e3,
            longest.0,
            longest.1 as f64 / 1e3,
        );
    };

    // Before chunks: the whole JSON as one argument of the fenced commit.
    let started = Instant::now();
    let mut batch = Batch::new();
    batch.call("SET", &[&c.layout.snapshot()], [&json]);
    batch
        .commit(
            &mut c.con,
            lease.key(),
            &c.layout.checkpoint(),
            lease.token(),
            &last_id.to_string(),
        )
        .await
        .unwrap();
    let took = started.elapsed();
    println!("{keys} keys: snapshot {} bytes", json.len());
    report("one string", &slowlog(&mut c).await, took);
    let started = Instant::now();
    snapshot::load(&mut c.con, &c.layout)
        .await
        .unwrap()
        .unwrap();
    println!("  load {:.1} ms", started.elapsed().as_secs_f64() * 1e3);
    slowlog(&mut c).await;

    // In chunks.
    let started = Instant::now();
    let prepared = snapshot::prepare(&mut c.con, &c.layout, last_id, &json, snapshot::CHUNK_BYTES)
        .await
        .unwrap();
    let chunks_took = started.elapsed();
    let chunks_log = slowlog(&mut c).await;
    let started = Instant::now();
    let mut batch = Batch::new();
    snapshot::stage_write(&mut batch, &c.layout, &prepared);
    batch
        .commit(
            &mut c.con,
            lease.key(),
            &c.layout.checkpoint(),
            lease.token(),
            &last_id.to_string(),
        )
        .await
        .unwrap();
    let commit_took = started.elapsed();
    println!("  {} chunks", prepared.manifest().chunks);
    report("chunks (SET each, SCAN)", &chunks_log, chunks_took);
    report("manifest commit", &slowlog(&mut c).await, commit_took);
    let started = Instant::now();
    snapshot::load(&mut c.con, &c.layout)
        .await
        .unwrap()
        .unwrap();
    println!("  load {:.1} ms", started.elapsed().as_secs_f64() * 1e3);
    slowlog(&mut c).await;

    // The next one replaces those chunks.
    let started = Instant::now();
    let next = snapshot::prepare(&mut c.con, &c.layout, last_id, &json, snapshot::CHUNK_BYTES)
        .await
        .unwrap();
    let chunks_took = started.elapsed();
    let chunks_log = slowlog(&mut c).await;
    let started = Instant::now();
    let mut batch = Batch::new();
    snapshot::stage_write(&mut batch, &c.layout, &next);
    batch
        .commit(
            &mut c.con,
            lease.key(),
            &c.layout.checkpoint(),
            lease.token(),
            &last_id.to_string(),
        )
        .await
        .unwrap();
    let commit_took = started.elapsed();
    report("next chunks", &chunks_log, chunks_took);
    report(
        &format!("manifest commit unlinking {} chunks", next.stale().len()),
        &slowlog(&mut c).await,
        commit_took,
    );
}
