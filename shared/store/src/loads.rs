//! The read model of load-aware placement (ADR 0018), in the `loads` hash:
//!
//! * `k:<node>` → JSON `[[key, load], …]`: the hot keys `node` reported and still holds,
//!   with their smoothed loads in thousandths;
//! * `p:<key>` → JSON `{"to": node|null, "replicas": [node, …]}`: where load placement moved
//!   a hot key (`to`), and its read replicas;
//! * `meta` → JSON `{"settling": [node, …], "above": [node, …]}`: the nodes settling after
//!   a load move and those above the band at the last round (written when they change);
//! * `round` → the log time (ms) of the last round. Kept apart from `meta` because a round
//!   runs every 2 s while loads move and seldom changes `meta`, which at 10,000 nodes lists
//!   thousands. (Read models written before lack it and carry the time in `meta`'s `round`.)
//!
//! Node loads live in their own hash, `node_loads` (node → thousandths), so that a `loads`
//! entry naming hundreds of nodes writes one short field each. The projector restores the whole
//! [`Loads`] and [`Plan`] from these, so a restart decides exactly as the fold did.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use pantheon_domain::load::{Loads, Plan};
use pantheon_domain::{Applied, NodeId, State};
use redis::aio::ConnectionLike;
use serde::{Deserialize, Serialize};

use crate::StoreError;
use crate::commit::Batch;
use crate::layout::Layout;

/// The field of the last round's log time.
const ROUND: &str = "round";

/// Where load placement put one hot key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPlan {
    pub to: Option<String>,
    pub replicas: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Meta {
    /// Only in read models written before the round's time had a field of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    round: Option<u64>,
    settling: Vec<String>,
    #[serde(default)]
    above: Vec<String>,
}

/// The parts of [`Loads`] and [`Plan`] a snapshot keeps (the same as the read model's).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadParts {
    pub nodes: BTreeMap<String, u64>,
    pub keys: BTreeMap<String, Vec<(String, u64)>>,
    pub plan: BTreeMap<String, KeyPlan>,
    pub round: Option<u64>,
    pub settling: Vec<String>,
    #[serde(default)]
    pub above: Vec<String>,
}

