//! The fold's side of load reports and load-aware placement (ADR 0018): what `loads` and
//! `key_loads` entries do to the state. The round itself is [`crate::load::Plan::round`].

use super::{Applied, Rejection, State};
use crate::event::EventKind;
use crate::ids::{EntryId, NodeId};
use crate::load::{NO_LOAD, RoundInput, parse_load};
use crate::placement;

impl State {
    /// A prober's `loads` entry: each node's load (a text that is not a load is refused with
    /// a `load_refused` event; [`NO_LOAD`] forgets the node's figure: it stopped reporting);
    /// then, with `load_epsilon` above 0, a round when one is due.
    pub(super) fn loads_reported(
        &mut self,
        id: EntryId,
        reports: &[(NodeId, String)],
        out: &mut Applied,
    ) {
        for (node, text) in reports {
            // A node that left meanwhile: its load no longer means anything.
            let Some(epoch) = self.nodes.get(node).map(|n| n.epoch) else {
                continue;
            };
            if text.trim() == NO_LOAD {
                if self.loads.clear_node(node) {
                    out.node_loads_changed.push(node.clone());
                }
                continue;
            }
            match parse_load(text) {
                Ok(load) => {
                    if self.loads.report_node(node, load) {
                        out.node_loads_changed.push(node.clone());
                    }
                }
                Err(e) => {
                    let kind = EventKind::LoadRefused {
                        node: node.clone(),
                        epoch,
                        reason: e.to_string(),
                    };
                    self.emit(out, id, kind);
                }
            }
        }
        out.node_loads_changed.sort_unstable();
        out.node_loads_changed.dedup();
        if self.policy.load_epsilon > 0 && !self.placement_off && self.plan.round_due(id.ms) {
            self.load_round(id, out);
        }
    }

    /// A worker's `key_loads` entry: the loads of its hottest keys. Keys it does not hold
    /// (own or replicate) are ignored: the report is late, or not its to make.
    pub(super) fn key_loads_reported(
        &mut self,
        node: &NodeId,
        keys: &[(String, u64)],
    ) -> Result<(), Rejection> {
        if !self.nodes.contains_key(node) {
            return Err(Rejection::UnknownNode(node.clone()));
        }
        let held: Vec<(String, u64)> = keys
            .iter()
            .filter(|(key, _)| {
                self.keys.get(key) == Some(Some(node)) || self.plan.replicas_of(key).contains(node)
            })
            .cloned()
            .collect();
        self.loads.report_keys(node, &held);
        Ok(())
    }

    /// One round of load-aware placement at entry `id`: settles first (so owners and the
    /// placement are current), lets the plan decide, then moves what it moved in this same
    /// entry, through hand-offs where the owner hands off.
    fn load_round(&mut self, id: EntryId, out: &mut Applied) {
        self.settle_into(out);
        let (placement, keys) = (&*self.placement, &self.keys);
        let owner = |key: &str| keys.get(key).flatten().cloned();
        let order = |key: &str| placement.order_of_hash(key, placement::key_hash(key), usize::MAX);
        let input = RoundInput {
            epsilon: self.policy.load_epsilon,
            members: placement.members(),
            owner: &owner,
            order: &order,
        };
        let outcome = self.plan.round(id.ms, &mut self.loads, &input);
        if outcome.is_empty() {
            return;
        }
        // A round moves keys, not node loads: this is the figure it acted on.
        let busiest = self.busiest_percent();
        for (key, _, _) in &outcome.moved {
            self.load_listed
                .push((placement::key_hash(key), key.as_str().into()));
        }
        out.replicas_changed
            .extend(outcome.replicas.iter().cloned());
        let kind = EventKind::LoadBalanced {
            moved: outcome.moved.len() as u64,
            replicas: outcome.replicas.len() as u64,
            busiest,
        };
        self.emit(out, id, kind);
        if !self.load_listed.is_empty() {
            self.pending.get_or_insert(id);
            self.settle_into(out);
        }
    }

    /// The busiest member's reported load over the mean, in percent (0 without reports).
    fn busiest_percent(&self) -> u64 {
        let loads: Vec<u64> = (self.placement.members().iter())
            .filter_map(|m| self.loads.node(&m.node))
            .collect();
        let total: u64 = loads.iter().sum();
        match (loads.iter().max(), total) {
            (Some(max), total) if total > 0 => max * 100 * loads.len() as u64 / total,
            _ => 0,
        }
    }
}

impl State {
    /// Names in `out` the load read models the entry changed.
    pub(super) fn collect_load_changes(&mut self, out: &mut Applied) {
        out.load_meta_changed |= self.loads.take_meta_touched();
        out.load_round_changed |= self.plan.take_round_touched();
        for node in self.loads.take_touched() {
            if !out.key_loads_changed.contains(&node) {
                out.key_loads_changed.push(node);
            }
        }
        for key in self.plan.take_touched() {
            if !out.plan_changed.contains(&key) {
                out.plan_changed.push(key);
            }
        }
    }
}
