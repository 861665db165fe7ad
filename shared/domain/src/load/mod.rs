//! Load-aware placement (see `docs/adr/0018-load-aware-placement.md`).
//!
//! Nodes report their load (the prober reads `X-Pantheon-Load` from their health answers and
//! writes `loads` entries); the worker library reports its hottest keys (`key_loads`
//! entries). Both are log entries, so the fold — and a replay — sees exactly the same numbers.
//! With the policy's `load_epsilon` above 0, a *round* runs at a `loads` entry (at most once per
//! [`ROUND_MS`] of log time) and:
//!
//! 1. gives a hot key read replicas, so that no holder serves more than [`replica_cap`] of it;
//! 2. moves hot keys off every node whose load is above `(1 + ε) × mean`, heaviest first, each
//!    to the first node in the key's placement order that stays at or below
//!    `(1 + ε/2) × mean` with it (ring order first), until the node is at or below the mean
//!    (so it leaves the band with room to spare, and noise does not bring it back);
//! 3. leaves alone every node that took part in a move until it reports its load again, so
//!    a round never acts on figures that do not show its own last moves yet (no oscillation);
//!    and a node sheds keys only when it was above the band at the round before too, so one
//!    noisy report moves nothing.
//!
//! Only assigned keys move (their owner is a record the fold keeps); a move goes through the
//! hand-off protocol like any planned move. Cold keys — those no worker reports among its
//! hottest — never move for load: a node's load that its hot keys do not explain stays there.
//!
//! Loads are integers: thousandths of the reporter's unit ("milli"). A node's load is taken
//! as reported (its own rate over its interval, written by the prober only beyond a dead
//! band); a hot key's is smoothed per report as `(old + new) / 2`, so a single outlier moves
//! it only halfway.

mod expected;

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::NodeId;
use crate::placement::Member;
use expected::Expected;

/// The largest load a report may give, in the reporter's unit: anything above is absurd.
pub const MAX_LOAD: f64 = 1e12;
/// Keys one `key_loads` entry may carry (the worker library sends its top keys).
pub const MAX_KEY_LOADS: usize = 64;
/// Rounds are at least this far apart in log time.
pub const ROUND_MS: u64 = 2_000;
/// Moves (an owner moved, a replica added, moved or removed) per round at most: the rate
/// limit.
pub const MAX_MOVES_PER_ROUND: usize = 64;
/// A hot key's holder serves at most the mean node load divided by this.
pub const REPLICA_DIVISOR: u64 = 8;

/// Why a reported load was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("load {0:?} is not a number")]
    NotANumber(String),
    #[error("load {0:?} is negative")]
    Negative(String),
    #[error("load {0:?} is not finite")]
    NotFinite(String),
    #[error("load {0:?} is above the limit of 1e12")]
    TooLarge(String),
}

/// The `loads` entry's text for a node that stopped reporting a load: its figure is forgotten.
pub const NO_LOAD: &str = "none";

/// A load as text (a decimal number of the reporter's unit per second) in thousandths.
pub fn parse_load(text: &str) -> Result<u64, LoadError> {
    let text = text.trim();
    let shown = || crate::wire::clip(text);
    let value: f64 = text.parse().map_err(|_| LoadError::NotANumber(shown()))?;
    if !value.is_finite() {
        return Err(LoadError::NotFinite(shown()));
    }
    if value < 0.0 {
        return Err(LoadError::Negative(shown()));
    }
    if value > MAX_LOAD {
        return Err(LoadError::TooLarge(shown()));
    }
    // Exact and the same on every platform: IEEE multiplication and rounding.
    Ok((value * 1000.0).round() as u64)
}

/// Thousandths as the decimal text [`parse_load`] reads (`12500` → `"12.5"`).
pub fn format_load(milli: u64) -> String {
    let (whole, frac) = (milli / 1000, milli % 1000);
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:03}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

/// The smoothed figure after a report of `raw` (the first report is taken as it is).
fn smooth(old: Option<u64>, raw: u64) -> u64 {
    match old {
        Some(old) => old / 2 + raw / 2 + (old % 2 + raw % 2) / 2,
        None => raw,
    }
}

