//! The fold: `State::apply(entry_id, entry)` decides what an entry means given everything
//! before it, and returns the events and read-model changes. Pure and deterministic: no clock
//! (time is the entry id), no randomness, no I/O.

use std::collections::{BTreeMap, BTreeSet};

use crate::digest::Digest;

use crate::clock::Generation;
use crate::cmds::{CmdWindow, RecordedCmd};
use crate::damping::Penalty;
use crate::entry::{Command, DecodeError, LogEntry, ProbeResult};
use crate::event::{Event, EventKind, Flow};
use crate::handoff::Handing;
use crate::health::{Health, NodeHealth, Transition};
use crate::ids::{EntryId, NodeId};
use crate::keys::Keys;
use crate::last_change::LastChange;
use crate::limits::{MAX_NODES, MAX_RING_POINTS};
use crate::load::{Loads, Plan};
use crate::origin::Origin;
use crate::placement::{self, Member, Placement};
use crate::policy::{Policy, PolicyChange};
use crate::token::Tokens;

mod loads;
mod node_table;

pub(crate) use node_table::NodeTable;

/// A node as the fold knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: NodeId,
    pub url: String,
    pub weight: u32,
    /// Cluster-wide join counter value of this node's latest join.
    pub epoch: u64,
    pub health: NodeHealth,
    pub draining: bool,
    /// The entry that caused the last transition, and what it was (`joined`, `died`, ...).
    pub since: EntryId,
    pub last: LastChange,
    /// Dead, but kept in placement with its keys by the panic threshold (see
    /// [`Policy::panic`]).
    pub held: bool,
    /// Flap damping: the penalty of its deaths, and whether it is damped (kept out of
    /// placement even while healthy; see [`crate::damping`]).
    pub penalty: Penalty,
    pub damped: bool,
    /// The token clock's value when the node last became a member (0: never); its keys'
    /// token is the larger of this and the floor (see [`crate::token`]).
    pub token: u64,
    /// Joined with `handoff`: a planned move waits until it released the keys (see
    /// [`crate::handoff`]).
    pub hands_off: bool,
}

impl Node {
    /// Whether the node owns keys: alive or suspect, and not draining; or held by the panic
    /// threshold. A joining node owns nothing until its first probe answered.
    pub fn is_member(&self) -> bool {
        !self.draining && !self.is_joining() && (!self.is_out_for_health() || self.held)
    }

    /// Joined, and its health endpoint has not answered yet in this epoch.
    pub fn is_joining(&self) -> bool {
        self.health.health == Health::Joining
    }

    /// Dead, or damped: placement takes it out for its health (unless the panic threshold
    /// holds it).
    pub fn is_out_for_health(&self) -> bool {
        self.health.health == Health::Dead || self.damped
    }

    /// The state shown to users: `draining` overrides health.
    pub fn state(&self) -> &'static str {
        if self.draining {
            "draining"
        } else {
            self.health.health.as_str()
        }
    }
}

/// Why a decoded entry was refused. The state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("unknown node {0:?}")]
    UnknownNode(NodeId),
    #[error("cluster already has {MAX_NODES} nodes")]
    TooManyNodes,
    #[error(
        "the ring would have {points} points (total weight × vnodes), more than the limit of {max}"
    )]
    RingTooLarge { points: u64, max: u64 },
    #[error("probe of {node:?} names epoch {epoch}, which no join has created yet")]
    FutureEpoch { node: NodeId, epoch: u64 },
    #[error("damp_reuse ({reuse}) must be below damp_suppress ({suppress}) while damping is on")]
    BadDamping { reuse: u32, suppress: u32 },
    #[error("cmd {cmd:?} was already used by entry {first} for a different entry")]
    CmdReused { cmd: String, first: EntryId },
    #[error("{0:?} is not handing off {1} of the keys it released")]
    NotHandingOff(NodeId, usize),
    #[error(
        "a {kind} entry is written only by the service, and this one was not appended by a \
         service process (a plain XADD cannot prove it; see docs/adr/0011-service-entries-and-joining.md)"
    )]
    NotFromService { kind: &'static str },
}

/// Refuses damping settings under which a damped node could never be undamped.
fn check_damping(p: &Policy) -> Result<(), Rejection> {
    if p.damp_penalty > 0 && p.damp_reuse >= p.damp_suppress {
        return Err(Rejection::BadDamping {
            reuse: p.damp_reuse,
            suppress: p.damp_suppress,
        });
    }
    Ok(())
}

/// A change to an assigned key's owner (`None` = no owner: no node can take keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyChange {
    Added {
        key: String,
        owner: Option<NodeId>,
    },
    Moved {
        key: String,
        from: Option<NodeId>,
        to: Option<NodeId>,
    },
    Removed {
        key: String,
        owner: Option<NodeId>,
    },
    /// A planned move asks `from` (a node that hands off) to release the key, which the
    /// placement now gives to `to`; `from` still owns it (see [`crate::handoff`]).
    HandoffAsked {
        key: String,
        from: NodeId,
        to: Option<NodeId>,
    },
    /// `from` released the key it was handing off, with its state: it moved to `to`.
    HandedOver {
        key: String,
        from: NodeId,
        to: Option<NodeId>,
    },
    /// `owner` released a key it was no longer asked to hand off (the move was undone): it
    /// still owns it, and its feed says so again (an `acquire` from nobody).
    Kept {
        key: String,
        owner: NodeId,
    },
}

/// What applying an entry did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub events: Vec<Event>,
    pub key_changes: Vec<KeyChange>,
    /// Nodes whose record changed (look them up: absent means the node left).
    pub nodes_changed: Vec<NodeId>,
    /// The set of members or their weights changed, or the placement settings.
    pub ring_changed: bool,
    /// Set when the entry repeats a recent client command id: it was not applied again.
    pub duplicate_of: Option<EntryId>,
    /// Set when the entry is a probe of an older epoch (or a node that left): ignored.
    pub stale: bool,
    /// The client command id recorded for de-duplication, and the ids it pushed out of the
    /// window (the read model of the window must follow).
    pub cmd_recorded: Option<(String, RecordedCmd)>,
    pub cmds_evicted: Vec<String>,
    /// Keys whose read replicas changed (load-aware placement, ADR 0018).
    pub replicas_changed: Vec<String>,
    /// Load read models to write again (ADR 0018): nodes whose reported hot keys changed,
    /// keys whose load move or replicas changed, whether the nodes settling after a round or
    /// above the band changed, and whether a round ran (its time is written apart: at
    /// 10,000 nodes the nodes above the band are tens of kilobytes, and most rounds leave
    /// them as they were).
    pub key_loads_changed: Vec<NodeId>,
    /// Nodes whose reported load changed, sorted, each once (their `node_loads` field is
    /// written again; the node record is not: at 10,000 nodes a `loads` entry names
    /// hundreds of nodes, and rewriting each whole record was most of its cost).
    pub node_loads_changed: Vec<NodeId>,
    pub plan_changed: Vec<String>,
    pub load_meta_changed: bool,
    pub load_round_changed: bool,
    /// Keys that move are not listed in `key_changes` (set by [`State::settle_unlisted`]).
    unlisted: bool,
}

