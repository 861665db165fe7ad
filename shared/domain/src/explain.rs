//! `explain`: the owners one key had over time, and why each change happened, computed from
//! the log. Folding a long log with the full placement would rebuild the ring at every change
//! of members (thousands of points each); one key only needs to know which member ranks first
//! for it, so [`KeyOwner`] ranks the members for that key alone (each member's rank hashed
//! once) and the fold runs deferred (membership, health and tokens are decided per entry;
//! the ring is never built). `assign` and `unassign` entries only say whether the key is
//! assigned: they are not folded (placement depends on the members alone). An assigned key
//! whose owner hands off stays with it until its release or a forced hand-off
//! (docs/adr/0016), by the same rule as the fold's, applied after every entry as the fold
//! does while hand-offs are possible.
//!
//! Tokens are the one thing one key cannot follow alone once keys hand off: a release or a
//! forced hand-off that moves *any* key raises every key's token floor (`crate::token`), and
//! whether it moved any depends on all keys. Load-aware placement (ADR 0018) decides on all
//! hot keys at once, too. So an [`Explainer`] that saw hand-offs or load placement become
//! possible says so ([`Explainer::needs_full_fold`]), and the caller explains again with
//! [`Explainer::full`], which folds the whole state (placement and key map, settled after
//! every entry, as the fold does while hand-offs are possible): the cost of a replay.

use std::collections::HashMap;

use crate::entry::{Command, LogEntry};
use crate::event::{Event, EventKind};
use crate::ids::{EntryId, NodeId};
use crate::origin::Origin;
use crate::placement::{Strategy, key_hash, point_hash, score, weighted};
use crate::state::State;

/// One owner of the key: from `at_ms` (the log entry `cause`) until the next item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    /// `None`: no node could own keys.
    pub node: Option<NodeId>,
    pub token: Option<u64>,
    pub at_ms: u64,
    pub cause: EntryId,
    /// The change, as a sentence.
    pub why: String,
}

/// The answer of `explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub key: String,
    /// Whether the key is assigned (distributed) now; otherwise only the ring places it.
    pub assigned: bool,
    pub history: Vec<Owned>,
    /// Its read replicas at the end of the log (ADR 0018): known only to a full fold, which
    /// runs whenever load placement could have given it any.
    pub replicas: Vec<NodeId>,
    /// Log entries read.
    pub entries: u64,
}

/// The owner of one key among any set of members, each member's rank for the key computed
/// once per (node, weight) and reused across changes of members.
#[derive(Debug)]
pub struct KeyOwner {
    hash: u64,
    strategy: Strategy,
    vnodes: u32,
    /// Ring: clockwise distance from the key to the member's nearest point; rendezvous: the
    /// member's raw score.
    ranks: HashMap<(NodeId, u32), u64>,
}

impl KeyOwner {
    pub fn new(key: &str) -> Self {
        Self {
            hash: key_hash(key),
            strategy: Strategy::Ring,
            vnodes: 0,
            ranks: HashMap::new(),
        }
    }

    fn rank(&mut self, node: &NodeId, weight: u32) -> u64 {
        let (hash, strategy, vnodes) = (self.hash, self.strategy, self.vnodes);
        *self
            .ranks
            .entry((node.clone(), weight))
            .or_insert_with(|| match strategy {
                Strategy::Ring => (0..vnodes.saturating_mul(weight))
                    .map(|i| point_hash(node, i).wrapping_sub(hash))
                    .min()
                    .unwrap_or(u64::MAX),
                Strategy::Rendezvous => {
                    score(hash, xxhash_rust::xxh3::xxh3_64(node.as_str().as_bytes()))
                }
            })
    }

    /// The owner the placement of `state`'s members would give the key, with the same
    /// tie-breaks as the placement (smaller node id).
    pub fn owner(&mut self, state: &State) -> Option<NodeId> {
        let policy = state.policy();
        if (policy.strategy, policy.vnodes) != (self.strategy, self.vnodes) {
            self.strategy = policy.strategy;
            self.vnodes = policy.vnodes;
            self.ranks.clear();
        }
        let members: Vec<(&NodeId, u32)> = state
            .nodes()
            .filter(|n| n.is_member())
            .map(|n| (&n.id, n.weight))
            .collect();
        let equal_weights = members.windows(2).all(|w| w[0].1 == w[1].1);
        let mut best: Option<(&NodeId, u64, f64)> = None;
        for (node, weight) in members {
            let rank = self.rank(node, weight);
            let better = match (&best, self.strategy) {
                (None, _) => true,
                // Nodes come sorted by id: only a strictly better rank replaces the best.
                (Some((_, r, _)), Strategy::Ring) => rank < *r,
                (Some((_, r, _)), Strategy::Rendezvous) if equal_weights => rank > *r,
                (Some((_, _, w)), Strategy::Rendezvous) => weighted(rank, weight) > *w,
            };
            if better {
                best = Some((node, rank, weighted(rank, weight)));
            }
        }
        best.map(|(n, _, _)| n.clone())
    }
}