/// What changed since the read models last took it (see [`Loads::take_touched`]): not part
/// of the state, so equality ignores it.
#[derive(Debug, Clone)]
pub struct Touched<T: Ord>(BTreeSet<T>);

impl<T: Ord> Default for Touched<T> {
    fn default() -> Self {
        Self(BTreeSet::new())
    }
}

impl<T: Ord> PartialEq for Touched<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<T: Ord> Eq for Touched<T> {}

/// [`Loads::parts`]: node loads, each hot key's loads by node, the nodes settling, and the
/// nodes above the band at the last round.
pub type LoadsParts<'a> = (
    &'a BTreeMap<NodeId, u64>,
    &'a BTreeMap<String, BTreeMap<NodeId, u64>>,
    &'a BTreeSet<NodeId>,
    &'a BTreeSet<NodeId>,
);

/// The loads reported so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loads {
    nodes: BTreeMap<NodeId, u64>,
    /// Per hot key, the load each node holding it reported, smoothed.
    keys: BTreeMap<String, BTreeMap<NodeId, u64>>,
    /// The keys each node reported last: a key missing from its next report is cold again.
    reported: BTreeMap<NodeId, BTreeSet<String>>,
    /// Nodes that took part in a round's move and have not reported their load since.
    settling: BTreeSet<NodeId>,
    /// Nodes that were above the band at the last round (hysteresis: a node sheds keys only
    /// when it is above it at two rounds in a row).
    above: BTreeSet<NodeId>,
    /// Nodes whose hot keys changed (their read-model field is written again).
    touched: Touched<NodeId>,
    /// Marked when `settling` or `above` changed (the `meta` field is written again; not for
    /// every round: at 10,000 nodes it lists thousands of nodes).
    meta_touched: Touched<()>,
}

impl Loads {
    /// A node's smoothed load (thousandths), if it ever reported one.
    pub fn node(&self, node: &NodeId) -> Option<u64> {
        self.nodes.get(node).copied()
    }

    /// The hot keys with the load each node reported for them.
    pub fn keys(&self) -> impl Iterator<Item = (&str, &BTreeMap<NodeId, u64>)> {
        self.keys.iter().map(|(k, by)| (k.as_str(), by))
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty() && self.keys.is_empty()
    }

    /// `node` reported `load`; returns whether its figure changed. A node's load is taken as
    /// reported, not smoothed: it is already the node's rate over its own interval, and the
    /// prober writes it only when it moved beyond a dead band, so a smoothed figure would
    /// stop short of a steady load.
    pub fn report_node(&mut self, node: &NodeId, load: u64) -> bool {
        if self.settling.remove(node) {
            self.meta_touched.0.insert(());
        }
        self.nodes.insert(node.clone(), load) != Some(load)
    }

    /// `node` reported its hottest keys (`keys`: those it holds, with their loads). Keys it
    /// reported before and not now are cold for it again.
    pub fn report_keys(&mut self, node: &NodeId, keys: &[(String, u64)]) {
        self.touched.0.insert(node.clone());
        let now: BTreeSet<String> = keys.iter().map(|(k, _)| k.clone()).collect();
        for gone in self
            .reported
            .remove(node)
            .unwrap_or_default()
            .difference(&now)
        {
            self.forget_key(gone, node);
        }
        for (key, load) in keys {
            let by = self.keys.entry(key.clone()).or_default();
            let new = smooth(by.get(node).copied(), *load);
            by.insert(node.clone(), new);
        }
        if !now.is_empty() {
            self.reported.insert(node.clone(), now);
        }
    }

    fn forget_key(&mut self, key: &str, node: &NodeId) {
        self.touched.0.insert(node.clone());
        if let Some(by) = self.keys.get_mut(key) {
            by.remove(node);
            if by.is_empty() {
                self.keys.remove(key);
            }
        }
        if let Some(keys) = self.reported.get_mut(node) {
            keys.remove(key);
            if keys.is_empty() {
                self.reported.remove(node);
            }
        }
    }

