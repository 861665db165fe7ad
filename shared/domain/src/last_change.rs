//! A node's last change: what its latest transition was (`joined`, `died`, ...), kept
//! with the entry that caused it ([`crate::state::Node::since`]) and shown by `nodes`.

use std::fmt;
use std::str::FromStr;

/// A node's latest transition; stored in the node read model (`last`) by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LastChange {
    Joined,
    Ready,
    Suspect,
    Died,
    Revived,
    Recovered,
    Drained,
    Undrained,
    WeightChanged,
    Left,
}

impl LastChange {
    /// Every kind, in the order a node usually goes through them.
    pub const ALL: [LastChange; 10] = [
        LastChange::Joined,
        LastChange::Ready,
        LastChange::Suspect,
        LastChange::Died,
        LastChange::Revived,
        LastChange::Recovered,
        LastChange::Drained,
        LastChange::Undrained,
        LastChange::WeightChanged,
        LastChange::Left,
    ];

    /// Its name: the name of the event that made it.
    pub fn as_str(self) -> &'static str {
        match self {
            LastChange::Joined => "joined",
            LastChange::Ready => "ready",
            LastChange::Suspect => "suspect",
            LastChange::Died => "died",
            LastChange::Revived => "revived",
            LastChange::Recovered => "recovered",
            LastChange::Drained => "drained",
            LastChange::Undrained => "undrained",
            LastChange::WeightChanged => "weight_changed",
            LastChange::Left => "left",
        }
    }
}

impl fmt::Display for LastChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LastChange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LastChange::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown last change {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in LastChange::ALL {
            assert_eq!(t.as_str().parse::<LastChange>(), Ok(t));
        }
        assert!("exploded".parse::<LastChange>().is_err());
    }
}