impl LoadParts {
    pub fn of(state: &State) -> Self {
        let loads = state.loads();
        let (nodes, _, settling, above) = loads.parts();
        let mut keys: BTreeMap<String, Vec<(String, u64)>> = BTreeMap::new();
        for node in nodes
            .keys()
            .chain(loads.keys().flat_map(|(_, by)| by.keys()))
        {
            let of = loads.keys_of(node);
            if !of.is_empty() {
                keys.insert(
                    node.to_string(),
                    of.into_iter().map(|(k, l)| (k.to_owned(), l)).collect(),
                );
            }
        }
        let plan = state.load_plan();
        let mut by_key: BTreeMap<String, KeyPlan> = BTreeMap::new();
        for (key, to) in plan.moved() {
            by_key.entry(key.to_owned()).or_default().to = Some(to.to_string());
        }
        for (key, replicas) in plan.replicas() {
            by_key.entry(key.to_owned()).or_default().replicas =
                replicas.iter().map(ToString::to_string).collect();
        }
        Self {
            nodes: nodes.iter().map(|(n, l)| (n.to_string(), *l)).collect(),
            keys,
            plan: by_key,
            round: plan.last_round_ms(),
            settling: settling.iter().map(ToString::to_string).collect(),
            above: above.iter().map(ToString::to_string).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The loads and plan these parts describe.
    pub fn restore(&self) -> Result<(Loads, Plan), String> {
        let node = |n: &str| NodeId::new(n).map_err(|e| format!("load of node {n:?}: {e}"));
        let nodes = self
            .nodes
            .iter()
            .map(|(n, l)| Ok((node(n)?, *l)))
            .collect::<Result<BTreeMap<_, _>, String>>()?;
        let mut keys: BTreeMap<String, BTreeMap<NodeId, u64>> = BTreeMap::new();
        for (n, list) in &self.keys {
            let n = node(n)?;
            for (key, load) in list {
                keys.entry(key.clone())
                    .or_default()
                    .insert(n.clone(), *load);
            }
        }
        let settling = self
            .settling
            .iter()
            .map(|n| node(n))
            .collect::<Result<BTreeSet<_>, _>>()?;
        let above = self
            .above
            .iter()
            .map(|n| node(n))
            .collect::<Result<BTreeSet<_>, _>>()?;
        let mut moved = BTreeMap::new();
        let mut replicas = BTreeMap::new();
        for (key, p) in &self.plan {
            if let Some(to) = &p.to {
                moved.insert(key.clone(), node(to)?);
            }
            if !p.replicas.is_empty() {
                let r = p
                    .replicas
                    .iter()
                    .map(|n| node(n))
                    .collect::<Result<_, _>>()?;
                replicas.insert(key.clone(), r);
            }
        }
        Ok((
            Loads::restore(nodes, keys, settling, above),
            Plan::restore(moved, replicas, self.round),
        ))
    }
}

fn key_plan(state: &State, key: &str) -> Option<KeyPlan> {
    let plan = state.load_plan();
    let p = KeyPlan {
        to: plan.moved_to(key).map(ToString::to_string),
        replicas: plan
            .replicas_of(key)
            .iter()
            .map(ToString::to_string)
            .collect(),
    };
    (p != KeyPlan::default()).then_some(p)
}

/// Stages what `applied` changed of the load read model.
pub fn stage_applied(batch: &mut Batch, layout: &Layout, state: &State, applied: &Applied) {
    let hash = layout.loads();
    let mut set: Vec<(String, String)> = Vec::new();
    let mut del: Vec<String> = Vec::new();
    for node in &applied.key_loads_changed {
        let keys = state.loads().keys_of(node);
        let field = format!("k:{node}");
        if keys.is_empty() {
            del.push(field);
        } else {
            set.push((field, serde_json::to_string(&keys).unwrap_or_default()));
        }
    }
    for key in &applied.plan_changed {
        let field = plan_field(key);
        match key_plan(state, key) {
            Some(p) => set.push((field, serde_json::to_string(&p).unwrap_or_default())),
            None => del.push(field),
        }
    }
    if applied.load_round_changed
        && let Some(round) = state.load_plan().last_round_ms()
    {
        set.push((ROUND.to_owned(), round.to_string()));
    }
    if applied.load_meta_changed {
        let (_, _, settling, above) = state.loads().parts();
        let meta = Meta {
            round: None,
            settling: settling.iter().map(ToString::to_string).collect(),
            above: above.iter().map(ToString::to_string).collect(),
        };
        set.push((
            "meta".to_owned(),
            serde_json::to_string(&meta).unwrap_or_default(),
        ));
    }
    if !set.is_empty() {
        batch.hset(&hash, &set);
    }
    if !del.is_empty() {
        batch.call_chunked("HDEL", &hash, &[], &del);
    }
    stage_node_loads(batch, layout, state, &applied.node_loads_changed);
}

/// Stages the `node_loads` fields of `nodes` as `state` has them (absent: the field goes).
fn stage_node_loads(batch: &mut Batch, layout: &Layout, state: &State, nodes: &[NodeId]) {
    let hash = layout.node_loads();
    let mut set: Vec<(&str, String)> = Vec::new();
    let mut del: Vec<&str> = Vec::new();
    for node in nodes {
        match state.loads().node(node) {
            Some(load) => set.push((node.as_str(), load.to_string())),
            None => del.push(node.as_str()),
        }
    }
    if !set.is_empty() {
        batch.hset(&hash, &set);
    }
    if !del.is_empty() {
        batch.call_chunked("HDEL", &hash, &[], &del);
    }
}

/// Stages the whole load read model of `state` (a rebuild or a re-seed).
pub fn stage_all(batch: &mut Batch, layout: &Layout, state: &State) {
    let hash = layout.loads();
    batch.call("DEL", &[&hash], std::iter::empty::<&str>());
    batch.call("DEL", &[&layout.node_loads()], std::iter::empty::<&str>());
    let reported: Vec<NodeId> = state.loads().parts().0.keys().cloned().collect();
    stage_node_loads(batch, layout, state, &reported);
    let parts = LoadParts::of(state);
    let mut set: Vec<(String, String)> = Vec::new();
    for (node, keys) in &parts.keys {
        set.push((
            format!("k:{node}"),
            serde_json::to_string(keys).unwrap_or_default(),
        ));
    }
    for (key, p) in &parts.plan {
        set.push((
            plan_field(key),
            serde_json::to_string(p).unwrap_or_default(),
        ));
    }
    if let Some(round) = parts.round {
        set.push((ROUND.to_owned(), round.to_string()));
    }
    if !parts.settling.is_empty() || !parts.above.is_empty() {
        let meta = Meta {
            round: None,
            settling: parts.settling.clone(),
            above: parts.above.clone(),
        };
        set.push((
            "meta".to_owned(),
            serde_json::to_string(&meta).unwrap_or_default(),
        ));
    }
    if !set.is_empty() {
        batch.hset(&hash, &set);
    }
}

/// Reads the load read model back; node loads are read apart (`node_loads`).
pub async fn load<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    node_loads: BTreeMap<String, u64>,
) -> Result<LoadParts, StoreError> {
    let hash = layout.loads();
    let all: HashMap<String, String> = redis::cmd("HGETALL").arg(&hash).query_async(con).await?;
    let damaged = |field: &str, e: serde_json::Error| StoreError::Damaged {
        key: hash.clone(),
        reason: format!("{field}: {e}"),
    };
    let mut parts = LoadParts {
        nodes: node_loads,
        ..LoadParts::default()
    };
    for (field, value) in &all {
        if let Some(node) = field.strip_prefix("k:") {
            let keys = serde_json::from_str(value).map_err(|e| damaged(field, e))?;
            parts.keys.insert(node.to_owned(), keys);
        } else if let Some(key) = field.strip_prefix("p:") {
            let p = serde_json::from_str(value).map_err(|e| damaged(field, e))?;
            parts.plan.insert(key.to_owned(), p);
        } else if field == "meta" {
            let meta: Meta = serde_json::from_str(value).map_err(|e| damaged(field, e))?;
            parts.round = meta.round;
            parts.settling = meta.settling;
            parts.above = meta.above;
        }
    }
    if let Some(round) = all.get(ROUND) {
        let round = round.parse().map_err(|e| StoreError::Damaged {
            key: hash.clone(),
            reason: format!("{ROUND}: {e}"),
        })?;
        parts.round = Some(round);
    }
    Ok(parts)
}

/// The nodes settling after a load move (the `meta` field's `settling`; none when load
/// placement never ran). Node ids that are not valid are left out.
pub async fn settling<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
) -> Result<BTreeSet<NodeId>, StoreError> {
    let hash = layout.loads();
    let meta: Option<String> = redis::cmd("HGET")
        .arg(&hash)
        .arg("meta")
        .query_async(con)
        .await?;
    let Some(meta) = meta else {
        return Ok(BTreeSet::new());
    };
    let meta: Meta = serde_json::from_str(&meta).map_err(|e| StoreError::Damaged {
        key: hash.clone(),
        reason: format!("meta: {e}"),
    })?;
    Ok(meta
        .settling
        .iter()
        .filter_map(|n| NodeId::new(n).ok())
        .collect())
}