    /// `node` no longer serves `key` (it moved, or its replica was dropped): its report for
    /// it no longer counts.
    pub fn drop_holder(&mut self, key: &str, node: &NodeId) {
        self.forget_key(key, node);
    }

    /// `node` stopped reporting a load: its figure no longer counts (in the mean, or against
    /// the band). Returns whether it had one.
    pub fn clear_node(&mut self, node: &NodeId) -> bool {
        if self.settling.remove(node) | self.above.remove(node) {
            self.meta_touched.0.insert(());
        }
        self.nodes.remove(node).is_some()
    }

    /// `key`'s holders changed: every holder's share of it changed too, so the shares
    /// reported so far (smoothed over the old holders) no longer tell its load. They go; the
    /// key waits for fresh reports before a round decides on it again. (Kept, the old larger
    /// shares times the new number of holders overstated the key's load and kept adding
    /// replicas it did not need.)
    pub fn reset_key(&mut self, key: &str) {
        for node in self.keys.remove(key).unwrap_or_default().into_keys() {
            if let Some(keys) = self.reported.get_mut(&node) {
                keys.remove(key);
                if keys.is_empty() {
                    self.reported.remove(&node);
                }
            }
            self.touched.0.insert(node);
        }
    }

    /// `node` left: everything it reported goes.
    pub fn forget_node(&mut self, node: &NodeId) {
        self.touched.0.insert(node.clone());
        self.nodes.remove(node);
        if self.settling.remove(node) | self.above.remove(node) {
            self.meta_touched.0.insert(());
        }
        for key in self.reported.remove(node).unwrap_or_default() {
            if let Some(by) = self.keys.get_mut(&key) {
                by.remove(node);
                if by.is_empty() {
                    self.keys.remove(&key);
                }
            }
        }
    }

    /// Whether `settling` or `above` changed since the last call.
    pub fn take_meta_touched(&mut self) -> bool {
        !std::mem::take(&mut self.meta_touched.0).is_empty()
    }

    /// The nodes whose hot keys changed since the last call.
    pub fn take_touched(&mut self) -> BTreeSet<NodeId> {
        std::mem::take(&mut self.touched.0)
    }

    /// The hot keys `node` reported (and still holds), with their smoothed loads.
    pub fn keys_of(&self, node: &NodeId) -> Vec<(&str, u64)> {
        self.reported.get(node).map_or_else(Vec::new, |keys| {
            keys.iter()
                .filter_map(|k| {
                    let load = self.keys.get(k)?.get(node)?;
                    Some((k.as_str(), *load))
                })
                .collect()
        })
    }

    /// Feeds the loads to the state checksum (explicit bytes, see docs/placement.md).
    pub fn hash_into(&self, h: &mut crate::digest::Digest) {
        h.update(&(self.nodes.len() as u64).to_le_bytes());
        for (node, load) in &self.nodes {
            h.update(node.as_str().as_bytes());
            h.update(&[0]);
            h.update(&load.to_le_bytes());
        }
        h.update(&(self.keys.len() as u64).to_le_bytes());
        for (key, by) in &self.keys {
            h.update(key.as_bytes());
            h.update(&[0]);
            h.update(&(by.len() as u64).to_le_bytes());
            for (node, load) in by {
                h.update(node.as_str().as_bytes());
                h.update(&[0]);
                h.update(&load.to_le_bytes());
            }
        }
        for set in [&self.settling, &self.above] {
            h.update(&(set.len() as u64).to_le_bytes());
            for node in set {
                h.update(node.as_str().as_bytes());
                h.update(&[0]);
            }
        }
    }