/// Follows one key through the log, entry by entry.
#[derive(Debug)]
pub struct Explainer {
    key: String,
    owner: KeyOwner,
    state: State,
    /// Folds the whole state (see the module docs); otherwise members only.
    full: bool,
    /// The members-only fold saw a state in which keys could hand off or move for load: its
    /// owners and tokens may be wrong from then on.
    saw_hand_offs: bool,
    assigned: bool,
    /// The key's owner now (an assigned key's may differ from where the placement puts it
    /// while it is handing off).
    actual: Option<NodeId>,
    history: Vec<Owned>,
    entries: u64,
}

impl Explainer {
    /// Starts from `state` (a snapshot's, or the empty state), as of `base` (`None`: the
    /// beginning of the log).
    pub fn new(key: &str, state: State, base: Option<EntryId>) -> Self {
        Self::start(key, state.without_placement(), base, false)
    }

    /// Like [`Explainer::new`], folding the whole state: exact tokens when keys hand off, at
    /// the cost of a replay (the placement is rebuilt at every change of members).
    pub fn full(key: &str, state: State, base: Option<EntryId>) -> Self {
        Self::start(key, state, base, true)
    }

    fn start(key: &str, state: State, base: Option<EntryId>, full: bool) -> Self {
        let stored = state.keys().get(key).map(|o| o.cloned());
        let mut e = Self {
            assigned: stored.is_some(),
            key: key.to_owned(),
            owner: KeyOwner::new(key),
            saw_hand_offs: state.owners_beyond_members(),
            state,
            full,
            actual: None,
            history: Vec::new(),
            entries: 0,
        };
        e.actual = if full {
            e.full_owner()
        } else {
            stored.unwrap_or_else(|| e.owner.owner(&e.state))
        };
        if let Some(base) = base {
            let node = e.actual.clone();
            if node.is_some() {
                let token = node.as_ref().and_then(|n| e.state.token_of(n));
                e.history.push(Owned {
                    node,
                    token,
                    at_ms: base.ms,
                    cause: base,
                    why: "the owner when the log was compacted (history before it is trimmed)"
                        .to_owned(),
                });
            }
        }
        e
    }

    /// Whether this members-only explanation may show too small tokens, because keys could
    /// hand off: explain again with [`Explainer::full`].
    pub fn needs_full_fold(&self) -> bool {
        !self.full && self.saw_hand_offs
    }

    /// Folds one decoded log entry written by `origin`.
    pub fn entry(&mut self, id: EntryId, entry: &LogEntry, origin: Origin) {
        self.entries += 1;
        if self.full {
            return self.entry_full(id, entry, origin);
        }
        match &entry.command {
            Command::Assign { keys } => {
                self.assigned |= keys.contains(&self.key);
                return;
            }
            Command::Unassign { keys } => {
                self.assigned &= !keys.contains(&self.key);
                return;
            }
            _ => {}
        }
        let Ok(applied) = self.state.apply_deferred_from(id, entry, origin) else {
            return;
        };
        self.saw_hand_offs |= self.state.owners_beyond_members();
        let placed = self.owner.owner(&self.state);
        let node = if self.assigned {
            self.owner_after(&entry.command, placed)
        } else {
            placed
        };
        self.actual = node.clone();
        let token = node.as_ref().and_then(|n| self.state.token_if_owner(n));
        self.record(id, &applied.events, node, token);
    }

    /// [`Explainer::entry`] of the whole state: applied and settled, as the fold does while
    /// keys can hand off.
    fn entry_full(&mut self, id: EntryId, entry: &LogEntry, origin: Origin) {
        let Ok(applied) = self.state.apply_from(id, entry, origin) else {
            return;
        };
        self.assigned = self.state.keys().get(&self.key).is_some();
        let node = self.full_owner();
        let token = node.as_ref().and_then(|n| self.state.token_if_owner(n));
        self.actual = node.clone();
        self.record(id, &applied.events, node, token);
    }

    /// The key's owner in the whole state: the committed owner of an assigned key, else where
    /// the placement puts it.
    fn full_owner(&self) -> Option<NodeId> {
        match self.state.keys().get(&self.key) {
            Some(owner) => owner.cloned(),
            None => self.state.placement().owner(&self.key).cloned(),
        }
    }

