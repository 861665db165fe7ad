//! The proof that a log entry was written by the service: the attested append, and reading
//! the proof back as an [`Origin`] per entry.
//!
//! The log stays the one total order of inputs, and any producer may `XADD` to it. Service
//! entries (probe results, the prober set, ...) are appended instead by a small script that
//! adds a run of entries to the log and, in the same atomic step, one entry to the `attest`
//! stream of the cluster: its id is the run's last id and its `first` field the run's first.
//! Nothing can come between the entries of one script run (a script is atomic, and an `XADD`
//! with an explicit id must exceed the newest), so the range proves every entry in it. The
//! ACL rules give the `producer` and `writer` roles `XADD` on the log key alone, so only the
//! `service` and `operator` roles can attest: an entry a producer forges, or a copy of a real
//! service entry it replays, has an id no attested range holds.
//! See `docs/adr/0011-service-entries-and-joining.md`.
//!
//! An attest entry without `first` proves its own id alone (how the first attested appends
//! wrote them). Entries at or below the `legacy_until` id recorded in the cluster's metadata
//! by the migration that introduced attestation were written before it, and read as
//! [`Origin::Legacy`].

use pantheon_domain::entry::is_service_type;
use pantheon_domain::{EntryId, LogEntry, Origin};
use redis::aio::ConnectionLike;

use crate::stream::{self, Bound};
use crate::{Layout, RawEntry, StoreError};

/// Appends a run of entries to the log and attests the run's id range, atomically.
/// KEYS[1] = log, KEYS[2] = attest; ARGV = for each entry, the number of field and value
/// arguments that follow, then field, value, field, value, ... Returns the last id.
pub(crate) const APPEND_LUA: &str = r"
local first, id
local i = 1
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  local args = {KEYS[1], '*'}
  for j = i + 1, i + n do args[#args + 1] = ARGV[j] end
  id = redis.call('XADD', unpack(args))
  first = first or id
  i = i + n + 1
end
if not id then return redis.error_reply('ERR attested append of no entries') end
redis.call('XADD', KEYS[2], id, 'first', first)
return id
";

/// Entries per script run in [`stage_append_many`]: each run holds Redis for its length, and
/// its proof is one attest entry.
const RUN: usize = 256;

/// The metadata field holding the newest id written before attestation began (absent: none).
pub(crate) const LEGACY_UNTIL: &str = "legacy_until";

/// The attested append of one run of entries (field/value lists) as one `EVAL`, so it also
/// runs inside a `MULTI`, where a script cannot be loaded first. `entries` must not be empty.
pub fn eval<'a, F, V, E>(layout: &Layout, entries: E) -> redis::Cmd
where
    F: AsRef<[u8]> + 'a,
    V: AsRef<[u8]> + 'a,
    E: IntoIterator<Item = &'a [(F, V)]>,
{
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(APPEND_LUA);
    with_entries(cmd, layout, entries)
}

/// Stages the attested append of `entries` in `pipe`, in runs of up to [`RUN`] entries, each
/// an `EVALSHA` of the script loaded first (the body travels once per pipeline, and a Redis
/// that restarted and forgot its scripts never answers `NOSCRIPT` to some of them).
pub fn stage_append_many(pipe: &mut redis::Pipeline, layout: &Layout, entries: &[LogEntry]) {
    let mut load = redis::cmd("SCRIPT");
    load.arg("LOAD").arg(APPEND_LUA);
    pipe.add_command(load).ignore();
    for run in entries.chunks(RUN) {
        let encoded: Vec<_> = run.iter().map(LogEntry::encode).collect();
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(script_sha());
        let cmd = with_entries(cmd, layout, encoded.iter().map(Vec::as_slice));
        pipe.add_command(cmd).ignore();
    }
}

fn with_entries<'a, F, V, E>(mut cmd: redis::Cmd, layout: &Layout, entries: E) -> redis::Cmd
where
    F: AsRef<[u8]> + 'a,
    V: AsRef<[u8]> + 'a,
    E: IntoIterator<Item = &'a [(F, V)]>,
{
    cmd.arg(2).arg(layout.log()).arg(layout.attest());
    for fields in entries {
        cmd.arg(fields.len() * 2);
        for (f, v) in fields {
            cmd.arg(f.as_ref()).arg(v.as_ref());
        }
    }
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

/// Attested id ranges, ascending and disjoint (as the attest stream holds them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attested(Vec<(EntryId, EntryId)>);

impl Attested {
    /// The ranges of attest stream entries (`first`, or the entry's own id, to the entry's id).
    fn from_entries(layout: &Layout, entries: Vec<RawEntry>) -> Result<Self, StoreError> {
        let ranges = entries
            .into_iter()
            .map(|e| match e.get("first") {
                None => Ok((e.id, e.id)),
                Some(first) => match first.parse() {
                    Ok(first) if first <= e.id => Ok((first, e.id)),
                    _ => Err(StoreError::Damaged {
                        key: layout.attest(),
                        reason: format!("entry {} has first {first:?}", e.id),
                    }),
                },
            })
            .collect::<Result<_, _>>()?;
        Ok(Attested(ranges))
    }

    /// Whether a range holds `id`.
    pub fn contains(&self, id: &EntryId) -> bool {
        let at = self.0.partition_point(|(_, last)| last < id);
        self.0.get(at).is_some_and(|(first, _)| first <= id)
    }
}

/// The attested ranges that hold any id from `first` to `last`: those ending in between,
/// and the one after (which may start at or before `last`).
pub async fn attested<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    first: EntryId,
    last: EntryId,
) -> Result<Attested, StoreError> {
    let key = layout.attest();
    let mut entries = stream::range(
        con,
        &key,
        Bound::Including(first),
        Bound::Including(last),
        None,
    )
    .await?;
    if last < EntryId::MAX {
        let after = stream::range(con, &key, Bound::Excluding(last), Bound::Open, Some(1));
        entries.extend(after.await?);
    }
    Attested::from_entries(layout, entries)
}

/// Stages appending `tail` (entries of a log being replaced) to the new log, in order:
/// entries that were attested are appended through the attested append again, a run of them
/// at a time, so they keep their proof; the rest stay plain `XADD`s, as a producer wrote them.
pub async fn stage_reappend<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    pipe: &mut redis::Pipeline,
    tail: &[RawEntry],
) -> Result<(), StoreError> {
    let proven = match (tail.first(), tail.last()) {
        (Some(first), Some(last)) => attested(con, layout, first.id, last.id).await?,
        _ => Attested::default(),
    };
    for run in tail.chunk_by(|a, b| proven.contains(&a.id) == proven.contains(&b.id)) {
        if proven.contains(&run[0].id) {
            let fields = run.iter().map(|e| e.fields.as_slice());
            pipe.add_command(eval(layout, fields)).ignore();
            continue;
        }
        for entry in run {
            let mut xadd = redis::cmd("XADD");
            xadd.arg(layout.log()).arg("*");
            for (field, value) in &entry.fields {
                xadd.arg(field).arg(value);
            }
            pipe.add_command(xadd).ignore();
        }
    }
    Ok(())
}

