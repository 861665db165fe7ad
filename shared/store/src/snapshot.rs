//! A snapshot: the whole state as of one log id, the base of rebuilds. The log is only ever
//! trimmed below the snapshot's id, so a rebuild = snapshot + the log after it.
//!
//! Stored in pieces (docs/adr/0017-chunked-snapshots.md): the serialized state is cut into
//! chunks of at most [`CHUNK_BYTES`], each written by its own `SET` under a name unique to this
//! write ([`Layout::snapshot_chunk`]), before any fenced commit; then a small [`Manifest`]
//! (which chunks, how many bytes, their checksum) is committed in the snapshot key, fenced,
//! together with the deletion of every other chunk found before the commit (the previous
//! snapshot's, and those of writes that never committed). The manifest makes a snapshot
//! visible atomically; no single command carries more than one chunk.
//!
//! A value in the snapshot key that is not a manifest is a snapshot of the format before
//! chunks (the whole JSON in one string): it is read as such, and the next write replaces it.

use pantheon_domain::placement::Strategy;
use pantheon_domain::{EntryId, NodeId, Policy, State};
use redis::aio::ConnectionLike;
use serde::{Deserialize, Serialize};

use crate::readmodel::NodeRecord;
use crate::{Batch, Layout, StoreError};

/// Most bytes in one chunk: one `SET` of this size takes Redis a few milliseconds, and a
/// 20 M-key state (past Redis's 512 MB limit on one string) is still a few dozen chunks.
pub const CHUNK_BYTES: usize = 8 * 1024 * 1024;

/// Most keys per `UNLINK` staged in the commit.
const DELETE_PER_CALL: usize = 100;

/// How often a load starts again when a newer snapshot replaced the one it was reading (and
/// deleted its chunks) in between.
const LOAD_ATTEMPTS: usize = 5;

/// What the snapshot key holds: the chunks that make up the serialized [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The manifest's format; written first, so the value starts with `{"manifest":`.
    pub manifest: u32,
    /// Names this write's chunks: the snapshot's log id and a random suffix, so a write never
    /// touches another write's chunks (two snapshots at the same log id included).
    pub id: String,
    pub chunks: u32,
    /// Every chunk but the last holds exactly this many bytes.
    pub chunk_bytes: u64,
    /// The serialized snapshot's length.
    pub bytes: u64,
    /// xxh3-64 of the serialized snapshot, 16 hex digits.
    pub xxh3: String,
}

impl Manifest {
    pub const FORMAT: u32 = 1;
    const TAG: &'static [u8] = b"{\"manifest\":";

    /// Whether a value of the snapshot key is a manifest (else: the format before chunks).
    pub fn is_manifest(raw: &[u8]) -> bool {
        raw.starts_with(Self::TAG)
    }

    fn of(id: String, json: &[u8], chunk_bytes: usize) -> Self {
        Self {
            manifest: Self::FORMAT,
            id,
            chunks: chunk_count(json.len() as u64, chunk_bytes as u64) as u32,
            chunk_bytes: chunk_bytes as u64,
            bytes: json.len() as u64,
            xxh3: checksum(json),
        }
    }

    /// Whether the counts agree with each other (before reading any chunk).
    fn check(&self) -> Result<(), String> {
        if self.manifest != Self::FORMAT {
            return Err(format!("manifest format {} is unknown", self.manifest));
        }
        if self.chunk_bytes == 0 || self.chunks == 0 {
            return Err("manifest names no chunks".into());
        }
        if chunk_count(self.bytes, self.chunk_bytes) != u64::from(self.chunks) {
            return Err(format!(
                "manifest counts {} chunks for {} bytes of {} per chunk",
                self.chunks, self.bytes, self.chunk_bytes
            ));
        }
        Ok(())
    }

    /// How many bytes chunk `n` must hold.
    fn chunk_len(&self, n: u32) -> u64 {
        let before = u64::from(n) * self.chunk_bytes;
        self.chunk_bytes.min(self.bytes.saturating_sub(before))
    }

    /// The keys of this write's chunks, in order.
    pub fn chunk_keys(&self, layout: &Layout) -> Vec<String> {
        (0..self.chunks)
            .map(|n| layout.snapshot_chunk(&self.id, n))
            .collect()
    }
}