/// The `loads` field of `key`'s plan.
pub fn plan_field(key: &str) -> String {
    format!("p:{key}")
}

/// The read replicas in a `p:<key>` value as read from `layout`'s `loads` hash (none when the
/// field is absent).
pub fn parse_replicas(
    layout: &Layout,
    key: &str,
    json: Option<&str>,
) -> Result<Vec<NodeId>, StoreError> {
    let Some(json) = json else {
        return Ok(Vec::new());
    };
    let damaged = |reason: String| StoreError::Damaged {
        key: layout.loads(),
        reason: format!("{}: {reason}", plan_field(key)),
    };
    let plan: KeyPlan = serde_json::from_str(json).map_err(|e| damaged(e.to_string()))?;
    plan.replicas
        .iter()
        .map(|n| NodeId::new(n).map_err(|e| damaged(format!("replica {n:?}: {e}"))))
        .collect()
}

/// One hot key's read replicas (`locate` names them; empty for a key without).
pub async fn replicas_of<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    key: &str,
) -> Result<Vec<NodeId>, StoreError> {
    let json: Option<String> = redis::cmd("HGET")
        .arg(layout.loads())
        .arg(plan_field(key))
        .query_async(con)
        .await?;
    parse_replicas(layout, key, json.as_deref())
}