    /// The parts [`Loads::restore`] takes back: node loads, hot keys by node and the nodes
    /// settling.
    pub fn parts(&self) -> LoadsParts<'_> {
        (&self.nodes, &self.keys, &self.settling, &self.above)
    }

    /// Restores loads from their parts (a snapshot).
    pub fn restore(
        nodes: BTreeMap<NodeId, u64>,
        keys: BTreeMap<String, BTreeMap<NodeId, u64>>,
        settling: BTreeSet<NodeId>,
        above: BTreeSet<NodeId>,
    ) -> Self {
        let mut reported: BTreeMap<NodeId, BTreeSet<String>> = BTreeMap::new();
        for (key, by) in &keys {
            for node in by.keys() {
                reported
                    .entry(node.clone())
                    .or_default()
                    .insert(key.clone());
            }
        }
        Self {
            nodes,
            keys,
            reported,
            settling,
            above,
            touched: Touched::default(),
            meta_touched: Touched::default(),
        }
    }
}

/// Where load balancing put hot keys: owners moved off the placement's choice, and read
/// replicas.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    moved: BTreeMap<String, NodeId>,
    replicas: BTreeMap<String, Vec<NodeId>>,
    last_round_ms: Option<u64>,
    /// Keys whose move or replicas changed (their read-model field is written again).
    touched: Touched<String>,
    /// Marked when a round ran (the round's time is written again).
    round_touched: Touched<()>,
}

/// What a round needs to know of the state.
#[allow(missing_debug_implementations)] // closures
pub struct RoundInput<'a> {
    /// `load_epsilon`, in percent.
    pub epsilon: u32,
    /// Nodes that may hold keys now, sorted by node id (as the placement keeps them).
    pub members: &'a [Member],
    /// The owner of an assigned key (`None`: not assigned, so not balanced).
    pub owner: &'a dyn Fn(&str) -> Option<NodeId>,
    /// A key's members in placement order (ring order, first the placement's owner).
    pub order: &'a dyn Fn(&str) -> Vec<NodeId>,
}

/// What a round changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundOutcome {
    /// Owners moved: key, from, to.
    pub moved: Vec<(String, NodeId, NodeId)>,
    /// Keys whose replicas changed.
    pub replicas: Vec<String>,
}

impl RoundOutcome {
    pub fn is_empty(&self) -> bool {
        self.moved.is_empty() && self.replicas.is_empty()
    }
}

/// The most a holder of a hot key should serve of it: the mean node load over
/// [`REPLICA_DIVISOR`] (small pieces pack well).
fn replica_cap(mean: u64) -> u64 {
    (mean / REPLICA_DIVISOR).max(1)
}

impl Plan {
    /// The node load balancing gave `key` to, if it moved it.
    pub fn moved_to(&self, key: &str) -> Option<&NodeId> {
        self.moved.get(key)
    }

    pub fn moved(&self) -> impl Iterator<Item = (&str, &NodeId)> {
        self.moved.iter().map(|(k, n)| (k.as_str(), n))
    }

    /// A hot key's read replicas (besides its owner).
    pub fn replicas_of(&self, key: &str) -> &[NodeId] {
        self.replicas.get(key).map_or(&[], Vec::as_slice)
    }

    pub fn replicas(&self) -> impl Iterator<Item = (&str, &[NodeId])> {
        self.replicas
            .iter()
            .map(|(k, n)| (k.as_str(), n.as_slice()))
    }

    pub fn last_round_ms(&self) -> Option<u64> {
        self.last_round_ms
    }

    pub fn is_empty(&self) -> bool {
        self.moved.is_empty() && self.replicas.is_empty() && self.last_round_ms.is_none()
    }

    /// Whether a round is due at log time `ms`.
    pub fn round_due(&self, ms: u64) -> bool {
        self.last_round_ms
            .is_none_or(|last| ms >= last.saturating_add(ROUND_MS))
    }

    /// Forgets that `key` moved for load (it is unassigned, or its owner is gone).
    pub fn forget_move(&mut self, key: &str) -> bool {
        let forgot = self.moved.remove(key).is_some();
        if forgot {
            self.touched.0.insert(key.to_owned());
        }
        forgot
    }

    /// The keys whose move or replicas changed since the last call.
    pub fn take_touched(&mut self) -> BTreeSet<String> {
        std::mem::take(&mut self.touched.0)
    }

    /// Whether a round ran since the last call.
    pub fn take_round_touched(&mut self) -> bool {
        !std::mem::take(&mut self.round_touched.0).is_empty()
    }

