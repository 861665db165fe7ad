//! A Redis that came back empty (docs/adr/0012-redis-that-comes-back-empty.md).
//!
//! A Redis without persistence that restarts loses the log, the read models and the
//! checkpoint. The projector leader still holds the state it folded: it writes that state back
//! as the base of a new log generation whose first entry is a `restored` marker. The fold turns
//! the marker into the `restored` event, so consumers and the audit see the loss; the state
//! itself is already in the base snapshot, so the marker changes nothing else.

use crate::entry::{Command, DecodeError};
use crate::ids::EntryId;
use crate::wire::Fields;

/// `restored`: the leader re-seeded an emptied Redis with the state it held, folded up to
/// `previous` (the last entry it applied in the lost log), with `nodes` nodes and `keys` keys.
/// `archive` names the key holding the entries written to the empty Redis before the re-seed
/// (moved after the marker with fresh ids), when there were any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub previous: EntryId,
    pub nodes: u64,
    pub keys: u64,
    pub archive: Option<String>,
}

pub(crate) fn decode_restored(f: &Fields<'_>) -> Result<Command, DecodeError> {
    f.only(
        "restored",
        &crate::entry::allowed(&["previous", "nodes", "keys", "archive"]),
    )?;
    let raw = f.req("previous")?;
    let previous = raw.parse().map_err(|_| DecodeError::BadEntryId {
        field: "previous",
        value: crate::wire::clip(raw),
    })?;
    Ok(Command::Restored(Restored {
        previous,
        nodes: f
            .opt_num("nodes")?
            .ok_or(DecodeError::MissingField("nodes"))?,
        keys: f
            .opt_num("keys")?
            .ok_or(DecodeError::MissingField("keys"))?,
        archive: f.opt("archive")?.map(str::to_owned),
    }))
}

impl Restored {
    pub(crate) fn encode(&self, out: &mut Vec<(&'static str, String)>) {
        out.push(("previous", self.previous.to_string()));
        out.push(("nodes", self.nodes.to_string()));
        out.push(("keys", self.keys.to_string()));
        if let Some(archive) = &self.archive {
            out.push(("archive", archive.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::entry::{Command, LogEntry};
    use crate::event::EventKind;
    use crate::{EntryId, State};

    use super::Restored;

    fn marker(archive: Option<&str>) -> LogEntry {
        LogEntry::new(Command::Restored(Restored {
            previous: EntryId {
                ms: 1_700_000_000_000,
                seq: 3,
            },
            nodes: 14,
            keys: 2_000,
            archive: archive.map(str::to_owned),
        }))
    }

    #[test]
    fn the_marker_round_trips_with_and_without_an_archive() {
        for entry in [marker(None), marker(Some("pantheon:{c}:log:gen:5-0"))] {
            let encoded = entry.encode();
            let pairs: Vec<(&[u8], &[u8])> = encoded
                .iter()
                .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
                .collect();
            assert_eq!(LogEntry::decode(&pairs).unwrap(), entry);
        }
    }

    #[test]
    fn given_a_state_when_the_marker_is_folded_then_only_a_restored_event_is_emitted() {
        let mut state = State::default();
        let before = state.checksum();
        let out = state
            .apply(EntryId { ms: 5, seq: 0 }, &marker(None))
            .unwrap();
        assert_eq!(out.events.len(), 1);
        assert!(matches!(
            out.events[0].kind,
            EventKind::Restored {
                nodes: 14,
                keys: 2_000,
                ..
            }
        ));
        assert_eq!(state.checksum(), before);
    }
}