/// The origin of each of `entries` (in any order): [`Origin::Legacy`] at or below
/// `legacy_until`, [`Origin::Service`] when attested, else [`Origin::Client`]. Skips reading
/// the attest stream when no entry after `legacy_until` has a service type.
pub async fn origins<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    entries: &[RawEntry],
    legacy_until: Option<EntryId>,
) -> Result<Vec<Origin>, StoreError> {
    let candidates = entries
        .iter()
        .filter(|e| needs_proof(e, legacy_until))
        .map(|e| e.id);
    let (first, last) = (candidates.clone().min(), candidates.max());
    let proven = match (first, last) {
        (Some(first), Some(last)) => attested(con, layout, first, last).await?,
        _ => Attested::default(),
    };
    Ok(classify(entries, &proven, legacy_until))
}

/// Up to `count` log entries after `after` (from the start when `None`), waiting up to
/// `block` for the first one, with the origin of each. The log and its attest stream are
/// read by one `XREAD BLOCK` (pass a dedicated connection), so when
/// entries are waiting the proof costs no round trip of its own: the script appends to both
/// streams atomically, and every range ending after `after` before the one holding the last
/// entry read ends at an entry read, so the `count` entries read lie in at most the first
/// `count` ranges. A read that waited is answered with the stream that woke it alone; then
/// the proofs are read with [`attested`].
pub async fn read_after<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    after: Option<EntryId>,
    count: usize,
    block: std::time::Duration,
    legacy_until: Option<EntryId>,
) -> Result<(Vec<RawEntry>, Vec<Origin>), StoreError> {
    let (log, attest) = (layout.log(), layout.attest());
    let after = after.unwrap_or(EntryId::ZERO);
    let [entries, proofs] = stream::read_two(con, [&log, &attest], after, count, block).await?;
    // A read that waited is answered with the stream that woke it alone: no proof came with
    // the entries, though some may have one. (A reply holding both streams is complete.)
    let needing = entries.iter().find(|e| needs_proof(e, legacy_until));
    let proven = match (needing, entries.last()) {
        (Some(first), Some(last)) if proofs.is_empty() => {
            attested(con, layout, first.id, last.id).await?
        }
        _ => Attested::from_entries(layout, proofs)?,
    };
    let origins = classify(&entries, &proven, legacy_until);
    Ok((entries, origins))
}

/// Whether `entry` counts only when attested: a service type written after `legacy_until`.
fn needs_proof(entry: &RawEntry, legacy_until: Option<EntryId>) -> bool {
    !is_legacy(entry.id, legacy_until)
        && entry
            .fields
            .iter()
            .any(|(k, v)| k.as_slice() == b"type" && is_service_type(v))
}

fn is_legacy(id: EntryId, legacy_until: Option<EntryId>) -> bool {
    legacy_until.is_some_and(|until| id <= until)
}

fn classify(entries: &[RawEntry], proven: &Attested, legacy_until: Option<EntryId>) -> Vec<Origin> {
    entries
        .iter()
        .map(|e| {
            if is_legacy(e.id, legacy_until) {
                Origin::Legacy
            } else if proven.contains(&e.id) {
                Origin::Service
            } else {
                Origin::Client
            }
        })
        .collect()
}

/// Stages trimming the attest stream below `keep_from`, with the log (a range reaching
/// `keep_from` stays whole).
pub fn stage_trim_below(batch: &mut crate::Batch, layout: &Layout, keep_from: EntryId) {
    batch.call(
        "XTRIM",
        &[&layout.attest()],
        ["MINID".as_bytes(), keep_from.to_string().as_bytes()],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_holds_the_ids_between_its_ends_and_no_others() {
        let id = |ms| EntryId::new(ms, 0);
        let proven = Attested(vec![(id(2), id(4)), (id(7), id(7)), (id(9), id(12))]);
        let held: Vec<u64> = (0..15).filter(|ms| proven.contains(&id(*ms))).collect();
        assert_eq!(held, [2, 3, 4, 7, 9, 10, 11, 12]);
        assert!(!Attested::default().contains(&id(1)));
    }
}