    /// Adds `node` to the history when it is a new owner (`events`: what entry `id` did).
    fn record(&mut self, id: EntryId, events: &[Event], node: Option<NodeId>, token: Option<u64>) {
        let current = self.history.last().map(|o| o.node.clone());
        if current.as_ref() == Some(&node) || (current.is_none() && node.is_none()) {
            return;
        }
        let why = why(events, current.flatten().as_ref(), node.as_ref());
        self.history.push(Owned {
            node,
            token,
            at_ms: id.ms,
            cause: id,
            why,
        });
    }

    /// The assigned key's owner after `command`, where the placement now puts it at
    /// `placed`: the fold's hand-off rule for one key.
    fn owner_after(&self, command: &Command, placed: Option<NodeId>) -> Option<NodeId> {
        let Some(owner) = self.actual.clone() else {
            return placed;
        };
        if Some(&owner) == placed.as_ref() || !self.state.can_hand_off(&owner) {
            return placed;
        }
        // Handing off: it moves only when its owner releases it or is forced to.
        match command {
            Command::Released { node, keys } if *node == owner && keys.contains(&self.key) => {
                placed
            }
            Command::HandoffForced { node } if *node == owner => placed,
            _ => Some(owner),
        }
    }

    pub fn finish(self) -> Explanation {
        let replicas = self.state.load_plan().replicas_of(&self.key).to_vec();
        Explanation {
            key: self.key,
            assigned: self.assigned,
            history: self.history,
            replicas,
            entries: self.entries,
        }
    }
}

/// Why the owner changed from `from` to `to`: the event of the entry that did it, as a
/// sentence, and where placement put the key.
fn why(events: &[Event], from: Option<&NodeId>, to: Option<&NodeId>) -> String {
    let about = |n: &NodeId| {
        events
            .iter()
            .find(|e| e.kind.node().is_some_and(|(x, _)| x == n))
    };
    let cause = from
        .and_then(about)
        .or_else(|| to.and_then(about))
        .or_else(|| events.first())
        .map(|e| describe(&e.kind));
    let placed = match to {
        Some(to) => format!("placement moved it to {to}"),
        None => "no node can own keys now".to_owned(),
    };
    match (from, cause) {
        (None, Some(cause)) if to.is_some() => format!("{cause}; placement gave it to {}", opt(to)),
        (_, Some(cause)) => format!("{cause}; {placed}"),
        (_, None) => placed,
    }
}

fn opt(n: Option<&NodeId>) -> &str {
    n.map_or("nobody", NodeId::as_str)
}

fn describe(kind: &EventKind) -> String {
    match kind {
        EventKind::Joined { node, .. } => format!("{node} joined"),
        EventKind::Ready { node, .. } => format!("{node} answered its first probe"),
        EventKind::Left { node, .. } => format!("{node} left"),
        EventKind::Died { node, fails, .. } => {
            format!("{node} died: {fails} failed probes in a row")
        }
        EventKind::Revived {
            node, successes, ..
        } => {
            format!("{node} came back: {successes} good probes in a row")
        }
        EventKind::Recovered { node, .. } => format!("{node} recovered"),
        EventKind::Drained { node, .. } => format!("{node} was drained"),
        EventKind::Undrained { node, .. } => format!("{node} was undrained"),
        EventKind::WeightChanged {
            node,
            weight,
            previous,
            ..
        } => format!("{node}'s weight changed from {previous} to {weight}"),
        EventKind::PanicStarted { node, .. } => {
            format!("{node} died, but the panic threshold keeps its keys")
        }
        EventKind::PanicEnded { .. } => {
            "enough nodes are back: the panic threshold let go".to_owned()
        }
        EventKind::Damped { node, .. } => format!("{node} flapped and was damped"),
        EventKind::Undamped { node, .. } => format!("{node}'s damping ended"),
        EventKind::PolicyChanged { .. } => "the placement policy changed".to_owned(),
        EventKind::HandedOff { node, .. } => format!("{node} handed it over with its state"),
        EventKind::HandoffForced { node, .. } => {
            format!("{node} did not release it within the hand-off timeout")
        }
        EventKind::HandoffStarted { node, .. } => format!("{node} was asked to hand it over"),
        EventKind::LoadBalanced { busiest, .. } => format!(
            "moved for load: the busiest node was at {busiest}% of the mean, above the policy's band"
        ),
        other => format!("{} happened", other.name()),
    }
}
