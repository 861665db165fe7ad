//! Identifiers: node ids and stream entry ids.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::limits::MAX_NODE_ID_BYTES;

/// A node id: 1 to 128 bytes of ASCII letters, digits and `.`, `_`, `-`, `:`, `@`.
///
/// The character set keeps ids safe inside event fields (`rebalanced` lists `from>to=n`
/// separated by spaces) and in Redis key names. Cheap to clone (shared).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(Arc<str>);

/// Why a node id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeIdError {
    #[error("node id is empty")]
    Empty,
    #[error("node id is {0} bytes, longer than the limit of {MAX_NODE_ID_BYTES}")]
    TooLong(usize),
    #[error("node id contains {0:?}; allowed are ASCII letters, digits and . _ - : @")]
    BadChar(char),
}

impl NodeId {
    pub fn new(id: &str) -> Result<Self, NodeIdError> {
        if id.is_empty() {
            return Err(NodeIdError::Empty);
        }
        if id.len() > MAX_NODE_ID_BYTES {
            return Err(NodeIdError::TooLong(id.len()));
        }
        if let Some(bad) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '@')))
        {
            return Err(NodeIdError::BadChar(bad));
        }
        Ok(Self(Arc::from(id)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for NodeId {
    type Err = NodeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

/// A Redis stream entry id `ms-seq`: the log's total order and its only clock.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EntryId {
    pub ms: u64,
    pub seq: u64,
}

/// Why a stream entry id could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a stream entry id (expected <ms>-<seq>)")]
pub struct EntryIdError(pub String);

impl EntryId {
    pub const ZERO: EntryId = EntryId { ms: 0, seq: 0 };
    /// The largest id a stream can hold.
    pub const MAX: EntryId = EntryId {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    pub fn new(ms: u64, seq: u64) -> Self {
        Self { ms, seq }
    }

    /// The smallest id strictly greater than this one.
    pub fn next(self) -> Self {
        match self.seq.checked_add(1) {
            Some(seq) => Self { ms: self.ms, seq },
            None => Self {
                ms: self.ms.saturating_add(1),
                seq: 0,
            },
        }
    }
}

impl FromStr for EntryId {
    type Err = EntryIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || EntryIdError(s.to_owned());
        let (ms, seq) = s.split_once('-').ok_or_else(err)?;
        let ms = ms.parse().map_err(|_| err())?;
        let seq = seq.parse().map_err(|_| err())?;
        Ok(Self { ms, seq })
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl fmt::Debug for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_validated() {
        assert!(NodeId::new("node-1").is_ok());
        assert!(NodeId::new("worker_7.eu-west:8080@a").is_ok());
        assert_eq!(NodeId::new(""), Err(NodeIdError::Empty));
        assert_eq!(NodeId::new("a b"), Err(NodeIdError::BadChar(' ')));
        assert_eq!(NodeId::new("a>b"), Err(NodeIdError::BadChar('>')));
        assert_eq!(
            NodeId::new(&"x".repeat(129)),
            Err(NodeIdError::TooLong(129))
        );
    }

    #[test]
    fn entry_ids_parse_print_and_order() {
        let id: EntryId = "1700000000000-3".parse().unwrap();
        assert_eq!(id, EntryId::new(1_700_000_000_000, 3));
        assert_eq!(id.to_string(), "1700000000000-3");
        assert!(EntryId::new(1, 9) < EntryId::new(2, 0));
        assert_eq!(EntryId::new(1, u64::MAX).next(), EntryId::new(2, 0));
        assert!("12".parse::<EntryId>().is_err());
        assert!("a-1".parse::<EntryId>().is_err());
    }
}