    /// Forgets moves to, and replicas on, nodes that are no members any more (`gone`):
    /// returns the keys whose move is forgotten (they go back to the placement's owner) and
    /// the replicas dropped (key, node), by key.
    pub fn drop_nodes(
        &mut self,
        gone: impl Fn(&NodeId) -> bool,
    ) -> (Vec<String>, Vec<(String, NodeId)>) {
        let mut unmoved = Vec::new();
        self.moved.retain(|key, node| {
            let keep = !gone(node);
            if !keep {
                unmoved.push(key.clone());
            }
            keep
        });
        let mut dropped = Vec::new();
        self.replicas.retain(|key, nodes| {
            nodes.retain(|n| {
                let keep = !gone(n);
                if !keep {
                    dropped.push((key.clone(), n.clone()));
                }
                keep
            });
            !nodes.is_empty()
        });
        self.touched.0.extend(unmoved.iter().cloned());
        self.touched
            .0
            .extend(dropped.iter().map(|(k, _)| k.clone()));
        (unmoved, dropped)
    }

    /// Drops a key's replicas (it is no longer assigned).
    pub fn drop_key(&mut self, key: &str) -> bool {
        let dropped = self.replicas.remove(key).is_some();
        if dropped {
            self.touched.0.insert(key.to_owned());
        }
        dropped
    }

    /// Feeds the plan to the state checksum.
    pub fn hash_into(&self, h: &mut crate::digest::Digest) {
        h.update(&(self.moved.len() as u64).to_le_bytes());
        for (key, node) in &self.moved {
            h.update(key.as_bytes());
            h.update(&[0]);
            h.update(node.as_str().as_bytes());
            h.update(&[0]);
        }
        h.update(&(self.replicas.len() as u64).to_le_bytes());
        for (key, nodes) in &self.replicas {
            h.update(key.as_bytes());
            h.update(&[0]);
            h.update(&(nodes.len() as u64).to_le_bytes());
            for node in nodes {
                h.update(node.as_str().as_bytes());
                h.update(&[0]);
            }
        }
        h.update(&self.last_round_ms.unwrap_or(0).to_le_bytes());
    }

    /// Restores a plan from its parts (a snapshot).
    pub fn restore(
        moved: BTreeMap<String, NodeId>,
        replicas: BTreeMap<String, Vec<NodeId>>,
        last_round_ms: Option<u64>,
    ) -> Self {
        Self {
            moved,
            replicas,
            last_round_ms,
            touched: Touched::default(),
            round_touched: Touched::default(),
        }
    }