/// Chunks of `bytes`: at least one, so even an empty value has a chunk to hold it.
fn chunk_count(bytes: u64, chunk_bytes: u64) -> u64 {
    bytes.div_ceil(chunk_bytes).max(1)
}

fn checksum(bytes: &[u8]) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(bytes))
}

/// Reads the stored snapshot, if any. A snapshot that cannot be read back as written (a
/// chunk missing, short, long or altered; bytes that are not a snapshot) is
/// [`StoreError::Damaged`], with the reason.
pub async fn load<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
) -> Result<Option<Snapshot>, StoreError> {
    let Some(raw) = load_bytes(con, layout).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&raw)
        .map(Some)
        .map_err(|e| StoreError::Damaged {
            key: layout.snapshot(),
            reason: e.to_string(),
        })
}

/// Why a chunked snapshot could not be read.
enum Unreadable {
    /// A chunk is gone: damage, or a newer snapshot replaced this one meanwhile.
    Missing(String),
    /// The chunks are there and not what the manifest says.
    Damaged(String),
}

/// The serialized snapshot, checked against its manifest (or, in the format before chunks,
/// as stored).
pub async fn load_bytes<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
) -> Result<Option<Vec<u8>>, StoreError> {
    let key = layout.snapshot();
    let damaged = |reason: String| StoreError::Damaged {
        key: key.clone(),
        reason,
    };
    let mut raw: Option<Vec<u8>> = redis::cmd("GET").arg(&key).query_async(con).await?;
    for _ in 0..LOAD_ATTEMPTS {
        let Some(value) = raw else {
            return Ok(None);
        };
        if !Manifest::is_manifest(&value) {
            return Ok(Some(value));
        }
        let manifest: Manifest = serde_json::from_slice(&value)
            .map_err(|e| damaged(format!("snapshot manifest: {e}")))?;
        manifest.check().map_err(&damaged)?;
        match read_chunks(con, layout, &manifest).await? {
            Ok(bytes) => return Ok(Some(bytes)),
            Err(Unreadable::Damaged(reason)) => return Err(damaged(reason)),
            Err(Unreadable::Missing(reason)) => {
                // Chunks are deleted only by the commit that replaces their manifest: if the
                // manifest is still this one, the chunk is lost; if not, read the new one.
                raw = redis::cmd("GET").arg(&key).query_async(con).await?;
                if raw.as_deref() == Some(value.as_slice()) {
                    return Err(damaged(reason));
                }
            }
        }
    }
    Err(damaged(format!(
        "the snapshot was replaced during each of {LOAD_ATTEMPTS} reads"
    )))
}

/// The chunks of `manifest`, one `GET` each, checked for count, length and checksum.
async fn read_chunks<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    manifest: &Manifest,
) -> Result<Result<Vec<u8>, Unreadable>, StoreError> {
    let mut bytes = Vec::new();
    // The length comes from Redis, not from this process: refuse one it cannot hold instead
    // of aborting on the allocation.
    let Ok(total) = usize::try_from(manifest.bytes) else {
        return Ok(Err(Unreadable::Damaged(format!(
            "snapshot manifest claims {} bytes",
            manifest.bytes
        ))));
    };
    if bytes.try_reserve_exact(total).is_err() {
        return Ok(Err(Unreadable::Damaged(format!(
            "snapshot manifest claims {total} bytes, more than this process can hold"
        ))));
    }
    for (n, key) in manifest.chunk_keys(layout).iter().enumerate() {
        let n = n as u32;
        let chunk: Option<Vec<u8>> = redis::cmd("GET").arg(key).query_async(con).await?;
        let Some(chunk) = chunk else {
            return Ok(Err(Unreadable::Missing(format!(
                "snapshot chunk {key} ({} of {}) is missing",
                n + 1,
                manifest.chunks
            ))));
        };
        let expected = manifest.chunk_len(n);
        if chunk.len() as u64 != expected {
            return Ok(Err(Unreadable::Damaged(format!(
                "snapshot chunk {key} holds {} bytes, the manifest says {expected}",
                chunk.len()
            ))));
        }
        bytes.extend_from_slice(&chunk);
    }
    let found = checksum(&bytes);
    if found != manifest.xxh3 {
        return Ok(Err(Unreadable::Damaged(format!(
            "snapshot chunks of {} have checksum {found}, the manifest says {}",
            manifest.id, manifest.xxh3
        ))));
    }
    Ok(Ok(bytes))
}