/// The whole decided state of one cluster.
pub struct State {
    policy: Policy,
    nodes: NodeTable,
    next_epoch: u64,
    keys: Keys,
    placement: Box<dyn Placement>,
    cmds: CmdWindow,
    /// Live prober replicas, sorted; `None` until the first `probers` entry.
    probers: Option<Vec<String>>,
    /// The latest entry that changed who should be in the placement, while the placement
    /// does not reflect it yet (see [`State::apply_deferred`] and [`State::settle`]).
    pending: Option<EntryId>,
    /// Some node is held by the panic threshold (kept here, not only derived from the nodes,
    /// so a held node that leaves or re-joins still ends the panic with an event).
    panicking: bool,
    /// Damped nodes by the log time (ms) their penalty reaches the reuse limit.
    damped_until: BTreeSet<(u64, NodeId)>,
    tokens: Tokens,
    /// Assigned keys whose owner is handing them off (derived: owner, placement and node
    /// states say so; rebuilt on restore).
    handing: Handing,
    /// Nodes joined with `handoff` (so the fold knows without a pass over the nodes whether
    /// it must settle entry by entry).
    handoff_nodes: usize,
    /// Set by a release or forced hand-off that moved keys: the token floor rises with it.
    handed_in_entry: bool,
    /// Explain's fold: owners are computed per key elsewhere, the placement is never built.
    placement_off: bool,
    /// Reported node and hot-key loads, and where load-aware placement put hot keys.
    loads: Loads,
    plan: Plan,
    /// Keys a load round moved, for the rebalance that follows it in the same entry.
    load_listed: Vec<(u64, Box<str>)>,
    /// The checksum's hash of the policy and the nodes, with the policy, epoch counter and
    /// node table version it was taken of (see [`State::nodes_digest`]).
    nodes_digest: std::sync::Mutex<Option<NodesDigestOf>>,
}

/// What the kept hash of the nodes was taken of: the policy, the epoch counter, the node
/// table's version.
type NodesDigestOf = ((Policy, u64, u64), Digest);

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("policy", &self.policy)
            .field("nodes", &self.nodes.len())
            .field("keys", &self.keys.len())
            .field("checksum", &format_args!("{:016x}", self.checksum()))
            .finish()
    }
}

impl Default for State {
    fn default() -> Self {
        Self::new(Policy::default())
    }
}