    /// One round at log time `ms` (see the module docs).
    pub fn round(&mut self, ms: u64, loads: &mut Loads, input: &RoundInput<'_>) -> RoundOutcome {
        self.last_round_ms = Some(ms);
        self.round_touched.0.insert(());
        let mut out = RoundOutcome::default();
        let mut expected = Expected::of(input.members, &loads.nodes);
        if expected.len() < 2 {
            return out;
        }
        let mean = expected.total() / expected.len() as u64;
        if mean == 0 {
            return out;
        }
        let eps = u64::from(input.epsilon);
        let upper = mean * (100 + eps) / 100;
        let target = mean * (200 + eps) / 200;
        let mut budget = MAX_MOVES_PER_ROUND;
        let mut settling: BTreeSet<NodeId> = loads.settling.clone();

        // Hot keys, heaviest first: (load, key, holders).
        let mut hot: Vec<(u64, String, Vec<NodeId>)> = Vec::new();
        for (key, by) in &loads.keys {
            let Some(owner) = (input.owner)(key) else {
                continue;
            };
            let mut holders = vec![owner];
            holders.extend(self.replicas_of(key).iter().cloned());
            // Holders split a key's reads evenly, so any holder's share times their number
            // estimates the whole; the largest share does so even when some holder left the
            // key out of its top keys.
            let share = by
                .iter()
                .filter(|(n, _)| holders.contains(n))
                .map(|(_, l)| *l)
                .max()
                .unwrap_or(0);
            let load = share.saturating_mul(holders.len() as u64);
            if load > 0 {
                hot.push((load, key.clone(), holders));
            }
        }
        hot.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));

        let cap = replica_cap(mean);
        for (load, key, holders) in &mut hot {
            if budget == 0 {
                break;
            }
            let count = holders.len() as u64;
            let wanted = load.div_ceil(cap).clamp(1, input.members.len() as u64);
            let grow = *load / count > cap * (100 + eps) / 100 && wanted > count;
            // Shrink only when every remaining holder has room for its larger share.
            let shrink = count > 1
                && !grow
                && *load / (count - 1) < cap * (100 - eps.min(100)) / 100
                && holders[..holders.len() - 1].iter().all(|n| {
                    let more = *load / (count - 1) - *load / count;
                    expected.get(n).is_some_and(|e| e + more <= target)
                });
            if grow {
                let add = (wanted - count) as usize;
                let share = *load / wanted;
                // A new holder must stay within the band, or at least end less busy than the
                // busiest holder does after the split (node and key loads are measured apart,
                // so a key that is all of a node's load may not fit the band exactly).
                let busiest_after = holders
                    .iter()
                    .filter_map(|n| expected.get(n))
                    .max()
                    .map_or(0, |e| e.saturating_sub(*load / count - share));
                let room = target.max(busiest_after);
                let picked: Vec<NodeId> = (input.order)(key)
                    .into_iter()
                    .filter(|n| !holders.contains(n) && !settling.contains(n))
                    .filter(|n| {
                        expected
                            .get(n)
                            .is_some_and(|e| e.saturating_add(share) <= room)
                    })
                    .take(add.min(budget))
                    .collect();
                if picked.is_empty() {
                    continue;
                }
                let old_share = *load / count;
                let new_share = *load / (count + picked.len() as u64);
                for n in holders.iter() {
                    if let Some(e) = expected.get_mut(n) {
                        *e = e.saturating_sub(old_share - new_share);
                    }
                }
                for n in &picked {
                    // Picked only among members with an expected load.
                    if let Some(e) = expected.get_mut(n) {
                        *e += new_share;
                    }
                    settling.insert(n.clone());
                }
                budget -= picked.len();
                holders.extend(picked.iter().cloned());
                self.replicas.entry(key.clone()).or_default().extend(picked);
                loads.reset_key(key);
                out.replicas.push(key.clone());
            } else if shrink {
                let Some(gone) = self.replicas.get_mut(key.as_str()).and_then(Vec::pop) else {
                    continue;
                };
                if self.replicas.get(key.as_str()).is_some_and(Vec::is_empty) {
                    self.replicas.remove(key.as_str());
                }
                let (old_share, new_share) = (*load / count, *load / (count - 1));
                if let Some(e) = expected.get_mut(&gone) {
                    *e = e.saturating_sub(old_share);
                }
                holders.retain(|n| *n != gone);
                for n in holders.iter() {
                    if let Some(e) = expected.get_mut(n) {
                        *e += new_share - old_share;
                    }
                }
                loads.reset_key(key);
                budget -= 1;
                out.replicas.push(key.clone());
            }
        }

        // Overloaded nodes, busiest first.
        // Hysteresis: a node sheds keys only when it was above the band at the last round too
        // (one noisy report moves nothing).
        // The nodes above now and those above at the last round are both sorted by node id:
        // one merge pass finds the nodes above at both and what changed. At 10,000 nodes a
        // quarter may sit above the band with nothing to shed; a lookup per node, or the set
        // built anew, cost more than the rest of the round.
        let mut over: Vec<(u64, &NodeId)> = Vec::new();
        let mut entered: Vec<&NodeId> = Vec::new();
        let mut left: Vec<NodeId> = Vec::new();
        let mut before = loads.above.iter().peekable();
        for (n, e) in expected.iter().filter(|(_, e)| *e > upper) {
            while let Some(gone) = before.next_if(|b| *b < n) {
                left.push(gone.clone());
            }
            if before.next_if(|b| *b == n).is_none() {
                entered.push(n);
            } else if !settling.contains(n) {
                over.push((e, n));
            }
        }
        left.extend(before.cloned());
        if !entered.is_empty() || !left.is_empty() {
            for n in &left {
                loads.above.remove(n);
            }
            loads.above.extend(entered.into_iter().cloned());
            loads.meta_touched.0.insert(());
        }
        // Only hot keys are moved for load: without any, there is nothing to shed.
        if hot.is_empty() {
            over.clear();
        }
        over.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        for (_, from) in over {
            // Its pieces of hot keys, largest first.
            let mut pieces: Vec<(u64, usize)> = hot
                .iter()
                .enumerate()
                .filter(|(_, (_, _, holders))| holders.contains(from))
                .map(|(i, (load, _, holders))| (*load / holders.len() as u64, i))
                .collect();
            pieces.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
            for (share, i) in pieces {
                if budget == 0 || expected.get(from).is_none_or(|e| e <= mean) {
                    break;
                }
                let (_, key, holders) = &mut hot[i];
                let to = (input.order)(key).into_iter().find(|n| {
                    !holders.contains(n)
                        && !settling.contains(n)
                        && expected
                            .get(n)
                            .is_some_and(|e| e.saturating_add(share) <= target)
                });
                let Some(to) = to else { continue };
                if holders[0] == *from {
                    self.moved.insert(key.clone(), to.clone());
                    out.moved.push((key.clone(), from.clone(), to.clone()));
                } else if let Some(replicas) = self.replicas.get_mut(key.as_str()) {
                    for r in replicas.iter_mut().filter(|r| **r == *from) {
                        *r = to.clone();
                    }
                    out.replicas.push(key.clone());
                }
                for h in holders.iter_mut().filter(|h| **h == *from) {
                    *h = to.clone();
                }
                loads.drop_holder(key, from);
                if let Some(e) = expected.get_mut(from) {
                    *e = e.saturating_sub(share);
                }
                // Picked only among members with an expected load.
                if let Some(e) = expected.get_mut(&to) {
                    *e += share;
                }
                settling.insert(from.clone());
                settling.insert(to);
                budget -= 1;
            }
        }
        out.replicas.sort();
        out.replicas.dedup();
        self.touched.0.extend(out.replicas.iter().cloned());
        self.touched
            .0
            .extend(out.moved.iter().map(|(k, _, _)| k.clone()));
        if settling != loads.settling {
            loads.settling = settling;
            loads.meta_touched.0.insert(());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_parse_as_thousandths_and_refuse_garbage() {
        assert_eq!(parse_load("12.5"), Ok(12_500));
        assert_eq!(parse_load(" 0 "), Ok(0));
        assert_eq!(parse_load("1e3"), Ok(1_000_000));
        assert_eq!(parse_load("0.0004"), Ok(0));
        assert!(matches!(parse_load("fast"), Err(LoadError::NotANumber(_))));
        assert!(matches!(parse_load("-1"), Err(LoadError::Negative(_))));
        assert!(matches!(parse_load("NaN"), Err(LoadError::NotFinite(_))));
        assert!(matches!(parse_load("inf"), Err(LoadError::NotFinite(_))));
        assert!(matches!(parse_load("2e12"), Err(LoadError::TooLarge(_))));
        assert!(matches!(parse_load(""), Err(LoadError::NotANumber(_))));
    }

    #[test]
    fn loads_format_back_to_what_parses() {
        for milli in [0, 1, 10, 999, 1000, 12_500, 123_456_789] {
            assert_eq!(parse_load(&format_load(milli)), Ok(milli), "{milli}");
        }
        assert_eq!(format_load(12_500), "12.5");
        assert_eq!(format_load(3_000), "3");
    }

    #[test]
    fn smoothing_moves_halfway() {
        assert_eq!(smooth(None, 100), 100);
        assert_eq!(smooth(Some(100), 300), 200);
        assert_eq!(smooth(Some(1), 2), 1);
        assert_eq!(smooth(Some(u64::MAX), u64::MAX), u64::MAX);
    }
}
