//! The proof that a log entry was written by the service: the attested append, and reading
//! the proof back as an [`Origin`] per entry.
//!
//! The log stays the one total order of inputs, and any producer may `XADD` to it. Service
//! entries (probe results, the prober set, ...) are appended instead by a small script that
//! adds the entry to the log and, in the same atomic step, its id to the `attest` stream of
//! the cluster. The ACL rules give the `producer` and `writer` roles `XADD` on the log key
//! alone, so only the `service` and `operator` roles can attest: an entry a producer forges,
//! or a copy of a real service entry it replays, has an id the `attest` stream does not hold.
//! See `docs/adr/0011-service-entries-and-joining.md`.
//!
//! Entries at or below the `legacy_until` id recorded in the cluster's metadata by the
//! migration that introduced attestation were written before it, and read as
//! [`Origin::Legacy`].

use std::collections::BTreeSet;

use pantheon_domain::entry::is_service_type;
use pantheon_domain::{EntryId, LogEntry, Origin};
use redis::aio::ConnectionLike;

use crate::stream::{self, Bound};
use crate::{Layout, RawEntry, StoreError};

/// Appends an entry to the log and attests its id, atomically.
/// KEYS[1] = log, KEYS[2] = attest; ARGV = field, value, field, value, ...
pub(crate) const APPEND_LUA: &str = r"
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV))
local kind = ''
for i = 1, #ARGV - 1, 2 do
  if ARGV[i] == 'type' then kind = ARGV[i + 1] break end
end
redis.call('XADD', KEYS[2], id, 'type', kind)
return id
";

/// The metadata field holding the newest id written before attestation began (absent: none).
pub(crate) const LEGACY_UNTIL: &str = "legacy_until";

/// The attested append of `fields` as one command (`EVAL`, so it also runs inside a
/// `MULTI`, where a script cannot be loaded first).
pub fn eval<F: AsRef<[u8]>, V: AsRef<[u8]>>(layout: &Layout, fields: &[(F, V)]) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(APPEND_LUA)
        .arg(2)
        .arg(layout.log())
        .arg(layout.attest());
    for (f, v) in fields {
        cmd.arg(f.as_ref()).arg(v.as_ref());
    }
    cmd
}

/// The attested append of `entry`, as `EVALSHA` of the script a pipeline loads first with
/// [`load`] (the body travels once per pipeline, not once per entry).
pub fn evalsha(layout: &Layout, entry: &LogEntry) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script_sha())
        .arg(2)
        .arg(layout.log())
        .arg(layout.attest());
    for (k, v) in entry.encode() {
        cmd.arg(k).arg(v);
    }
    cmd
}

/// `SCRIPT LOAD` of the attested append: first in every pipeline of [`evalsha`] calls, so
/// a Redis that restarted (and forgot its scripts) never answers `NOSCRIPT` to some of them.
pub fn load() -> redis::Cmd {
    let mut cmd = redis::cmd("SCRIPT");
    cmd.arg("LOAD").arg(APPEND_LUA);
    cmd
}

fn script_sha() -> &'static str {
    static SHA: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SHA.get_or_init(|| redis::Script::new(APPEND_LUA).get_hash().to_owned())
}

/// The newest id written before this cluster attested service entries, if it had any.
pub async fn legacy_until<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
) -> Result<Option<EntryId>, StoreError> {
    let raw: Option<String> = redis::cmd("HGET")
        .arg(layout.meta())
        .arg(LEGACY_UNTIL)
        .query_async(con)
        .await?;
    raw.map(|id| {
        id.parse().map_err(|_| StoreError::Damaged {
            key: layout.meta(),
            reason: format!("{LEGACY_UNTIL} is {id:?}, not an entry id"),
        })
    })
    .transpose()
}

/// The attested ids from `first` to `last`, both included.
pub async fn attested<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    first: EntryId,
    last: EntryId,
) -> Result<BTreeSet<EntryId>, StoreError> {
    let (low, high) = (Bound::Including(first), Bound::Including(last));
    Ok(stream::range(con, &layout.attest(), low, high, None)
        .await?
        .into_iter()
        .map(|e| e.id)
        .collect())
}

/// The origin of each of `entries` (in any order): [`Origin::Legacy`] at or below
/// `legacy_until`, [`Origin::Service`] when attested, else [`Origin::Client`]. One `XRANGE`
/// of the attest stream, skipped when no entry after `legacy_until` has a service type.
pub async fn origins<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    entries: &[RawEntry],
    legacy_until: Option<EntryId>,
) -> Result<Vec<Origin>, StoreError> {
    let legacy = |id: EntryId| legacy_until.is_some_and(|until| id <= until);
    let needs_proof = |e: &RawEntry| {
        !legacy(e.id)
            && e.fields
                .iter()
                .any(|(k, v)| k.as_slice() == b"type" && is_service_type(v))
    };
    let candidates = entries.iter().filter(|e| needs_proof(e)).map(|e| e.id);
    let (first, last) = (candidates.clone().min(), candidates.max());
    let proven = match (first, last) {
        (Some(first), Some(last)) => attested(con, layout, first, last).await?,
        _ => BTreeSet::new(),
    };
    Ok(entries
        .iter()
        .map(|e| {
            if legacy(e.id) {
                Origin::Legacy
            } else if proven.contains(&e.id) {
                Origin::Service
            } else {
                Origin::Client
            }
        })
        .collect())
}

/// Stages trimming the attest stream below `keep_from`, with the log.
pub fn stage_trim_below(batch: &mut crate::Batch, layout: &Layout, keep_from: EntryId) {
    batch.call(
        "XTRIM",
        &[&layout.attest()],
        ["MINID".as_bytes(), keep_from.to_string().as_bytes()],
    );
}