impl State {
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            nodes: NodeTable::default(),
            next_epoch: 1,
            keys: Keys::default(),
            placement: placement::build(policy.strategy, policy.vnodes, Vec::new()),
            cmds: CmdWindow::default(),
            probers: None,
            pending: None,
            panicking: false,
            damped_until: BTreeSet::new(),
            tokens: Tokens::default(),
            handing: Handing::default(),
            handoff_nodes: 0,
            handed_in_entry: false,
            placement_off: false,
            loads: Loads::default(),
            plan: Plan::default(),
            load_listed: Vec::new(),
            nodes_digest: std::sync::Mutex::new(None),
        }
    }

    /// A state for folding without key placement (`explain`): members, health and tokens are
    /// decided as usual, but settling never builds the placement.
    pub fn without_placement(mut self) -> Self {
        self.placement_off = true;
        self
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// How many nodes there are (joined, not left), without a pass over them.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    pub fn node(&self, id: &NodeId) -> Option<&Node> {
        self.nodes.get(id)
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn placement(&self) -> &dyn Placement {
        &*self.placement
    }

    /// The token clock and floor (see [`crate::token`]).
    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// The token of the keys `node` owns; `None` when it owns none (not a member).
    pub fn token_of(&self, node: &NodeId) -> Option<u64> {
        self.nodes
            .get(node)
            .filter(|n| n.is_member() || self.handing.has(node))
            .map(|n| self.tokens.of(n))
    }

    /// The token `node`'s keys would have (whether it owns any or not); `None` when it is not
    /// joined.
    pub fn token_if_owner(&self, node: &NodeId) -> Option<u64> {
        self.nodes.get(node).map(|n| self.tokens.of(n))
    }

    /// The assigned keys each node is handing off (see [`crate::handoff`]).
    pub fn handing_off(&self) -> &Handing {
        &self.handing
    }

    /// Whether a key owned by `node` waits for it to release it when a planned move gives it
    /// to another node: it joined with `handoff`, is neither dead nor damped, and the policy's
    /// `handoff_timeout` is above 0.
    pub fn can_hand_off(&self, node: &NodeId) -> bool {
        self.policy.handoff_timeout > 0
            && self
                .nodes
                .get(node)
                .is_some_and(|n| n.hands_off && !n.is_out_for_health() && !n.is_joining())
    }

    /// Whether keys can hand off at all: then the fold settles after every entry that may
    /// change the members, so where the projector cuts its batches cannot change the outcome.
    fn settles_each_entry(&self) -> bool {
        self.handoff_nodes > 0 && self.policy.handoff_timeout > 0
    }

    /// Whether keys can hand off in this state: some node joined with `handoff` and the
    /// policy's `handoff_timeout` is above 0.
    pub fn hand_offs_possible(&self) -> bool {
        self.settles_each_entry()
    }

    /// Whether a key's owner (or its token) may depend on more than the members: keys can
    /// hand off, or load-aware placement is on or has moved keys. `explain` then folds the
    /// whole state.
    pub fn owners_beyond_members(&self) -> bool {
        self.hand_offs_possible() || self.policy.load_epsilon > 0 || !self.plan.is_empty()
    }

    /// The owner of `key` and its token: the committed owner of an assigned key, else where
    /// the placement puts it. `None` when no node can own keys.
    pub fn owner_with_token(&self, key: &str) -> Option<(&NodeId, u64)> {
        let owner = match self.keys.get(key) {
            Some(owner) => owner?,
            None => self.placement.owner(key)?,
        };
        Some((owner, self.token_of(owner)?))
    }

    /// Sets the token clock and floor when restoring a state (see [`State::restore`]).
    pub fn restore_tokens(&mut self, clock: u64, floor: u64) {
        self.tokens = Tokens::restore(clock, floor, self.nodes.values());
    }

    /// Sets the loads and the load plan when restoring a state (see [`State::restore`]).
    pub fn restore_loads(&mut self, loads: Loads, plan: Plan) {
        self.loads = loads;
        self.plan = plan;
        self.handing = Handing::derive(self);
    }

    /// The loads reported so far (ADR 0018).
    pub fn loads(&self) -> &Loads {
        &self.loads
    }

    /// Where load-aware placement put hot keys: owners it moved and read replicas.
    pub fn load_plan(&self) -> &Plan {
        &self.plan
    }

    /// Where `key` should be owned now: where load-aware placement moved it (while that node
    /// is a member), else where the placement puts it.
    pub fn target_owner(&self, key: &str, hash: u64) -> Option<&NodeId> {
        target_in(&*self.placement, &self.plan, key, hash)
    }

    /// The live prober replicas as last reported (`None`: never reported).
    pub fn probers(&self) -> Option<&[String]> {
        self.probers.as_deref()
    }

    /// Sets the prober set when restoring a state (see [`State::restore`]).
    pub fn restore_probers(&mut self, probers: Option<Vec<String>>) {
        self.probers = probers;
    }

    /// The earliest log time (ms) at which a damped node is due to be undamped, if any node
    /// is damped.
    pub fn next_undamp(&self) -> Option<u64> {
        self.damped_until.first().map(|(at, _)| *at)
    }

    /// The epoch the next join will get.
    pub fn next_epoch(&self) -> u64 {
        self.next_epoch
    }

    /// Recent client command ids, oldest first, with the entry that applied each.
    pub fn recent_cmds(&self) -> impl Iterator<Item = (&str, RecordedCmd)> {
        self.cmds.iter()
    }

    /// Decodes raw stream fields and applies them.
    pub fn apply_raw<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &mut self,
        id: EntryId,
        fields: &[(K, V)],
        origin: Origin,
    ) -> Result<Applied, Rejection> {
        let entry = LogEntry::decode(fields)?;
        self.apply_from(id, &entry, origin)
    }

    /// Applies one entry written by the service (see [`State::apply_from`]).
    pub fn apply(&mut self, id: EntryId, entry: &LogEntry) -> Result<Applied, Rejection> {
        self.apply_from(id, entry, Origin::Service)
    }

    /// Applies one entry from `origin` and rebalances at once. On `Err` the state is
    /// unchanged.
    pub fn apply_from(
        &mut self,
        id: EntryId,
        entry: &LogEntry,
        origin: Origin,
    ) -> Result<Applied, Rejection> {
        let mut out = self.apply_deferred_from(id, entry, origin)?;
        self.settle_into(&mut out);
        Ok(out)
    }

    /// Decodes raw stream fields and applies them with [`State::apply_deferred_from`].
    pub fn apply_raw_deferred<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &mut self,
        id: EntryId,
        fields: &[(K, V)],
        origin: Origin,
    ) -> Result<Applied, Rejection> {
        let entry = LogEntry::decode(fields)?;
        self.apply_deferred_from(id, &entry, origin)
    }

    /// [`State::apply_deferred_from`] for an entry written by the service.
    pub fn apply_deferred(&mut self, id: EntryId, entry: &LogEntry) -> Result<Applied, Rejection> {
        self.apply_deferred_from(id, entry, Origin::Service)
    }

    /// Applies one entry but leaves the placement as it is: a change of members (a join, a
    /// death, ...) is decided and reported per node, and the keys move at the next
    /// [`State::settle`], once for a whole batch of such entries. An `assign` settles first,
    /// so new keys always land on the owner the entries before them decided. Every key's owner
    /// is a function of the members alone, so the settled state does not depend on where the
    /// batches were cut. On `Err` the state is unchanged.
    ///
    /// A service-only entry (a probe, the prober set, ...) from an origin that cannot prove it
    /// is the service is refused; a join from before attestation ([`Origin::Legacy`]) makes
    /// the node alive at once, as it did then, and any other join makes it `joining`.
    pub fn apply_deferred_from(
        &mut self,
        id: EntryId,
        entry: &LogEntry,
        origin: Origin,
    ) -> Result<Applied, Rejection> {
        if entry.command.is_service_only() && !origin.may_write_service_entries() {
            return Err(Rejection::NotFromService {
                kind: entry.command.kind(),
            });
        }
        if let Some(cmd) = &entry.cmd
            && let Some(first) = self.cmds.get(cmd)
        {
            if !first.matches(entry) {
                return Err(Rejection::CmdReused {
                    cmd: cmd.clone(),
                    first: first.id,
                });
            }
            return Ok(Applied {
                duplicate_of: Some(first.id),
                ..Applied::default()
            });
        }
        if let Command::Policy(change) = &entry.command {
            check_damping(&change.applied_to(self.policy))?;
        }
        let mut out = Applied::default();
        let settings = (self.policy.strategy, self.policy.vnodes);
        // An entry that may turn hand-offs on settles what came before it first: those
        // entries were decided without hand-offs, whatever the cut.
        let may_start_handoffs = match &entry.command {
            Command::Join { handoff, .. } => *handoff,
            Command::Policy(c) => c.handoff_timeout.is_some_and(|t| t > 0),
            _ => false,
        };
        let settle_each = self.settles_each_entry() || may_start_handoffs;
        if settle_each {
            // Settle points must be entries of the log (see `handoff`): the entries before
            // this one settle now. A rejected entry below leaves only this settle behind,
            // which any cut of the batch would also have made before or at it.
            self.settle_into(&mut out);
        }
        self.handed_in_entry = false;
        self.command(id, &entry.command, origin, &mut out)?;
        // After the command, so a rejected entry changes nothing.
        let undamped = self.undamp_due(id, &mut out);
        if undamped || self.members_may_differ(&entry.command, &out) {
            self.apply_panic_threshold(id, &mut out);
            self.pending = Some(id);
        }
        // Also when this entry ended hand-offs (the last such node left, the timeout went to
        // 0): what was handing off moves now, within this entry.
        if settle_each || self.settles_each_entry() {
            self.settle_into(&mut out);
        }
        // A key that left an owner handing it off (released, forced, or moved at once) raises
        // the floor like a member that stopped being one: the owner was no member any more.
        let settings_changed = settings != (self.policy.strategy, self.policy.vnodes)
            || std::mem::take(&mut self.handed_in_entry);
        self.tokens
            .after_entry(id, &mut self.nodes, &out.nodes_changed, settings_changed);
        self.collect_load_changes(&mut out);
        if let Some(cmd) = &entry.cmd {
            let record = RecordedCmd::new(id, entry);
            out.cmds_evicted.extend(self.cmds.remember(cmd, record));
            out.cmd_recorded = Some((cmd.clone(), record));
        }
        Ok(out)
    }

    /// What one command does to the nodes, keys and policy; on `Err` nothing changed.
    fn command(
        &mut self,
        id: EntryId,
        command: &Command,
        origin: Origin,
        out: &mut Applied,
    ) -> Result<(), Rejection> {
        match command {
            Command::Join {
                node,
                url,
                weight,
                handoff,
            } => {
                let health = match origin {
                    Origin::Legacy => NodeHealth::default(),
                    Origin::Service | Origin::Client => NodeHealth::joining(),
                };
                self.join(id, node, url, (*weight, *handoff), health, out)?
            }
            Command::Leave { node } => self.leave(id, node, out)?,
            Command::Drain { node } => self.set_draining(id, node, true, out)?,
            Command::Undrain { node } => self.set_draining(id, node, false, out)?,
            Command::Weight { node, weight } => self.set_weight(id, node, *weight, out)?,
            Command::Assign { keys } => {
                self.settle_into(out);
                self.assign(id, keys, out)
            }
            Command::Unassign { keys } => self.unassign(id, keys, out),
            Command::Released { node, keys } => {
                self.settle_into(out);
                self.released(id, node, keys, out)?
            }
            Command::HandoffForced { node } => {
                self.settle_into(out);
                self.force_handoff(id, node, out)
            }
            Command::Probe(p) => self.probe(id, p, crate::confirm::Check::Plain, out)?,
            Command::Policy(change) => {
                self.check_ring_size(None, change.applied_to(self.policy))?;
                self.change_policy(id, change, out)
            }
            Command::Probers { alive } => self.set_probers(id, alive, out),
            Command::Checked(c) => {
                let check = self.check_of(c);
                self.probe(id, &c.result, check, out)?
            }
            Command::ProberHealth(h) => self.emit(out, id, h.event()),
            Command::ClockSkew(c) => {
                let kind = EventKind::ClockSkew {
                    entry: c.entry,
                    skew_ms: c.skew_ms,
                };
                self.emit(out, id, kind);
            }
            Command::Generation(g) => self.start_generation(id, g, out),
            // The state came back with the base snapshot; the marker only tells the story.
            Command::Restored(r) => {
                let kind = EventKind::Restored {
                    previous: r.previous,
                    nodes: r.nodes,
                    keys: r.keys,
                    archive: r.archive.clone(),
                };
                self.emit(out, id, kind);
            }
            // Only time passes: `undamp_due` (after every command) does the rest.
            Command::Tick => {}
            Command::Loads { reports } => self.loads_reported(id, reports, out),
            Command::KeyLoads { node, keys } => {
                self.settle_into(out);
                self.key_loads_reported(node, keys)?
            }
        }
        Ok(())
    }

    fn leave(&mut self, id: EntryId, node: &NodeId, out: &mut Applied) -> Result<(), Rejection> {
        let gone = self
            .nodes
            .remove(node)
            .ok_or_else(|| Rejection::UnknownNode(node.clone()))?;
        if gone.damped {
            let reuse_at = gone.penalty.reuse_at(&self.policy);
            self.damped_until.remove(&(reuse_at, node.clone()));
        }
        if gone.hands_off {
            self.handoff_nodes -= 1;
        }
        self.loads.forget_node(node);
        // Its keys (handing off or not) move at the next settle: `can_hand_off` is false for
        // a node that is not joined.
        if self.handing.has(node) {
            self.pending.get_or_insert(id);
        }
        out.nodes_changed.push(node.clone());
        let kind = EventKind::Left {
            node: node.clone(),
            epoch: gone.epoch,
        };
        self.emit(out, id, kind);
        Ok(())
    }

    fn set_weight(
        &mut self,
        id: EntryId,
        node: &NodeId,
        weight: u32,
        out: &mut Applied,
    ) -> Result<(), Rejection> {
        if self.nodes.contains_key(node) {
            self.check_ring_size(Some((node, weight)), self.policy)?;
        }
        let n = self
            .nodes
            .get_mut(node)
            .ok_or_else(|| Rejection::UnknownNode(node.clone()))?;
        if n.weight != weight {
            let previous = std::mem::replace(&mut n.weight, weight);
            n.since = id;
            n.last = LastChange::WeightChanged;
            let epoch = n.epoch;
            out.nodes_changed.push(node.clone());
            let kind = EventKind::WeightChanged {
                node: node.clone(),
                epoch,
                weight,
                previous,
            };
            self.emit(out, id, kind);
        }
        Ok(())
    }

    fn set_probers(&mut self, id: EntryId, alive: &[String], out: &mut Applied) {
        if self.probers.as_deref() != Some(alive) {
            self.probers = Some(alive.to_vec());
            let kind = if alive.is_empty() {
                EventKind::NoProber
            } else {
                EventKind::ProbersChanged {
                    alive: alive.to_vec(),
                }
            };
            self.emit(out, id, kind);
        }
    }

    /// Moves the keys for every change of members since the last settle, in one rebalance
    /// (its `rebalanced` event names the latest entry that changed the members).
    pub fn settle(&mut self) -> Applied {
        let mut out = Applied::default();
        self.settle_into(&mut out);
        out
    }

    /// Whether entries were applied whose change of members the placement does not show yet.
    pub fn is_settled(&self) -> bool {
        self.pending.is_none()
    }

    /// [`State::settle`] for a caller that needs only the state: the keys that move are not
    /// listed. After a fold of millions of keys, a failure's moves listed half a million key
    /// changes at once (about 75 MB at 5M keys, issue 19).
    pub fn settle_unlisted(&mut self) {
        let mut out = Applied {
            unlisted: true,
            ..Applied::default()
        };
        self.settle_into(&mut out);
    }

    fn settle_into(&mut self, out: &mut Applied) {
        if let Some(cause) = self.pending.take() {
            self.rebalance(cause, out);
        }
        self.collect_load_changes(out);
    }

    /// Whether an applied entry can have changed the placement's members or settings. Cheap
    /// (no pass over the nodes), so a probe of a healthy node costs nothing here.
    fn members_may_differ(&self, command: &Command, out: &Applied) -> bool {
        match command {
            Command::Join { .. }
            | Command::Leave { .. }
            | Command::Drain { .. }
            | Command::Undrain { .. }
            | Command::Weight { .. }
            | Command::Policy(_) => !out.events.is_empty(),
            Command::Probe(_) | Command::Checked(_) => out.events.iter().any(|e| {
                matches!(
                    e.kind,
                    EventKind::Died { .. } | EventKind::Revived { .. } | EventKind::Ready { .. }
                )
            }),
            Command::Assign { .. }
            | Command::Unassign { .. }
            | Command::Released { .. }
            | Command::HandoffForced { .. }
            | Command::Probers { .. }
            | Command::Tick => false,
            // A load round moves keys itself, within the entry (see `load_round`).
            Command::Loads { .. } | Command::KeyLoads { .. } => false,
            Command::ProberHealth(_) => false,
            // A generation can only undamp, which `undamp_due` reports on its own.
            Command::ClockSkew(_) | Command::Generation(_) | Command::Restored(_) => false,
        }
    }

    /// The panic threshold, after an entry that may have changed who is dead: a node that died
    /// in this entry while placement already took out as many nodes as the threshold allows is
    /// held (it keeps its keys); held nodes are let go, longest dead first, as room frees up
    /// (revivals, joins, a higher threshold). A held node that revives or is drained simply
    /// stops being held.
    fn apply_panic_threshold(&mut self, id: EntryId, out: &mut Applied) {
        // Joining nodes never owned keys: they neither count toward the threshold's base nor
        // as taken out.
        let counted = self
            .nodes
            .values()
            .filter(|n| !n.draining && !n.is_joining())
            .count();
        let allowed = self.policy.removable(counted).unwrap_or(usize::MAX);
        let mut changed: Vec<NodeId> = Vec::new();
        let mut removed = 0usize;
        let mut just_died: Vec<NodeId> = Vec::new();
        let mut held: Vec<(EntryId, NodeId)> = Vec::new();
        for n in self.nodes.values_mut() {
            let dead = !n.draining && n.is_out_for_health();
            if n.held && !dead {
                n.held = false;
                changed.push(n.id.clone());
            } else if n.held {
                held.push((n.since, n.id.clone()));
            } else if dead && n.since == id && n.last == LastChange::Died {
                just_died.push(n.id.clone());
            } else if dead {
                removed += 1;
            }
        }
        let mut first_held = None;
        for node in just_died {
            if removed < allowed {
                removed += 1;
            } else if let Some(n) = self.nodes.get_mut(&node) {
                n.held = true;
                first_held.get_or_insert_with(|| (node.clone(), n.epoch));
                held.push((n.since, node.clone()));
                changed.push(node);
            }
        }
        held.sort();
        let mut still_held = held.len();
        for (_, node) in held {
            if removed >= allowed {
                break;
            }
            if let Some(n) = self.nodes.get_mut(&node) {
                n.held = false;
                removed += 1;
                still_held -= 1;
                changed.push(node);
            }
        }
        for node in changed {
            if !out.nodes_changed.contains(&node) {
                out.nodes_changed.push(node);
            }
        }
        let dead = self
            .nodes
            .values()
            .filter(|n| !n.draining && n.is_out_for_health())
            .count() as u32;
        let nodes = counted as u32;
        let was_panicking = std::mem::replace(&mut self.panicking, still_held > 0);
        match (was_panicking, still_held > 0, first_held) {
            (false, true, Some((node, epoch))) => {
                let panic = self.policy.panic;
                let kind = EventKind::PanicStarted {
                    node,
                    epoch,
                    dead,
                    nodes,
                    panic,
                };
                self.emit(out, id, kind);
            }
            (true, false, _) => self.emit(out, id, EventKind::PanicEnded { dead, nodes }),
            _ => {}
        }
    }

    fn emit(&self, out: &mut Applied, cause: EntryId, kind: EventKind) {
        out.events.push(Event { cause, kind });
    }

    /// The first entry of a new log generation (see [`crate::clock`]). Its id follows Redis's
    /// clock again, below the poisoned ids before it: damping penalties stamped after it move
    /// back to it (else they would not decay until the poisoned time), and the window of
    /// client command ids starts afresh (a restored window is ordered by id, and ids restart
    /// lower, so keeping it would make a restored state differ from the live one).
    fn start_generation(&mut self, id: EntryId, g: &Generation, out: &mut Applied) {
        let policy = self.policy;
        let mut rebased = 0;
        for n in self.nodes.values_mut() {
            if n.penalty.at > id.ms {
                n.penalty.at = id.ms;
                rebased += 1;
                out.nodes_changed.push(n.id.clone());
            }
        }
        self.damped_until = self
            .nodes
            .values()
            .filter(|n| n.damped)
            .map(|n| (n.penalty.reuse_at(&policy), n.id.clone()))
            .collect();
        out.cmds_evicted = self.cmds.clear();
        let kind = EventKind::GenerationStarted {
            previous: g.previous,
            archive: g.archive.clone(),
            rebased,
        };
        self.emit(out, id, kind);
    }

    /// Rebuilds a state from its parts, as stored in the read models. The placement is derived
    /// from the members; key owners are taken as stored, so a damaged keymap shows up as a
    /// checksum that differs from the one committed with it.
    pub fn restore(
        policy: Policy,
        next_epoch: u64,
        nodes: impl IntoIterator<Item = Node>,
        keys: impl IntoIterator<Item = (String, Option<NodeId>)>,
        mut cmds: Vec<(String, RecordedCmd)>,
    ) -> Self {
        let mut state = Self::new(policy);
        state.next_epoch = next_epoch;
        state.nodes = NodeTable::from(
            nodes
                .into_iter()
                .map(|n| (n.id.clone(), n))
                .collect::<BTreeMap<_, _>>(),
        );
        state.placement = placement::build(policy.strategy, policy.vnodes, state.wanted_members());
        state.panicking = state.nodes.values().any(|n| n.held);
        state.damped_until = state
            .nodes
            .values()
            .filter(|n| n.damped)
            .map(|n| (n.penalty.reuse_at(&policy), n.id.clone()))
            .collect();
        state.tokens = Tokens::restore(0, 0, state.nodes.values());
        state.handoff_nodes = state.nodes.values().filter(|n| n.hands_off).count();
        for (key, owner) in keys {
            state.keys.insert(&key, owner);
        }
        state.handing = Handing::derive(&state);
        cmds.sort_by_key(|(_, r)| r.id);
        for (cmd, record) in cmds {
            state.cmds.remember(&cmd, record);
        }
        state
    }

    fn join(
        &mut self,
        id: EntryId,
        node: &NodeId,
        url: &str,
        (weight, hands_off): (Option<u32>, bool),
        health: NodeHealth,
        out: &mut Applied,
    ) -> Result<(), Rejection> {
        if !self.nodes.contains_key(node) && self.nodes.len() >= MAX_NODES {
            return Err(Rejection::TooManyNodes);
        }
        self.check_ring_size(Some((node, weight.unwrap_or(1))), self.policy)?;
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        let weight = weight.unwrap_or(1);
        // A join of a known node is a re-join (a restarted worker): new epoch, fresh health.
        // Its flap penalty stays: a worker in a crash loop that re-joins at every start is
        // exactly the node damping is for.
        let (penalty, damped, handed_off) = self
            .nodes
            .get(node)
            .map_or((Penalty::default(), false, false), |n| {
                (n.penalty, n.damped, n.hands_off)
            });
        self.handoff_nodes = self.handoff_nodes + usize::from(hands_off) - usize::from(handed_off);
        // A re-join starts the node afresh (joining, owning nothing in placement): whatever
        // it was handing off moves at the next settle.
        if self.handing.has(node) {
            self.pending.get_or_insert(id);
        }
        self.nodes.insert(Node {
            id: node.clone(),
            url: url.to_owned(),
            weight,
            epoch,
            health,
            draining: false,
            since: id,
            last: LastChange::Joined,
            held: false,
            penalty,
            damped,
            token: 0,
            hands_off,
        });
        out.nodes_changed.push(node.clone());
        let kind = EventKind::Joined {
            node: node.clone(),
            epoch,
            url: url.to_owned(),
            weight,
        };
        self.emit(out, id, kind);
        Ok(())
    }

    fn set_draining(
        &mut self,
        id: EntryId,
        node: &NodeId,
        draining: bool,
        out: &mut Applied,
    ) -> Result<(), Rejection> {
        let n = self
            .nodes
            .get_mut(node)
            .ok_or_else(|| Rejection::UnknownNode(node.clone()))?;
        if n.draining == draining {
            return Ok(()); // already there: idempotent, no event
        }
        n.draining = draining;
        n.since = id;
        n.last = if draining {
            LastChange::Drained
        } else {
            LastChange::Undrained
        };
        let epoch = n.epoch;
        out.nodes_changed.push(node.clone());
        let node = node.clone();
        let kind = if draining {
            EventKind::Drained { node, epoch }
        } else {
            EventKind::Undrained { node, epoch }
        };
        self.emit(out, id, kind);
        Ok(())
    }

    fn assign(&mut self, id: EntryId, keys: &[String], out: &mut Applied) {
        let mut added = 0u64;
        // In hash order, consecutive inserts land next to each other in the key index (and in
        // the same region of the ring) instead of a cache miss each.
        let mut by_hash: Vec<(u64, &String)> =
            keys.iter().map(|k| (placement::key_hash(k), k)).collect();
        by_hash.sort_unstable();
        for (hash, key) in by_hash {
            let owner = self.placement.owner_of_hash(key, hash).cloned();
            if self.keys.insert_hashed(key, hash, owner.clone()) {
                added += 1;
                out.key_changes.push(KeyChange::Added {
                    key: key.clone(),
                    owner,
                });
            }
        }
        if added > 0 {
            self.emit(out, id, EventKind::Assigned { keys: added });
        }
    }

    fn unassign(&mut self, id: EntryId, keys: &[String], out: &mut Applied) {
        let mut removed = 0u64;
        for key in keys {
            if let Some(owner) = self.keys.remove(key) {
                removed += 1;
                self.plan.forget_move(key);
                if self.plan.drop_key(key) {
                    out.replicas_changed.push(key.clone());
                }
                out.key_changes.push(KeyChange::Removed {
                    key: key.clone(),
                    owner,
                });
            }
        }
        if removed > 0 {
            self.emit(out, id, EventKind::Unassigned { keys: removed });
        }
    }

    /// How a probe of a prober that confirms deaths counts (see [`crate::confirm`]).
    fn check_of(&self, c: &crate::confirm::CheckedProbe) -> crate::confirm::Check {
        use crate::confirm::{Check, confirmation_counts};
        let p = &c.result;
        if c.confirm && confirmation_counts(self.probers.as_deref(), &p.node, p.prober.as_deref()) {
            Check::Confirmation
        } else {
            Check::Regular
        }
    }

    fn probe(
        &mut self,
        id: EntryId,
        p: &ProbeResult,
        check: crate::confirm::Check,
        out: &mut Applied,
    ) -> Result<(), Rejection> {
        if p.epoch >= self.next_epoch {
            return Err(Rejection::FutureEpoch {
                node: p.node.clone(),
                epoch: p.epoch,
            });
        }
        let policy = self.policy;
        let Some(n) = self.nodes.get_mut(&p.node).filter(|n| n.epoch == p.epoch) else {
            // An older epoch, or a node that left since the probe was sent: not an error, the
            // prober simply had not seen the change yet.
            out.stale = true;
            return Ok(());
        };
        let before = n.health;
        let transitions = crate::confirm::observe(&mut n.health, p.ok, check, &policy);
        if n.health == before {
            return Ok(()); // e.g. a success of an alive node: nothing to write
        }
        out.nodes_changed.push(p.node.clone());
        let (node, epoch) = (p.node.clone(), n.epoch);
        let (fails, successes) = (n.health.fails, before.successes.saturating_add(1));
        let mut kinds = Vec::new();
        for t in transitions {
            n.since = id;
            let (name, kind) = match t {
                Transition::Ready => (
                    LastChange::Ready,
                    EventKind::Ready {
                        node: node.clone(),
                        epoch,
                        fails: before.fails,
                    },
                ),
                Transition::Suspect => (
                    LastChange::Suspect,
                    EventKind::Suspect {
                        node: node.clone(),
                        epoch,
                        fails,
                    },
                ),
                Transition::Died => (
                    LastChange::Died,
                    EventKind::Died {
                        node: node.clone(),
                        epoch,
                        fails,
                    },
                ),
                Transition::Revived => (
                    LastChange::Revived,
                    EventKind::Revived {
                        node: node.clone(),
                        epoch,
                        successes,
                    },
                ),
                Transition::Recovered => (
                    LastChange::Recovered,
                    EventKind::Recovered {
                        node: node.clone(),
                        epoch,
                        successes,
                    },
                ),
            };
            n.last = name;
            kinds.push(kind);
        }
        if kinds.iter().any(|k| matches!(k, EventKind::Died { .. })) && policy.damp_penalty > 0 {
            let was = n.penalty.reuse_at(&policy);
            n.penalty = n.penalty.after_death(id.ms, &policy);
            let reuse_at = n.penalty.reuse_at(&policy);
            if n.damped {
                self.damped_until.remove(&(was, node.clone()));
                self.damped_until.insert((reuse_at, node.clone()));
            } else if n.penalty.value > policy.damp_suppress {
                n.damped = true;
                self.damped_until.insert((reuse_at, node.clone()));
                kinds.push(EventKind::Damped {
                    node: node.clone(),
                    epoch,
                    penalty: n.penalty.value,
                    reuse_at,
                });
            }
        }
        for kind in kinds {
            self.emit(out, id, kind);
        }
        Ok(())
    }

    /// Undamps the nodes whose penalty has decayed to the reuse limit by the time of entry
    /// `id` (log time: the fold has no clock, any entry moves time on). Returns whether any
    /// node was undamped.
    fn undamp_due(&mut self, id: EntryId, out: &mut Applied) -> bool {
        let mut any = false;
        while let Some((at, node)) = self.damped_until.first().cloned() {
            if at > id.ms {
                break;
            }
            self.damped_until.pop_first();
            let policy = self.policy;
            let Some(n) = self
                .nodes
                .get_mut(&node)
                .filter(|n| n.damped && n.penalty.reuse_at(&policy) == at)
            else {
                continue;
            };
            n.damped = false;
            let (epoch, penalty) = (n.epoch, n.penalty.at_time(id.ms, &policy) as u32);
            out.nodes_changed.push(node.clone());
            self.emit(
                out,
                id,
                EventKind::Undamped {
                    node,
                    epoch,
                    penalty,
                },
            );
            any = true;
        }
        any
    }

    /// Refuses changes after which the ring could exceed [`MAX_RING_POINTS`] (counting every
    /// joined node, healthy or not, since any of them may become a member) under `policy`.
    /// Rendezvous builds no ring: its members are limited by [`MAX_NODES`] alone.
    fn check_ring_size(
        &self,
        changed: Option<(&NodeId, u32)>,
        policy: Policy,
    ) -> Result<(), Rejection> {
        if policy.strategy != placement::Strategy::Ring {
            return Ok(());
        }
        let vnodes = policy.vnodes;
        let mut weight: u64 = self
            .nodes
            .values()
            .filter(|n| changed.is_none_or(|(id, _)| *id != n.id))
            .map(|n| u64::from(n.weight))
            .sum();
        weight += changed.map_or(0, |(_, w)| u64::from(w));
        let points = weight * u64::from(vnodes);
        if points > MAX_RING_POINTS {
            return Err(Rejection::RingTooLarge {
                points,
                max: MAX_RING_POINTS,
            });
        }
        Ok(())
    }

    fn change_policy(&mut self, id: EntryId, change: &PolicyChange, out: &mut Applied) {
        let next = change.applied_to(self.policy);
        if next != self.policy {
            self.policy = next;
            // The reuse times depend on the damping settings.
            self.damped_until = self
                .nodes
                .values()
                .filter(|n| n.damped)
                .map(|n| (n.penalty.reuse_at(&next), n.id.clone()))
                .collect();
            self.emit(out, id, EventKind::PolicyChanged { policy: next });
        }
    }

    fn wanted_members(&self) -> Vec<Member> {
        self.nodes
            .values()
            .filter(|n| n.is_member())
            .map(|n| Member {
                node: n.id.clone(),
                weight: n.weight,
            })
            .collect()
    }

    /// Rebuilds the placement when members, weights or settings changed and moves exactly the
    /// keys whose owner changed, emitting one `rebalanced` event with the flows. A key whose
    /// owner can hand off does not move: it starts (or goes on) handing off instead.
    fn rebalance(&mut self, id: EntryId, out: &mut Applied) {
        if self.placement_off {
            return;
        }
        let members = self.wanted_members();
        let same_kind = self.placement.as_ring().is_some()
            == (self.policy.strategy == placement::Strategy::Ring);
        let same_vnodes = self
            .placement
            .as_ring()
            .is_none_or(|r| r.vnodes() == self.policy.vnodes);
        let unchanged = same_kind && same_vnodes && self.placement.members() == members.as_slice();
        if unchanged && self.handing.is_empty() && self.load_listed.is_empty() {
            return;
        }
        let next: Option<Box<dyn Placement>> = match self.placement.as_ring() {
            _ if unchanged => None,
            Some(ring) if same_kind && same_vnodes => Some(Box::new(ring.updated(members))),
            _ => Some(placement::build(
                self.policy.strategy,
                self.policy.vnodes,
                members,
            )),
        };
        let ranges = match &next {
            Some(next) => self.placement.changed_ranges(&**next),
            None => Some(Vec::new()),
        };
        let releasers: BTreeSet<NodeId> = self
            .nodes
            .keys()
            .filter(|n| self.can_hand_off(n))
            .cloned()
            .collect();
        let target: &dyn Placement = next.as_deref().unwrap_or(&*self.placement);
        // Keys a load round moved, and keys whose load move or replicas pointed at a node
        // that is no member any more.
        let mut load_listed: BTreeSet<(u64, Box<str>)> =
            std::mem::take(&mut self.load_listed).into_iter().collect();
        if !self.plan.is_empty() {
            let members = target.members();
            let gone = |n: &NodeId| members.binary_search_by(|m| m.node.cmp(n)).is_err();
            let (unmoved, dropped) = self.plan.drop_nodes(gone);
            load_listed.extend(
                unmoved
                    .into_iter()
                    .map(|k| (placement::key_hash(&k), k.into())),
            );
            for (key, _) in dropped {
                // One holder fewer: every share changed (see `Loads::reset_key`).
                self.loads.reset_key(&key);
                out.replicas_changed.push(key);
            }
            out.replicas_changed.dedup();
        }
        let mut listed = self.handing.all();
        if !load_listed.is_empty() {
            listed.extend(load_listed.iter().cloned());
            listed.sort();
            listed.dedup();
        }
        let mut flows: BTreeMap<(Option<NodeId>, Option<NodeId>), u64> = BTreeMap::new();
        let mut asked: BTreeMap<NodeId, u64> = BTreeMap::new();
        let listing = !out.unlisted;
        let changes = &mut out.key_changes;
        let handing = &mut self.handing;
        let mut moved_handing = false;
        let mut moved_for_load = false;
        let plan = &self.plan;
        let mut decide = |key: &str, hash: u64, current: Option<&NodeId>| {
            let to = target_in(target, plan, key, hash);
            if current == to {
                if let Some(owner) = current {
                    handing.remove(owner, hash, key);
                }
                return None;
            }
            if let Some(from) = current.filter(|c| releasers.contains(*c)) {
                if handing.insert(from, hash, key, Some(id.ms)) {
                    *asked.entry(from.clone()).or_default() += 1;
                    changes.push(KeyChange::HandoffAsked {
                        key: key.to_owned(),
                        from: from.clone(),
                        to: to.cloned(),
                    });
                }
                return None;
            }
            if let Some(from) = current {
                moved_handing |= handing.remove(from, hash, key);
            }
            moved_for_load |= !load_listed.is_empty() && load_listed.contains(&(hash, key.into()));
            *flows.entry((current.cloned(), to.cloned())).or_default() += 1;
            if listing {
                changes.push(KeyChange::Moved {
                    key: key.to_owned(),
                    from: current.cloned(),
                    to: to.cloned(),
                });
            }
            Some(to)
        };
        self.keys
            .reassign_with(ranges.as_deref(), &mut decide, |_, _, _| {});
        self.keys.reassign_listed(&listed, &mut decide);
        // A key moved for load leaves an owner that stays a member: the floor rises as for a
        // release, so its new owner's token is larger.
        self.handed_in_entry |= moved_handing || moved_for_load;
        if let Some(next) = next {
            self.placement = next;
            out.ring_changed = true;
        }
        for (node, keys) in asked {
            let epoch = self.nodes.get(&node).map_or(0, |n| n.epoch);
            self.emit(out, id, EventKind::HandoffStarted { node, epoch, keys });
        }
        self.emit_flows(out, id, flows);
    }

    fn emit_flows(
        &self,
        out: &mut Applied,
        id: EntryId,
        flows: BTreeMap<(Option<NodeId>, Option<NodeId>), u64>,
    ) {
        if !flows.is_empty() {
            let moved = flows.values().sum();
            let flows = flows
                .into_iter()
                .map(|((from, to), keys)| Flow { from, to, keys })
                .collect();
            self.emit(out, id, EventKind::Rebalanced { moved, flows });
        }
    }

    /// `node` released `keys`: those it is still handing off move to where the placement puts
    /// them now, in this entry (release, then acquire: one commit). Keys it is no longer
    /// handing off (the move was undone, or it was forced) are skipped: a late or repeated
    /// release is harmless.
    fn released(
        &mut self,
        id: EntryId,
        node: &NodeId,
        keys: &[String],
        out: &mut Applied,
    ) -> Result<(), Rejection> {
        if !self.nodes.contains_key(node) {
            return Err(Rejection::UnknownNode(node.clone()));
        }
        let mut listed: Vec<(u64, &str)> = Vec::new();
        for key in keys {
            let hash = placement::key_hash(key);
            if self.handing.contains(node, hash, key) {
                listed.push((hash, key));
            } else if self.keys.get(key) == Some(Some(node)) {
                // The worker stopped serving it to hand it over: give it back.
                out.key_changes.push(KeyChange::Kept {
                    key: key.clone(),
                    owner: node.clone(),
                });
            }
        }
        let moved = self.hand_over(id, node, listed, true, out);
        if moved > 0 {
            let epoch = self.nodes[node].epoch;
            let kind = EventKind::HandedOff {
                node: node.clone(),
                epoch,
                keys: moved,
            };
            self.emit(out, id, kind);
        }
        Ok(())
    }

    /// The projector leader forces `node`'s hand-off: everything it is handing off moves now,
    /// without state.
    fn force_handoff(&mut self, id: EntryId, node: &NodeId, out: &mut Applied) {
        let listed: Vec<(u64, String)> = self
            .handing
            .of(node)
            .map(|(h, k)| (h, k.to_owned()))
            .collect();
        let listed = listed.iter().map(|(h, k)| (*h, k.as_str())).collect();
        let moved = self.hand_over(id, node, listed, false, out);
        if moved > 0 {
            let epoch = self.nodes.get(node).map_or(0, |n| n.epoch);
            let kind = EventKind::HandoffForced {
                node: node.clone(),
                epoch,
                keys: moved,
            };
            self.emit(out, id, kind);
        }
    }

    /// Moves `keys` (handing off from `from`) to their owners in the placement; returns how
    /// many moved. `with_state`: the old owner stored their state (a release, not a force).
    fn hand_over(
        &mut self,
        id: EntryId,
        from: &NodeId,
        keys: Vec<(u64, &str)>,
        with_state: bool,
        out: &mut Applied,
    ) -> u64 {
        let mut flows: BTreeMap<(Option<NodeId>, Option<NodeId>), u64> = BTreeMap::new();
        for (hash, key) in keys {
            let to = self.target_owner(key, hash).cloned();
            self.handing.remove(from, hash, key);
            if !self.keys.set_owner(key, hash, to.clone()) {
                continue;
            }
            *flows.entry((Some(from.clone()), to.clone())).or_default() += 1;
            let (key, from) = (key.to_owned(), from.clone());
            out.key_changes.push(if with_state {
                KeyChange::HandedOver { key, from, to }
            } else {
                KeyChange::Moved {
                    key,
                    from: Some(from),
                    to,
                }
            });
        }
        let moved = flows.values().sum();
        if moved > 0 {
            self.handed_in_entry = true;
            if !out.nodes_changed.contains(from) {
                out.nodes_changed.push(from.clone());
            }
        }
        self.emit_flows(out, id, flows);
        moved
    }

    /// A checksum of the whole state, stable across runs, builds and platforms: xxh3-64 over
    /// an explicit byte encoding (see docs/placement.md, "State checksum"). Describes a
    /// settled state: after [`State::apply_deferred`], call [`State::settle`] first.
    pub fn checksum(&self) -> u64 {
        let mut h = self.nodes_digest();
        h.update(&(self.keys.len() as u64).to_le_bytes());
        h.update(&self.keys.digest().to_le_bytes());
        match &self.probers {
            None => h.update(&[0]),
            Some(p) => {
                h.update(&[1]);
                h.update(&(p.len() as u64).to_le_bytes());
                for id in p {
                    h.update(id.as_bytes());
                    h.update(&[0]);
                }
            }
        }
        if self.tokens.clock() != 0 {
            h.update(b"tokens\0");
            h.update(&self.tokens.clock().to_le_bytes());
            h.update(&self.tokens.floor().to_le_bytes());
        }
        // The digests are left out: they are derived from the entries the ids name, and
        // states recorded before digests existed keep their checksums.
        h.update(&(self.cmds.len() as u64).to_le_bytes());
        for (cmd, RecordedCmd { id, .. }) in self.cmds.iter() {
            h.update(cmd.as_bytes());
            h.update(&[0]);
            h.update(&id.ms.to_le_bytes());
            h.update(&id.seq.to_le_bytes());
        }
        if !self.loads.is_empty() || !self.plan.is_empty() {
            h.update(b"loads\0");
            self.loads.hash_into(&mut h);
            self.plan.hash_into(&mut h);
        }
        h.digest()
    }

    /// The checksum's hash up to and including the nodes. Most entries leave the policy,
    /// the epoch counter and the nodes as they were, so it is kept with what it was taken of
    /// and reused while they stay so (at 10,000 nodes it is most of the checksum's cost).
    fn nodes_digest(&self) -> Digest {
        let taken_of = (self.policy, self.next_epoch, self.nodes.version());
        let mut kept = self
            .nodes_digest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((of, digest)) = kept.as_ref()
            && *of == taken_of
        {
            return digest.clone();
        }
        let mut h = Digest::default();
        h.update(b"pantheon-state/1\0");
        let p = &self.policy;
        for v in [p.fall, p.rise, p.vnodes] {
            h.update(&v.to_le_bytes());
        }
        h.update(p.strategy.as_str().as_bytes());
        h.update(&[0]);
        // Fields added after the format was pinned are hashed only when they differ from
        // what older builds implied, so their states keep their checksums.
        if p.panic != Policy::DEFAULT_PANIC {
            h.update(b"panic\0");
            h.update(&p.panic.to_le_bytes());
        }
        if !p.damping_is_default() {
            h.update(b"damping\0");
            for (_, v) in p.damping_fields() {
                h.update(&v.to_le_bytes());
            }
        }
        if p.handoff_timeout != Policy::DEFAULT_HANDOFF_TIMEOUT {
            h.update(b"handoff_timeout\0");
            h.update(&p.handoff_timeout.to_le_bytes());
        }
        if p.load_epsilon != Policy::DEFAULT_LOAD_EPSILON {
            h.update(b"load_epsilon\0");
            h.update(&p.load_epsilon.to_le_bytes());
        }
        h.update(&self.next_epoch.to_le_bytes());
        h.update(&(self.nodes.len() as u64).to_le_bytes());
        for n in self.nodes.values() {
            h.update(n.id.as_str().as_bytes());
            h.update(&[0]);
            h.update(n.url.as_bytes());
            h.update(&[0]);
            for v in [n.weight, n.health.fails, n.health.successes] {
                h.update(&v.to_le_bytes());
            }
            h.update(&n.epoch.to_le_bytes());
            h.update(n.health.health.as_str().as_bytes());
            h.update(&[0, u8::from(n.draining)]);
            h.update(&n.since.ms.to_le_bytes());
            h.update(&n.since.seq.to_le_bytes());
            h.update(n.last.as_str().as_bytes());
            h.update(&[0]);
            if n.held {
                h.update(b"held\0");
            }
            if n.penalty != Penalty::default() || n.damped {
                h.update(b"damp\0");
                h.update(&n.penalty.value.to_le_bytes());
                h.update(&n.penalty.at.to_le_bytes());
                h.update(&[u8::from(n.damped)]);
            }
            if n.token != 0 {
                h.update(b"token\0");
                h.update(&n.token.to_le_bytes());
            }
            if n.hands_off {
                h.update(b"handoff\0");
            }
        }
        *kept = Some((taken_of, h.clone()));
        h
    }
}

/// [`State::target_owner`] against a given placement (a rebalance decides against the next
/// one before it replaces the current).
fn target_in<'a>(
    placement: &'a dyn Placement,
    plan: &'a Plan,
    key: &str,
    hash: u64,
) -> Option<&'a NodeId> {
    plan.moved_to(key)
        .filter(|n| {
            let members = placement.members();
            members.binary_search_by(|m| m.node.cmp(n)).is_ok()
        })
        .or_else(|| placement.owner_of_hash(key, hash))
}
