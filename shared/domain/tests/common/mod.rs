//! Builders shared by the domain's test files.
#![allow(dead_code)]

use pantheon_domain::entry::{Command, LogEntry, ProbeResult};
use pantheon_domain::{Applied, EntryId, NodeId, Rejection, State};

pub fn node(id: &str) -> NodeId {
    NodeId::new(id).expect("valid node id")
}

pub fn join(id: &str) -> LogEntry {
    LogEntry::new(Command::Join {
        node: node(id),
        url: format!("http://{id}.local:8080/health"),
        weight: None,
        handoff: false,
    })
}

pub fn join_weighted(id: &str, weight: u32) -> LogEntry {
    LogEntry::new(Command::Join {
        node: node(id),
        url: format!("http://{id}.local:8080/health"),
        weight: Some(weight),
        handoff: false,
    })
}

pub fn leave(id: &str) -> LogEntry {
    LogEntry::new(Command::Leave { node: node(id) })
}

pub fn assign(keys: impl IntoIterator<Item = String>) -> LogEntry {
    LogEntry::new(Command::Assign {
        keys: keys.into_iter().collect(),
    })
}

pub fn probe(id: &str, epoch: u64, ok: bool) -> LogEntry {
    LogEntry::new(Command::Probe(ProbeResult {
        node: node(id),
        epoch,
        ok,
        status: ok.then_some(200),
        latency_ms: 3,
        error: (!ok).then_some(pantheon_domain::health::ProbeError::Refused),
        prober: Some("p1".into()),
    }))
}

pub fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user:{i}")).collect()
}

#[derive(Debug)]
/// A state plus a log clock: every entry gets the next id, 1 ms apart.
pub struct Scenario {
    pub state: State,
    pub clock: u64,
}

impl Scenario {
    /// A state after `entries`. A node joined here has also answered its first probe (it is
    /// `alive` and owns keys), as every node of a running cluster has: the tests of joining
    /// itself use [`Scenario::when`], which applies exactly the entry it is given.
    pub fn given(entries: impl IntoIterator<Item = LogEntry>) -> Self {
        let mut s = Scenario {
            state: State::default(),
            clock: 1_700_000_000_000,
        };
        for e in entries {
            s.when(&e).expect("given entries apply");
            if let Command::Join { node, .. } = &e.command {
                s.answer(node.as_str());
            }
        }
        s
    }

    /// The first successful probe of a joining node: it becomes `alive` (a `ready` event).
    pub fn answer(&mut self, id: &str) -> Applied {
        let epoch = self.state.node(&node(id)).expect("joined").epoch;
        self.when(&probe(id, epoch, true)).expect("probe applies")
    }

    pub fn next_id(&mut self) -> EntryId {
        self.clock += 1;
        EntryId::new(self.clock, 0)
    }

    pub fn when(&mut self, entry: &LogEntry) -> Result<Applied, Rejection> {
        let id = self.next_id();
        self.state.apply(id, entry)
    }

    pub fn event_names(applied: &Applied) -> Vec<&'static str> {
        applied.events.iter().map(|e| e.kind.name()).collect()
    }

    pub fn owner(&self, key: &str) -> Option<String> {
        self.state.keys().get(key).flatten().map(|n| n.to_string())
    }

    /// Every assigned key's stored owner equals what the placement says now.
    pub fn assert_keymap_consistent(&self) {
        for (key, owner) in self.state.keys().iter() {
            assert_eq!(owner, self.state.placement().owner(key), "key {key}");
        }
    }
}