#[cfg(test)]
mod tests {
    use pantheon_domain::entry::{Command, LogEntry, ProbeResult};
    use pantheon_domain::policy::PolicyChange;
    use pantheon_domain::{EntryId, NodeId, State};

    use crate::snapshot::Snapshot;

    fn node(n: &str) -> NodeId {
        NodeId::new(n).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A state whose load placement moved or replicated a hot key.
    fn balanced() -> State {
        let mut state = State::default();
        let mut t = 1_700_000_000_000u64;
        let mut apply = |state: &mut State, c: Command| {
            t += 3_000;
            state
                .apply(EntryId::new(t, 0), &LogEntry::new(c))
                .unwrap_or_else(|e| panic!("{e}"));
        };
        for (i, n) in ["a", "b", "c", "d"].into_iter().enumerate() {
            apply(
                &mut state,
                Command::Join {
                    node: node(n),
                    url: format!("http://{n}.local/health"),
                    weight: None,
                    handoff: false,
                },
            );
            apply(
                &mut state,
                Command::Probe(ProbeResult {
                    node: node(n),
                    epoch: i as u64 + 1,
                    ok: true,
                    status: Some(200),
                    latency_ms: 1,
                    error: None,
                    prober: None,
                }),
            );
        }
        let keys: Vec<String> = (0..100).map(|i| format!("k{i}")).collect();
        apply(&mut state, Command::Assign { keys });
        apply(
            &mut state,
            Command::Policy(PolicyChange {
                load_epsilon: Some(10),
                ..PolicyChange::default()
            }),
        );
        let owner = state
            .keys()
            .get("k1")
            .flatten()
            .cloned()
            .unwrap_or_else(|| node("a"));
        apply(
            &mut state,
            Command::KeyLoads {
                node: owner.clone(),
                keys: vec![("k1".into(), 300_000)],
            },
        );
        let reports = ["a", "b", "c", "d"]
            .into_iter()
            .map(|n| {
                let load = if node(n) == owner { "400" } else { "100" };
                (node(n), load.to_owned())
            })
            .collect();
        apply(&mut state, Command::Loads { reports });
        state
    }

    #[test]
    fn a_snapshot_keeps_loads_and_the_plan() {
        let state = balanced();
        assert!(!state.load_plan().is_empty(), "{:?}", state.load_plan());
        let json = serde_json::to_string(&Snapshot::of(&state, EntryId::new(1, 0)))
            .unwrap_or_else(|e| panic!("{e}"));
        let back: Snapshot = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        // `restore` checks the checksum, which covers loads and the plan.
        let (restored, _) = back.restore().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(restored.load_plan(), state.load_plan());
        assert_eq!(restored.loads(), state.loads());
        assert_eq!(restored.policy().load_epsilon, 10);
    }

    #[test]
    fn a_snapshot_without_loads_has_no_loads_field() {
        let json = serde_json::to_string(&Snapshot::of(&State::default(), EntryId::new(1, 0)))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!json.contains("\"loads\""), "{json}");
        assert!(!json.contains("load_epsilon"), "{json}");
    }
}
