//! Client command ids (`cmd`): the window of recent ids that makes retries safe, and what
//! tells a retry apart from a different entry that reuses an id.
//!
//! A retry repeats the same entry under the same `cmd`: it is applied once. A *different*
//! entry under a recent `cmd` is a producer bug (or two producers sharing an id generator);
//! treating it as a duplicate would drop it silently, so the fold refuses it instead. To tell
//! the two apart, each recorded id keeps a digest of the entry's content.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;

use xxhash_rust::xxh3::Xxh3;

use crate::entry::LogEntry;
use crate::ids::EntryId;
use crate::limits::CMD_DEDUP_WINDOW;

/// The entry that applied a client command id, and a digest of its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordedCmd {
    pub id: EntryId,
    /// `None` for ids recorded by builds that kept no digest: a reuse of one of those is
    /// treated as a retry, as those builds did.
    pub digest: Option<u64>,
}

impl RecordedCmd {
    pub fn new(id: EntryId, entry: &LogEntry) -> Self {
        Self {
            id,
            digest: Some(content_digest(entry)),
        }
    }

    /// Whether `entry` may be a retry of the recorded one.
    pub fn matches(&self, entry: &LogEntry) -> bool {
        self.digest.is_none_or(|d| d == content_digest(entry))
    }
}

/// Stored as `<entry id>` or `<entry id> <digest as 16 hex digits>`.
impl fmt::Display for RecordedCmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.digest {
            Some(d) => write!(f, "{} {d:016x}", self.id),
            None => write!(f, "{}", self.id),
        }
    }
}

impl FromStr for RecordedCmd {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (id, digest) = match s.split_once(' ') {
            Some((id, d)) => (
                id,
                Some(u64::from_str_radix(d, 16).map_err(|_| format!("bad digest {d:?}"))?),
            ),
            None => (s, None),
        };
        let id = id.parse().map_err(|_| format!("bad entry id {id:?}"))?;
        Ok(Self { id, digest })
    }
}

/// xxh3-64 over the entry's wire fields without `v` and `cmd`: equal for a retry, different
/// for any other command.
pub fn content_digest(entry: &LogEntry) -> u64 {
    let mut h = Xxh3::new();
    for (field, value) in entry.encode() {
        if field == "v" || field == "cmd" {
            continue;
        }
        h.update(field.as_bytes());
        h.update(&[0]);
        h.update(&(value.len() as u64).to_le_bytes());
        h.update(value.as_bytes());
    }
    h.digest()
}

/// The last [`CMD_DEDUP_WINDOW`] client command ids, oldest first.
#[derive(Debug, Clone, Default)]
pub(crate) struct CmdWindow {
    recent: VecDeque<(String, EntryId)>,
    index: HashMap<String, RecordedCmd>,
}

impl CmdWindow {
    pub fn get(&self, cmd: &str) -> Option<&RecordedCmd> {
        self.index.get(cmd)
    }

    pub fn len(&self) -> usize {
        self.recent.len()
    }

    /// Oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (&str, RecordedCmd)> {
        self.recent
            .iter()
            .filter_map(|(c, _)| self.index.get(c).map(|r| (c.as_str(), *r)))
    }

    /// Forgets every id; returns them.
    pub fn clear(&mut self) -> Vec<String> {
        self.index.clear();
        self.recent.drain(..).map(|(c, _)| c).collect()
    }

    /// Records `cmd`; returns the ids it pushed out of the window.
    pub fn remember(&mut self, cmd: &str, record: RecordedCmd) -> Vec<String> {
        self.index.insert(cmd.to_owned(), record);
        self.recent.push_back((cmd.to_owned(), record.id));
        let mut evicted = Vec::new();
        while self.recent.len() > CMD_DEDUP_WINDOW {
            if let Some((old, _)) = self.recent.pop_front() {
                self.index.remove(&old);
                evicted.push(old);
            }
        }
        evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Command;
    use crate::ids::NodeId;

    fn leave(node: &str) -> LogEntry {
        LogEntry::new(Command::Leave {
            node: NodeId::new(node).unwrap(),
        })
    }

    #[test]
    fn a_retry_matches_and_a_different_entry_does_not() {
        let id = EntryId { ms: 5, seq: 1 };
        let recorded = RecordedCmd::new(id, &leave("a").with_cmd("c1"));
        assert!(recorded.matches(&leave("a").with_cmd("c1")));
        assert!(!recorded.matches(&leave("b").with_cmd("c1")));
    }

    #[test]
    fn stored_form_round_trips_and_old_values_parse() {
        let recorded = RecordedCmd::new(EntryId { ms: 7, seq: 0 }, &leave("a"));
        assert_eq!(recorded.to_string().parse::<RecordedCmd>(), Ok(recorded));
        let old: RecordedCmd = "7-0".parse().unwrap();
        assert_eq!(old.digest, None);
        assert!(old.matches(&leave("zzz")));
        assert!("7-0 nothex".parse::<RecordedCmd>().is_err());
        assert!("x".parse::<RecordedCmd>().is_err());
    }
}
