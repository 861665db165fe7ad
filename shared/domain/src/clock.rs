//! The log's clock and how it is protected (docs/adr/0009-a-clock-that-cannot-be-poisoned.md).
//!
//! Time in the fold is the entry id. A producer that writes an explicit id far in the future
//! (`XADD log 99999999999999-0 ...`) moves every later id there too: Redis gives each new
//! entry an id above the largest so far. The projector sees that against Redis's own clock
//! and logs a `clock_skew` entry (the fold turns it into the `clock_skew` event); the
//! operator moves the log to a new generation (`pantheon recover-clock`), whose first entry
//! is a `generation` marker. Both entries are decided here, deterministically.
//!
//! Health does not read time (deaths and revivals count probe results), so a poisoned id
//! cannot stop a dead node from dying. Flap damping reads it: a poisoned id moves log time
//! forward once (as a long quiet spell would), then time stands still until the new
//! generation, which moves penalties stamped in the poisoned future back to its start.

use crate::entry::{Command, DecodeError};
use crate::ids::EntryId;
use crate::wire::Fields;

/// `clock_skew`: entry `entry` was `skew_ms` ahead of Redis's clock when the projector read
/// it (written by the projector leader).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockSkew {
    pub entry: EntryId,
    pub skew_ms: u64,
}

/// `generation`: the first entry of a new log generation. The previous log, whose last entry
/// was `previous`, was archived under the key `archive`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    pub previous: EntryId,
    pub archive: String,
}

fn entry_id(f: &Fields<'_>, name: &'static str) -> Result<EntryId, DecodeError> {
    let raw = f.req(name)?;
    raw.parse().map_err(|_| DecodeError::BadEntryId {
        field: name,
        value: crate::wire::clip(raw),
    })
}

pub(crate) fn decode_clock_skew(f: &Fields<'_>) -> Result<Command, DecodeError> {
    f.only("clock_skew", &crate::entry::allowed(&["entry", "skew_ms"]))?;
    Ok(Command::ClockSkew(ClockSkew {
        entry: entry_id(f, "entry")?,
        skew_ms: f
            .opt_num("skew_ms")?
            .ok_or(DecodeError::MissingField("skew_ms"))?,
    }))
}

pub(crate) fn decode_generation(f: &Fields<'_>) -> Result<Command, DecodeError> {
    f.only(
        "generation",
        &crate::entry::allowed(&["previous", "archive"]),
    )?;
    Ok(Command::Generation(Generation {
        previous: entry_id(f, "previous")?,
        archive: f.req("archive")?.to_owned(),
    }))
}

impl ClockSkew {
    pub(crate) fn encode(&self, out: &mut Vec<(&'static str, String)>) {
        out.push(("entry", self.entry.to_string()));
        out.push(("skew_ms", self.skew_ms.to_string()));
    }
}

impl Generation {
    pub(crate) fn encode(&self, out: &mut Vec<(&'static str, String)>) {
        out.push(("previous", self.previous.to_string()));
        out.push(("archive", self.archive.clone()));
    }
}