/// Whether a snapshot was ever written.
pub async fn exists<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
) -> Result<bool, StoreError> {
    crate::keys::exists(con, &layout.snapshot()).await
}

/// A snapshot whose chunks are written, ready to be made visible by a fenced commit
/// ([`stage_write`]).
#[derive(Debug, Clone)]
pub struct Prepared {
    manifest: Manifest,
    /// Chunks of other writes found before the commit: the previous snapshot's, and those of
    /// writes that never committed. The commit deletes them.
    stale: Vec<String>,
}

impl Prepared {
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The chunk keys the commit deletes.
    pub fn stale(&self) -> &[String] {
        &self.stale
    }
}

/// Writes `json` (a serialized [`Snapshot`] as of `last_id`) as chunks of at most
/// `chunk_bytes` ([`CHUNK_BYTES`] outside tests), one `SET` each, and lists the chunks of
/// other writes. Nothing is visible until [`stage_write`] is committed; if it never is, the
/// chunks are deleted by the next snapshot's commit (or by [`discard`]).
pub async fn prepare<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    last_id: EntryId,
    json: &[u8],
    chunk_bytes: usize,
) -> Result<Prepared, StoreError> {
    let chunk_bytes = chunk_bytes.max(1);
    let id = format!("{last_id}.{:016x}", rand::random::<u64>());
    let manifest = Manifest::of(id, json, chunk_bytes);
    let keys = manifest.chunk_keys(layout);
    for (n, key) in keys.iter().enumerate() {
        let start = (n * chunk_bytes).min(json.len());
        let piece = &json[start..(start + chunk_bytes).min(json.len())];
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(piece)
            .query_async(con)
            .await?;
    }
    let mut stale = crate::keys::matching(con, &layout.snapshot_chunks_pattern()).await?;
    stale.retain(|k| !keys.contains(k));
    stale.sort();
    Ok(Prepared { manifest, stale })
}

/// Stages making `prepared` the snapshot, for a fenced commit: the manifest into the snapshot
/// key, and the deletion of the stale chunks (in the same commit, so the snapshot the
/// manifest replaces stays whole until then, and a commit that is fenced deletes nothing).
pub fn stage_write(batch: &mut Batch, layout: &Layout, prepared: &Prepared) {
    // Serializing a struct of strings and integers cannot fail.
    let manifest = serde_json::to_vec(&prepared.manifest).unwrap_or_default();
    batch.call("SET", &[&layout.snapshot()], [manifest]);
    for keys in prepared.stale.chunks(DELETE_PER_CALL) {
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        // UNLINK: the memory of megabytes of chunks is freed off Redis's main thread.
        batch.call("UNLINK", &keys, std::iter::empty::<&[u8]>());
    }
}

/// Deletes the chunks of a write whose commit is known not to have happened (fenced,
/// refused): they would otherwise wait for the next snapshot's commit. Only this write's own
/// chunks, which no manifest names.
pub async fn discard<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    prepared: &Prepared,
) -> Result<(), StoreError> {
    crate::keys::delete(con, &prepared.manifest.chunk_keys(layout)).await?;
    Ok(())
}

fn default_panic() -> u32 {
    Policy::DEFAULT_PANIC
}

/// Serializable form of a [`State`].
#[derive(Debug, Serialize, Deserialize)]
pub struct Snapshot {
    pub format: u32,
    pub last_id: String,
    pub checksum: String,
    pub fall: u32,
    pub rise: u32,
    pub strategy: String,
    pub vnodes: u32,
    /// Absent in snapshots written before the panic threshold existed (= the default).
    #[serde(default = "default_panic")]
    pub panic: u32,
    /// Absent in snapshots written before flap damping existed (= the defaults).
    #[serde(default)]
    pub damping: Option<Vec<u32>>,
    pub next_epoch: u64,
    pub nodes: Vec<NodeRecord>,
    /// `[key, owner]`, owner `""` when unowned.
    pub keys: Vec<(String, String)>,
    pub cmds: Vec<(String, String)>,
    #[serde(default)]
    pub probers: Option<Vec<String>>,
    /// The ownership token clock and floor (docs/adr/0015); absent (0) in snapshots taken
    /// before tokens.
    #[serde(default)]
    pub token_clock: u64,
    #[serde(default)]
    pub token_floor: u64,
    /// The hand-off timeout (ms; docs/adr/0016); absent in snapshots taken before hand-offs
    /// (= the default).
    #[serde(default = "default_handoff_timeout")]
    pub handoff_timeout: u32,
    /// `load_epsilon` (ADR 0018); absent in snapshots taken before load placement (= 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub load_epsilon: u32,
    /// Reported loads and the load plan; absent when there are none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loads: Option<crate::loads::LoadParts>,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

fn default_handoff_timeout() -> u32 {
    Policy::DEFAULT_HANDOFF_TIMEOUT
}

impl Snapshot {
    pub const FORMAT: u32 = 1;

    pub fn of(state: &State, last_id: EntryId) -> Self {
        let p = state.policy();
        Self {
            format: Self::FORMAT,
            last_id: last_id.to_string(),
            checksum: format!("{:016x}", state.checksum()),
            fall: p.fall,
            rise: p.rise,
            strategy: p.strategy.as_str().to_owned(),
            vnodes: p.vnodes,
            panic: p.panic,
            damping: Some(p.damping_fields().iter().map(|(_, v)| *v).collect()),
            next_epoch: state.next_epoch(),
            nodes: state.nodes().map(NodeRecord::from_node).collect(),
            keys: state
                .keys()
                .iter()
                .map(|(k, o)| (k.to_owned(), o.map(|n| n.to_string()).unwrap_or_default()))
                .collect(),
            cmds: state
                .recent_cmds()
                .map(|(c, record)| (c.to_owned(), record.to_string()))
                .collect(),
            probers: state.probers().map(<[String]>::to_vec),
            token_clock: state.tokens().clock(),
            token_floor: state.tokens().floor(),
            handoff_timeout: p.handoff_timeout,
            load_epsilon: p.load_epsilon,
            loads: Some(crate::loads::LoadParts::of(state)).filter(|l| !l.is_empty()),
        }
    }

    /// The state and its log id; fails when the snapshot is damaged (checksum included).
    pub fn restore(&self) -> Result<(State, EntryId), String> {
        if self.format != Self::FORMAT {
            return Err(format!("snapshot format {} is unknown", self.format));
        }
        let strategy: Strategy = self.strategy.parse()?;
        let policy = Policy {
            fall: self.fall,
            rise: self.rise,
            strategy,
            vnodes: self.vnodes,
            panic: self.panic,
            handoff_timeout: self.handoff_timeout,
            load_epsilon: self.load_epsilon,
            ..Policy::default()
        };
        let policy = match self.damping.as_deref() {
            None => policy,
            Some(
                &[
                    damp_penalty,
                    damp_suppress,
                    damp_reuse,
                    damp_half_life,
                    damp_max_suppress,
                ],
            ) => Policy {
                damp_penalty,
                damp_suppress,
                damp_reuse,
                damp_half_life,
                damp_max_suppress,
                ..policy
            },
            Some(other) => {
                return Err(format!(
                    "snapshot damping has {} values, not 5",
                    other.len()
                ));
            }
        };
        let nodes = self
            .nodes
            .iter()
            .map(NodeRecord::to_node)
            .collect::<Result<Vec<_>, _>>()?;
        let mut keys = Vec::with_capacity(self.keys.len());
        for (k, o) in &self.keys {
            let owner = if o.is_empty() {
                None
            } else {
                Some(NodeId::new(o).map_err(|e| e.to_string())?)
            };
            keys.push((k.clone(), owner));
        }
        let mut cmds = Vec::with_capacity(self.cmds.len());
        for (c, id) in &self.cmds {
            cmds.push((c.clone(), id.parse().map_err(|e| format!("cmd {c}: {e}"))?));
        }
        let mut state = State::restore(policy, self.next_epoch, nodes, keys, cmds);
        state.restore_probers(self.probers.clone());
        state.restore_tokens(self.token_clock, self.token_floor);
        if let Some(parts) = &self.loads {
            let (loads, plan) = parts.restore()?;
            state.restore_loads(loads, plan);
        }
        let last_id: EntryId = self.last_id.parse().map_err(|_| "bad last_id".to_owned())?;
        let checksum = format!("{:016x}", state.checksum());
        if checksum != self.checksum {
            return Err(format!(
                "snapshot checksum {} does not match its content ({checksum})",
                self.checksum
            ));
        }
        Ok((state, last_id))
    }
}
