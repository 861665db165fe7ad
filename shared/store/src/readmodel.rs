//! The read models: how the decided state is laid out in Redis, how a fold result becomes
//! commit operations, and how a `State` is loaded back at start-up.
//!
//! * `nodes`: hash node id → JSON [`NodeRecord`];
//! * `ring`: hash with `strategy`, `vnodes`, `members` (`id=weight` space-separated, sorted),
//!   `fall`, `rise`, `panic`, `damp_*`, `version` (bumped on every change, and by a rebuild), `probers` (live
//!   prober replicas, space-separated; absent until first reported);
//! * `keymap`: hash key → node; `node:<id>:keys`: set of a node's keys; `unowned`: set;
//! * `cmds`: hash client command id → log id (the de-duplication window);
//! * `checkpoint`: hash `last_id`, `checksum` (16 hex digits), `next_epoch`, `ring_version`,
//!   `keys`, `nodes`, `leader`.

use std::collections::{BTreeMap, HashMap};

use pantheon_domain::cmds::RecordedCmd;
use pantheon_domain::health::{Health, NodeHealth};
use pantheon_domain::last_change::LastChange;
use pantheon_domain::placement::{Member, Strategy};
use pantheon_domain::{Applied, EntryId, KeyChange, Node, NodeId, Policy, State};
use redis::aio::ConnectionLike;
use serde::{Deserialize, Serialize};

use crate::StoreError;
use crate::commit::Batch;
use crate::layout::Layout;

/// One node as stored in the `nodes` hash (JSON), readable from any language.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node: String,
    /// `joining`, `alive`, `suspect`, `dead` or `draining`.
    pub state: String,
    /// `joining`, `alive`, `suspect` or `dead` (kept while draining).
    pub health: String,
    pub draining: bool,
    pub url: String,
    pub epoch: u64,
    pub weight: u32,
    /// Consecutive failed probes.
    pub fails: u32,
    /// Consecutive successful probes while suspect or dead.
    pub successes: u32,
    /// The last transition (`joined`, `suspect`, `died`, ...), the log id that caused it, and
    /// its time in milliseconds.
    pub last: String,
    pub since: String,
    pub since_ms: u64,
    /// Dead, but kept in placement with its keys by the panic threshold. Absent (false) in
    /// records written before the threshold existed.
    #[serde(default)]
    pub held: bool,
    /// Flap damping: the penalty, the log time (ms) it was current, and whether the node is
    /// damped. Absent (0, 0, false) in records written before damping existed.
    #[serde(default)]
    pub penalty: u32,
    #[serde(default)]
    pub penalty_at: u64,
    #[serde(default)]
    pub damped: bool,
    /// The token clock's value when the node last became a member (0: never; absent in
    /// records written before tokens). Its keys' token is the larger of this and the ring's
    /// `token_floor` (docs/adr/0015).
    #[serde(default)]
    pub token: u64,
    /// Joined with `handoff`: planned moves wait for it to release its keys (docs/adr/0016).
    /// Absent (false) in records written before hand-offs.
    #[serde(default)]
    pub handoff: bool,
    /// Keys it was asked to hand off and has not released yet (0 in snapshots, where it is
    /// derived again on restore, and in records written before it existed).
    #[serde(default)]
    pub handing: u64,
    /// The node's reported load (ADR 0018), as the prober last wrote it, in thousandths of
    /// its unit; absent until it reports one. Stored apart, in the `node_loads` hash (and
    /// in snapshots with the other loads): readers fill it in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<u64>,
}

impl NodeRecord {
    pub fn from_node(n: &Node) -> Self {
        Self {
            node: n.id.to_string(),
            state: n.state().to_owned(),
            health: n.health.health.as_str().to_owned(),
            draining: n.draining,
            url: n.url.clone(),
            epoch: n.epoch,
            weight: n.weight,
            fails: n.health.fails,
            successes: n.health.successes,
            last: n.last.as_str().to_owned(),
            since: n.since.to_string(),
            since_ms: n.since.ms,
            held: n.held,
            penalty: n.penalty.value,
            penalty_at: n.penalty.at,
            damped: n.damped,
            token: n.token,
            handoff: n.hands_off,
            handing: 0,
            load: None,
        }
    }

    /// The record of `n` as readers see it: with the keys it is handing off now and its load.
    pub fn of(state: &State, n: &Node) -> Self {
        Self {
            load: state.loads().node(&n.id),
            ..Self::stored(state, n)
        }
    }

    /// The record of `n` as the `nodes` hash stores it: its load lives apart, in
    /// `node_loads`, so that a load report rewrites no record.
    pub fn stored(state: &State, n: &Node) -> Self {
        Self {
            handing: state.handing_off().count(&n.id) as u64,
            ..Self::from_node(n)
        }
    }

    /// Parses a record read from the `nodes` hash; a damaged one names the node.
    pub fn parse(node: &str, json: &str) -> Result<Self, StoreError> {
        serde_json::from_str(json).map_err(|e| StoreError::Reply(format!("node {node}: {e}")))
    }

    pub fn to_node(&self) -> Result<Node, String> {
        Ok(Node {
            id: NodeId::new(&self.node).map_err(|e| e.to_string())?,
            url: self.url.clone(),
            weight: self.weight,
            epoch: self.epoch,
            health: NodeHealth {
                health: self.health.parse::<Health>()?,
                fails: self.fails,
                successes: self.successes,
            },
            draining: self.draining,
            since: self
                .since
                .parse()
                .map_err(|e: pantheon_domain::ids::EntryIdError| e.to_string())?,
            last: self.last.parse::<LastChange>()?,
            held: self.held,
            penalty: pantheon_domain::damping::Penalty {
                value: self.penalty,
                at: self.penalty_at,
            },
            damped: self.damped,
            token: self.token,
            hands_off: self.handoff,
        })
    }
}

/// The checkpoint committed with every batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoint {
    pub last_id: Option<EntryId>,
    pub checksum: u64,
    pub next_epoch: u64,
    pub ring_version: u64,
}

impl Checkpoint {
    /// The `last_id` as the commit script compares it ("" before the first commit).
    pub fn last_id_arg(&self) -> String {
        self.last_id.map(|id| id.to_string()).unwrap_or_default()
    }
}

/// Members of the current placement as `id=weight` pairs, sorted by id.
pub fn members_field(state: &State) -> String {
    let parts: Vec<String> = state
        .placement()
        .members()
        .iter()
        .map(|m| format!("{}={}", m.node, m.weight))
        .collect();
    parts.join(" ")
}

/// The ring hash's field with the token floor: every key's token is at least this.
pub const TOKEN_FLOOR_FIELD: &str = "token_floor";

/// Each owner's token (the token of the keys it owns: members, and nodes still handing keys
/// off) as `id=token` pairs, sorted by id.
pub fn tokens_field(state: &State) -> String {
    let parts: Vec<String> = state
        .nodes()
        .filter_map(|n| Some(format!("{}={}", n.id, state.token_of(&n.id)?)))
        .collect();
    parts.join(" ")
}

/// Stages the ring definition.
pub fn stage_ring(batch: &mut Batch, layout: &Layout, state: &State, version: u64) {
    let p = state.policy();
    let fields = [
        ("strategy", p.strategy.as_str().to_owned()),
        ("vnodes", p.vnodes.to_string()),
        ("fall", p.fall.to_string()),
        ("rise", p.rise.to_string()),
        ("panic", p.panic.to_string()),
        ("damp_penalty", p.damp_penalty.to_string()),
        ("damp_suppress", p.damp_suppress.to_string()),
        ("damp_reuse", p.damp_reuse.to_string()),
        ("damp_half_life", p.damp_half_life.to_string()),
        ("damp_max_suppress", p.damp_max_suppress.to_string()),
        ("handoff_timeout", p.handoff_timeout.to_string()),
        ("load_epsilon", p.load_epsilon.to_string()),
        ("members", members_field(state)),
        ("tokens", tokens_field(state)),
        ("token_clock", state.tokens().clock().to_string()),
        (TOKEN_FLOOR_FIELD, state.tokens().floor().to_string()),
        ("version", version.to_string()),
    ];
    batch.hset(&layout.ring(), &fields);
    if let Some(probers) = state.probers() {
        batch.hset(&layout.ring(), &[("probers", probers.join(" "))]);
    }
}

/// Stages the checkpoint after `last_id`.
pub fn stage_checkpoint(
    batch: &mut Batch,
    layout: &Layout,
    state: &State,
    cp: &Checkpoint,
    leader: &str,
) {
    let fields = [
        ("last_id", cp.last_id_arg()),
        ("checksum", format!("{:016x}", cp.checksum)),
        ("next_epoch", cp.next_epoch.to_string()),
        ("ring_version", cp.ring_version.to_string()),
        ("keys", state.keys().len().to_string()),
        ("nodes", state.node_count().to_string()),
        ("leader", leader.to_owned()),
    ];
    batch.hset(&layout.checkpoint(), &fields);
}

/// Stages the read-model changes of one applied entry (events are staged by the caller).
pub fn stage_applied(batch: &mut Batch, layout: &Layout, state: &State, applied: &Applied) {
    for id in records_to_write(state, applied) {
        match state.node(id) {
            Some(n) => {
                let json = serde_json::to_string(&NodeRecord::stored(state, n)).unwrap_or_default();
                batch.hset(&layout.nodes(), &[(id.as_str(), json)]);
            }
            None => {
                batch.call("HDEL", &[&layout.nodes()], [id.as_str()]);
                batch.call("HDEL", &[&layout.node_loads()], [id.as_str()]);
                batch.call("DEL", &[&layout.node_keys(id)], std::iter::empty::<&str>());
            }
        }
    }
    stage_key_changes(batch, layout, &applied.key_changes);
    crate::loads::stage_applied(batch, layout, state, applied);
    if let Some((cmd, record)) = &applied.cmd_recorded {
        batch.hset(&layout.cmds(), &[(cmd.as_str(), record.to_string())]);
    }
    if !applied.cmds_evicted.is_empty() {
        batch.call_chunked("HDEL", &layout.cmds(), &[], &applied.cmds_evicted);
    }
}

/// The nodes whose record changed in `applied`: those the fold names, and the nodes that hand
/// off whose keys moved (their `handing` count may have changed with no other change).
fn records_to_write<'a>(state: &State, applied: &'a Applied) -> Vec<&'a NodeId> {
    let mut ids: Vec<&NodeId> = applied.nodes_changed.iter().collect();
    for change in &applied.key_changes {
        let from = match change {
            KeyChange::HandoffAsked { from, .. } | KeyChange::HandedOver { from, .. } => from,
            KeyChange::Moved {
                from: Some(from), ..
            }
            | KeyChange::Removed {
                owner: Some(from), ..
            }
            | KeyChange::Kept { owner: from, .. } => from,
            KeyChange::Added { .. } | KeyChange::Moved { .. } | KeyChange::Removed { .. } => {
                continue;
            }
        };
        if !ids.contains(&from) && state.node(from).is_some_and(|n| n.hands_off) {
            ids.push(from);
        }
    }
    ids
}

/// Groups key changes into few large calls. Within one applied entry every key changes at
/// most once, so the grouping cannot reorder two changes of the same key.
pub fn stage_key_changes(batch: &mut Batch, layout: &Layout, changes: &[KeyChange]) {
    let mut set_owner: Vec<(&str, &str)> = Vec::new();
    let mut del_owner: Vec<&str> = Vec::new();
    let mut add: BTreeMap<Option<&NodeId>, Vec<&str>> = BTreeMap::new();
    let mut rem: BTreeMap<Option<&NodeId>, Vec<&str>> = BTreeMap::new();
    for c in changes {
        let (key, from, to, present) = match c {
            KeyChange::Added { key, owner } => (key, None, Some(owner.as_ref()), true),
            KeyChange::Moved { key, from, to } => {
                (key, Some(from.as_ref()), Some(to.as_ref()), true)
            }
            KeyChange::HandedOver { key, from, to } => {
                (key, Some(Some(from)), Some(to.as_ref()), true)
            }
            KeyChange::Removed { key, owner } => (key, Some(owner.as_ref()), None, false),
            // The owner keeps the key until it releases it: no read model changes.
            KeyChange::HandoffAsked { .. } | KeyChange::Kept { .. } => continue,
        };
        if let Some(from) = from {
            rem.entry(from).or_default().push(key);
        }
        if let Some(to) = to {
            add.entry(to).or_default().push(key);
        }
        match (present, to.flatten()) {
            (true, Some(node)) => set_owner.push((key, node.as_str())),
            _ => del_owner.push(key),
        }
    }
    let set_key = |n: Option<&NodeId>| n.map_or_else(|| layout.unowned(), |n| layout.node_keys(n));
    for (node, keys) in &rem {
        batch.call_chunked("SREM", &set_key(*node), &[], keys);
    }
    for (node, keys) in &add {
        batch.call_chunked("SADD", &set_key(*node), &[], keys);
    }
    if !set_owner.is_empty() {
        batch.hset(&layout.keymap(), &set_owner);
    }
    if !del_owner.is_empty() {
        batch.call_chunked("HDEL", &layout.keymap(), &[], &del_owner);
    }
}

/// Stages every read model of `state` from scratch (for a rebuild into an empty namespace).
pub fn stage_full(batch: &mut Batch, layout: &Layout, state: &State) {
    let nodes: Vec<(String, String)> = state
        .nodes()
        .map(|n| {
            (
                n.id.to_string(),
                serde_json::to_string(&NodeRecord::stored(state, n)).unwrap_or_default(),
            )
        })
        .collect();
    if !nodes.is_empty() {
        batch.hset(&layout.nodes(), &nodes);
    }
    let changes: Vec<KeyChange> = state
        .keys()
        .iter()
        .map(|(k, o)| KeyChange::Added {
            key: k.to_owned(),
            owner: o.cloned(),
        })
        .collect();
    stage_key_changes(batch, layout, &changes);
    crate::loads::stage_all(batch, layout, state);
    let cmds: Vec<(String, String)> = state
        .recent_cmds()
        .map(|(c, record)| (c.to_owned(), record.to_string()))
        .collect();
    if !cmds.is_empty() {
        batch.hset(&layout.cmds(), &cmds);
    }
}

/// What start-up found in the read models.
#[derive(Debug)]
pub struct Loaded {
    pub state: State,
    pub checkpoint: Checkpoint,
}

fn damaged(key: &str, reason: impl Into<String>) -> StoreError {
    StoreError::Damaged {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

/// The checkpoint hash as stored. Each reader parses only the fields it needs, so a damaged
/// field fails only the readers that use it (a rebuild must still run to repair it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredCheckpoint {
    key: String,
    fields: HashMap<String, String>,
}

impl StoredCheckpoint {
    /// Whether anything was ever committed.
    pub fn exists(&self) -> bool {
        !self.fields.is_empty()
    }

    /// `last_id` byte for byte, as the commit fence compares it (`""` before the first
    /// applied entry; `None` without a checkpoint).
    pub fn last_id_raw(&self) -> Option<&str> {
        self.fields.get("last_id").map(String::as_str)
    }

    /// The last applied log entry (`None` before the first).
    pub fn last_id(&self) -> Result<Option<EntryId>, StoreError> {
        match self.last_id_raw() {
            None | Some("") => Ok(None),
            Some(s) => s
                .parse()
                .map(Some)
                .map_err(|_| damaged(&self.key, format!("bad last_id {s:?}"))),
        }
    }

    /// The ring version committed with it.
    pub fn ring_version(&self) -> Result<Option<u64>, StoreError> {
        self.fields
            .get("ring_version")
            .map(|v| {
                v.parse()
                    .map_err(|_| damaged(&self.key, format!("bad ring_version {v:?}")))
            })
            .transpose()
    }

    /// Every field, checked; `None` when nothing was ever committed.
    pub fn parse(&self) -> Result<Option<Checkpoint>, StoreError> {
        if !self.exists() {
            return Ok(None);
        }
        let key = &self.key;
        let get = |f: &str| {
            self.fields
                .get(f)
                .ok_or_else(|| damaged(key, format!("no field {f}")))
        };
        get("last_id")?;
        let last_id = self.last_id()?;
        let num = |f: &str| -> Result<u64, StoreError> {
            let v = get(f)?;
            v.parse()
                .map_err(|_| damaged(key, format!("bad {f} {v:?}")))
        };
        let checksum_hex = get("checksum")?;
        Ok(Some(Checkpoint {
            last_id,
            checksum: u64::from_str_radix(checksum_hex, 16)
                .map_err(|_| damaged(key, "bad checksum"))?,
            next_epoch: num("next_epoch")?,
            ring_version: num("ring_version")?,
        }))
    }
}

/// Reads the checkpoint hash (one `HGETALL` of a few fields): the one way to read it.
pub async fn checkpoint<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
) -> Result<StoredCheckpoint, StoreError> {
    let key = layout.checkpoint();
    let fields = redis::cmd("HGETALL").arg(&key).query_async(con).await?;
    Ok(StoredCheckpoint { key, fields })
}

/// Reads and checks the checkpoint; `None` when nothing was ever committed.
pub async fn load_checkpoint<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
) -> Result<Option<Checkpoint>, StoreError> {
    checkpoint(con, layout).await?.parse()
}

/// Every element of a `SCAN`-family iteration (`SCAN`, `HSCAN key`, `SSCAN key`), page by
/// page, never a blocking `KEYS`/`HGETALL` on a big key.
pub async fn scan_all<C, T>(
    con: &mut C,
    command: &str,
    key: Option<&str>,
    pattern: Option<&str>,
) -> Result<Vec<T>, StoreError>
where
    C: ConnectionLike + Send,
    T: redis::FromRedisValue,
{
    let mut out = Vec::new();
    scan_pages(con, command, key, pattern, |page| out.extend(page)).await?;
    Ok(out)
}

/// A `SCAN`-family iteration handed to `each` one page (about 10,000 elements) at a time, so
/// a caller comparing millions of elements holds one page, not all of them. An element may
/// come twice (Redis rehashing during the scan); one present throughout comes at least once.
pub async fn scan_pages<C, T>(
    con: &mut C,
    command: &str,
    key: Option<&str>,
    pattern: Option<&str>,
    mut each: impl FnMut(Vec<T>),
) -> Result<(), StoreError>
where
    C: ConnectionLike + Send,
    T: redis::FromRedisValue,
{
    let mut cursor = 0u64;
    loop {
        let mut cmd = redis::cmd(command);
        if let Some(key) = key {
            cmd.arg(key);
        }
        cmd.arg(cursor);
        if let Some(pattern) = pattern {
            cmd.arg("MATCH").arg(pattern);
        }
        let (next, page): (u64, Vec<T>) = cmd.arg("COUNT").arg(10_000).query_async(con).await?;
        each(page);
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// The sizes of the big read models: owned keys (`HLEN` of the key map), unowned keys, and
/// each node's key set (`SCARD`), in one pipeline.
pub async fn sizes<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    nodes: &[NodeId],
) -> Result<(u64, u64, Vec<u64>), StoreError> {
    let mut pipe = redis::pipe();
    pipe.cmd("HLEN").arg(layout.keymap());
    pipe.cmd("SCARD").arg(layout.unowned());
    for node in nodes {
        pipe.cmd("SCARD").arg(layout.node_keys(node));
    }
    let mut counts: Vec<u64> = pipe.query_async(con).await?;
    if counts.len() != nodes.len() + 2 {
        return Err(StoreError::Reply(format!(
            "{} sizes for {} read models",
            counts.len(),
            nodes.len() + 2
        )));
    }
    let per_node = counts.split_off(2);
    Ok((counts[0], counts[1], per_node))
}

async fn scan_hash<C: ConnectionLike + Send>(
    con: &mut C,
    key: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    scan_all(con, "HSCAN", Some(key), None).await
}

/// Reads the policy from the ring hash (defaults when the hash is absent).
pub async fn load_policy<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
) -> Result<Policy, StoreError> {
    let key = layout.ring();
    let map: HashMap<String, String> = redis::cmd("HGETALL").arg(&key).query_async(con).await?;
    if map.is_empty() {
        return Ok(Policy::default());
    }
    let num = |f: &str| -> Result<u32, StoreError> {
        map.get(f)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| damaged(&key, format!("bad or missing {f}")))
    };
    // Fields written since the panic threshold and flap damping exist; older ring hashes
    // imply the defaults.
    let newer = |f: &str, default: u32| -> Result<u32, StoreError> {
        match map.get(f) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| damaged(&key, format!("bad {f} {v:?}"))),
        }
    };
    Ok(Policy {
        fall: num("fall")?,
        rise: num("rise")?,
        vnodes: num("vnodes")?,
        panic: newer("panic", Policy::DEFAULT_PANIC)?,
        damp_penalty: newer("damp_penalty", Policy::DEFAULT_DAMP_PENALTY)?,
        damp_suppress: newer("damp_suppress", Policy::DEFAULT_DAMP_SUPPRESS)?,
        damp_reuse: newer("damp_reuse", Policy::DEFAULT_DAMP_REUSE)?,
        damp_half_life: newer("damp_half_life", Policy::DEFAULT_DAMP_HALF_LIFE)?,
        damp_max_suppress: newer("damp_max_suppress", Policy::DEFAULT_DAMP_MAX_SUPPRESS)?,
        handoff_timeout: newer("handoff_timeout", Policy::DEFAULT_HANDOFF_TIMEOUT)?,
        load_epsilon: newer("load_epsilon", Policy::DEFAULT_LOAD_EPSILON)?,
        strategy: map
            .get("strategy")
            .and_then(|s| s.parse::<Strategy>().ok())
            .ok_or_else(|| damaged(&key, "bad strategy"))?,
    })
}

/// Loads the state from the read models. `None` when there is no checkpoint. The caller
/// compares `state.checksum()` with `checkpoint.checksum` to detect damaged read models.
pub async fn load<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
) -> Result<Option<Loaded>, StoreError> {
    let Some(checkpoint) = load_checkpoint(con, layout).await? else {
        return Ok(None);
    };
    let policy = load_policy(con, layout).await?;
    let nodes_key = layout.nodes();
    let mut nodes = Vec::new();
    let mut loads = node_loads(con, layout).await?;
    for (id, json) in scan_hash(con, &nodes_key).await? {
        let record: NodeRecord = serde_json::from_str(&json)
            .map_err(|e| damaged(&nodes_key, format!("node {id}: {e}")))?;
        // A record written before node loads lived apart (migration 0005 moves them).
        if let Some(load) = record.load {
            loads.entry(record.node.clone()).or_insert(load);
        }
        nodes.push(
            record
                .to_node()
                .map_err(|e| damaged(&nodes_key, format!("node {id}: {e}")))?,
        );
    }
    let mut keys: Vec<(String, Option<NodeId>)> = Vec::new();
    let keymap = layout.keymap();
    for (key, node) in scan_hash(con, &keymap).await? {
        let node = NodeId::new(&node).map_err(|e| damaged(&keymap, format!("key {key}: {e}")))?;
        keys.push((key, Some(node)));
    }
    keys.extend(
        scan_all::<_, String>(con, "SSCAN", Some(&layout.unowned()), None)
            .await?
            .into_iter()
            .map(|k| (k, None)),
    );
    let cmds_key = layout.cmds();
    let mut cmds = Vec::new();
    for (cmd, value) in scan_hash(con, &cmds_key).await? {
        let record: RecordedCmd = value
            .parse()
            .map_err(|e| damaged(&cmds_key, format!("{cmd}: {e}")))?;
        cmds.push((cmd, record));
    }
    let mut state = State::restore(policy, checkpoint.next_epoch, nodes, keys, cmds);
    let (probers, clock, floor): (Option<String>, Option<String>, Option<String>) =
        redis::cmd("HMGET")
            .arg(layout.ring())
            .arg("probers")
            .arg("token_clock")
            .arg(TOKEN_FLOOR_FIELD)
            .query_async(con)
            .await?;
    state.restore_probers(probers.map(|p| p.split_whitespace().map(str::to_owned).collect()));
    // Absent in read models written before tokens (docs/adr/0015): they start at 0.
    let clock = ring_number(layout, "token_clock", clock)?;
    let floor = ring_number(layout, TOKEN_FLOOR_FIELD, floor)?;
    state.restore_tokens(clock, floor);
    let parts = crate::loads::load(con, layout, loads).await?;
    if !parts.is_empty() {
        let (loads, plan) = parts.restore().map_err(|e| damaged(&layout.loads(), e))?;
        state.restore_loads(loads, plan);
    }
    Ok(Some(Loaded { state, checkpoint }))
}

fn parse_record(key: &str, node: &str, json: &str) -> Result<NodeRecord, StoreError> {
    serde_json::from_str(json).map_err(|e| damaged(key, format!("node {node}: {e}")))
}

/// One node's record, or `None` if it never joined or has left.
pub async fn node<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    id: &NodeId,
) -> Result<Option<NodeRecord>, StoreError> {
    let key = layout.nodes();
    let (json, load): (Option<String>, Option<String>) = redis::pipe()
        .cmd("HGET")
        .arg(&key)
        .arg(id.as_str())
        .cmd("HGET")
        .arg(layout.node_loads())
        .arg(id.as_str())
        .query_async(con)
        .await?;
    let Some(json) = json else {
        return Ok(None);
    };
    let mut record = parse_record(&key, id.as_str(), &json)?;
    record.load = load
        .map(|l| parse_node_load(layout, id.as_str(), &l))
        .transpose()?;
    Ok(Some(record))
}

/// Every node's reported load (thousandths), from the `node_loads` hash.
pub async fn node_loads<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
) -> Result<BTreeMap<String, u64>, StoreError> {
    scan_hash(con, &layout.node_loads())
        .await?
        .into_iter()
        .map(|(node, load)| Ok((node.clone(), parse_node_load(layout, &node, &load)?)))
        .collect()
}

fn parse_node_load(layout: &Layout, node: &str, load: &str) -> Result<u64, StoreError> {
    load.parse().map_err(|_| {
        damaged(
            &layout.node_loads(),
            format!("node {node}: bad load {load:?}"),
        )
    })
}

/// Every node's record, sorted by id, read page by page (`HSCAN`).
pub async fn nodes<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
) -> Result<Vec<NodeRecord>, StoreError> {
    let key = layout.nodes();
    let fields = scan_hash(con, &key).await?;
    let mut out = fields
        .iter()
        .map(|(node, json)| parse_record(&key, node, json))
        .collect::<Result<Vec<_>, _>>()?;
    // HSCAN may return an element twice (while the hash is rehashed).
    out.sort_by(|a, b| a.node.cmp(&b.node));
    out.dedup_by(|a, b| a.node == b.node);
    let loads = node_loads(con, layout).await?;
    for record in &mut out {
        record.load = loads.get(&record.node).copied();
    }
    Ok(out)
}

/// Every node's record in one `HGETALL` (the prober's periodic view), each parsed on its
/// own: a record that does not parse is `Err(field)`, for the caller to skip, so one bad
/// record does not hide the others.
pub async fn node_records<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
) -> Result<Vec<Result<(NodeId, NodeRecord), String>>, StoreError> {
    let raw: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(layout.nodes())
        .query_async(con)
        .await?;
    Ok(raw
        .into_iter()
        .map(
            |(id, json)| match (NodeId::new(&id), serde_json::from_str(&json)) {
                (Ok(node), Ok(record)) => Ok((node, record)),
                _ => Err(id),
            },
        )
        .collect())
}

/// The keys a node owns, sorted, read page by page (`SSCAN`).
pub async fn node_keys<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    node: &NodeId,
) -> Result<Vec<String>, StoreError> {
    let mut out: Vec<String> = scan_all(con, "SSCAN", Some(&layout.node_keys(node)), None).await?;
    // SSCAN may return an element twice (while the set is rehashed).
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// How many keys each node owns (`SCARD` of each key set, one pipeline), in the order given.
pub async fn node_key_counts<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    nodes: &[NodeId],
) -> Result<Vec<u64>, StoreError> {
    if nodes.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for n in nodes {
        pipe.cmd("SCARD").arg(layout.node_keys(n));
    }
    Ok(pipe.query_async(con).await?)
}

/// The committed owner of an assigned key; `None` when it was never assigned or has no
/// owner now.
pub async fn key_owner<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    key: &str,
) -> Result<Option<NodeId>, StoreError> {
    let map = layout.keymap();
    let node: Option<String> = redis::cmd("HGET")
        .arg(&map)
        .arg(key)
        .query_async(con)
        .await?;
    node.map(|n| NodeId::new(&n).map_err(|e| damaged(&map, format!("key {key:?}: {e}"))))
        .transpose()
}

/// Where to send a request for an assigned key: its owner with the owner's token, and its
/// read replicas (ADR 0018).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRoute {
    pub owner: NodeId,
    pub token: Option<u64>,
    /// Nodes that may serve reads of the key (a cached value; writes go to the owner).
    pub replicas: Vec<NodeId>,
}

/// What a router reads for each request, besides the owners' tokens: the key map's owner of
/// `key` (`None`: not assigned, or unowned), its read replicas, and the ring's [`TokensAt`]
/// (one pipeline of short replies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteParts {
    pub owner: Option<NodeId>,
    pub replicas: Vec<NodeId>,
    pub tokens_at: TokensAt,
}

/// Which `tokens` field the ring holds: its version and token clock. The field changes only
/// with one of them (a changed token moves the clock, and the version with it), and a cluster
/// destroyed and started again has a new clock, so a copy of the field is good while both are
/// equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokensAt {
    pub version: u64,
    pub clock: u64,
}

/// The replies of [`route_parts`]'s pipeline: the key map's owner, the ring's version and token
/// clock, the key's load plan.
type RouteReplies = (
    Option<String>,
    (Option<String>, Option<String>),
    Option<String>,
);

/// [`RouteParts`] of `key`.
pub async fn route_parts<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    key: &str,
) -> Result<RouteParts, StoreError> {
    let map = layout.keymap();
    let (node, (version, clock), plan): RouteReplies = redis::pipe()
        .cmd("HGET")
        .arg(&map)
        .arg(key)
        .cmd("HMGET")
        .arg(layout.ring())
        .arg("version")
        .arg("token_clock")
        .cmd("HGET")
        .arg(layout.loads())
        .arg(crate::loads::plan_field(key))
        .query_async(con)
        .await?;
    let owner = node
        .map(|n| NodeId::new(&n).map_err(|e| damaged(&map, format!("key {key:?}: {e}"))))
        .transpose()?;
    let replicas = crate::loads::parse_replicas(layout, key, plan.as_deref())?;
    Ok(RouteParts {
        owner,
        replicas,
        tokens_at: tokens_at(layout, version, clock)?,
    })
}

fn tokens_at(
    layout: &Layout,
    version: Option<String>,
    clock: Option<String>,
) -> Result<TokensAt, StoreError> {
    // Absent before the first ring (and the clock in rings written before tokens): 0.
    Ok(TokensAt {
        version: ring_number(layout, "version", version)?,
        clock: ring_number(layout, "token_clock", clock)?,
    })
}

/// The ring's `tokens` field, parsed, with the [`TokensAt`] it belongs to (one `HMGET`, so
/// the three agree). The field names every owner: about 250 KB at 10,000 nodes, which is why
/// routers keep a copy per [`TokensAt`] instead of reading it for each request.
pub async fn ring_tokens<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
) -> Result<(TokensAt, HashMap<NodeId, u64>), StoreError> {
    let (version, clock, tokens): (Option<String>, Option<String>, Option<String>) =
        redis::cmd("HMGET")
            .arg(layout.ring())
            .arg("version")
            .arg("token_clock")
            .arg("tokens")
            .query_async(con)
            .await?;
    let at = tokens_at(layout, version, clock)?;
    let tokens =
        parse_tokens(tokens.as_deref().unwrap_or("")).map_err(|e| damaged(&layout.ring(), e))?;
    Ok((at, tokens))
}

/// What the read models say of an assigned key, read in one round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignedKey {
    /// Its owner and the owner's token; `None` when no node can own it right now.
    pub owner: Option<(NodeId, Option<u64>)>,
    /// The ring version the read models were at.
    pub ring_version: u64,
    /// Its read replicas (ADR 0018): nodes that may serve reads of a cached value.
    pub replicas: Vec<NodeId>,
}

/// The replies of [`assigned_key`]'s pipeline: the key map's owner, whether the key is
/// unowned, the ring's version and token floor, and the key's load plan.
type AssignedKeyReply = (
    Option<String>,
    bool,
    (Option<String>, Option<String>),
    Option<String>,
);

/// `key`'s owner, token and the ring version if the key is assigned (`None`: it is not, and
/// only the ring places it): `pantheon locate` without building the ring. Two small round
/// trips (the key map, then the owner's record) rather than the ring's `tokens` field, which
/// names every member (about 250 KB at 10,000 nodes). An owner in the key map is a member or
/// still hands the key off, so its token is its record's `token` raised to the floor
/// ([`pantheon_domain::token`]), as in [`crate::feed::snapshot`].
pub async fn assigned_key<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    key: &str,
) -> Result<Option<AssignedKey>, StoreError> {
    let map = layout.keymap();
    let ring = layout.ring();
    let (node, unowned, (version, floor), plan): AssignedKeyReply = redis::pipe()
        .cmd("HGET")
        .arg(&map)
        .arg(key)
        .cmd("SISMEMBER")
        .arg(layout.unowned())
        .arg(key)
        .cmd("HMGET")
        .arg(&ring)
        .arg("version")
        .arg(TOKEN_FLOOR_FIELD)
        .cmd("HGET")
        .arg(layout.loads())
        .arg(crate::loads::plan_field(key))
        .query_async(con)
        .await?;
    let ring_version = ring_number(layout, "version", version)?;
    let floor = ring_number(layout, TOKEN_FLOOR_FIELD, floor)?;
    let owner = match node {
        None if !unowned => return Ok(None),
        None => None,
        Some(node) => {
            let node =
                NodeId::new(&node).map_err(|e| damaged(&map, format!("key {key:?}: {e}")))?;
            let record: Option<String> = redis::cmd("HGET")
                .arg(layout.nodes())
                .arg(node.as_str())
                .query_async(con)
                .await?;
            let token = match record {
                Some(json) => Some(NodeRecord::parse(node.as_str(), &json)?.token.max(floor)),
                None => None,
            };
            Some((node, token))
        }
    };
    let replicas = crate::loads::parse_replicas(layout, key, plan.as_deref())?;
    Ok(Some(AssignedKey {
        owner,
        ring_version,
        replicas,
    }))
}

/// Whether `key` is assigned but owned by no node (no node can own keys).
pub async fn is_unowned<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    key: &str,
) -> Result<bool, StoreError> {
    Ok(redis::cmd("SISMEMBER")
        .arg(layout.unowned())
        .arg(key)
        .query_async(con)
        .await?)
}

/// Sizes of the read models, read together (one pipeline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyTotals {
    /// Assigned keys with an owner.
    pub owned: u64,
    /// Assigned keys no node can own right now.
    pub unowned: u64,
    /// The ring version (0 before the first ring was written).
    pub ring_version: u64,
}

pub async fn key_totals<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
) -> Result<KeyTotals, StoreError> {
    let (owned, unowned, version): (u64, u64, Option<u64>) = redis::pipe()
        .cmd("HLEN")
        .arg(layout.keymap())
        .cmd("SCARD")
        .arg(layout.unowned())
        .cmd("HGET")
        .arg(layout.ring())
        .arg("version")
        .query_async(con)
        .await?;
    Ok(KeyTotals {
        owned,
        unowned,
        ring_version: version.unwrap_or(0),
    })
}

/// The ring version alone (one small `HGET`; 0 before the first ring was written): enough
/// to tell whether a cached [`RingDefinition`] is current.
pub async fn ring_version<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
) -> Result<u64, StoreError> {
    let key = layout.ring();
    let version: Option<String> = redis::cmd("HGET")
        .arg(&key)
        .arg("version")
        .query_async(con)
        .await?;
    Ok(version
        .map(|v| v.parse::<u64>())
        .transpose()
        .map_err(|_| damaged(&key, "bad version"))?
        .unwrap_or(0))
}

/// The ring definition clients place keys with (the policy's defaults for absent fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingDefinition {
    pub version: u64,
    pub strategy: Strategy,
    pub vnodes: u32,
    /// Sorted by id.
    pub members: Vec<Member>,
    /// Each member's token (the token of the keys it owns); empty in rings written before
    /// tokens.
    pub tokens: HashMap<NodeId, u64>,
}

/// Reads the ring definition (one `HGETALL`).
pub async fn ring<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
) -> Result<RingDefinition, StoreError> {
    let key = layout.ring();
    let map: HashMap<String, String> = redis::cmd("HGETALL").arg(&key).query_async(con).await?;
    let defaults = Policy::default();
    let bad = |reason: String| damaged(&key, reason);
    Ok(RingDefinition {
        version: field(&map, "version").map_err(bad)?.unwrap_or(0),
        strategy: field(&map, "strategy")
            .map_err(bad)?
            .unwrap_or(defaults.strategy),
        vnodes: field(&map, "vnodes")
            .map_err(bad)?
            .unwrap_or(defaults.vnodes),
        members: parse_members(map.get("members").map_or("", String::as_str)).map_err(bad)?,
        tokens: parse_tokens(map.get("tokens").map_or("", String::as_str)).map_err(bad)?,
    })
}

/// The token of the keys `node` owns, from the ring hash (`None`: not a member, or a ring
/// written before tokens); one `HGET`, without building the ring.
pub async fn member_token<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    node: &NodeId,
) -> Result<Option<u64>, StoreError> {
    let raw: Option<String> = redis::cmd("HGET")
        .arg(layout.ring())
        .arg("tokens")
        .query_async(con)
        .await?;
    let tokens =
        parse_tokens(raw.as_deref().unwrap_or("")).map_err(|e| damaged(&layout.ring(), e))?;
    Ok(tokens.get(node).copied())
}

/// Parses `tokens` (`id=token id=token ...`, as [`tokens_field`] writes it).
pub fn parse_tokens(raw: &str) -> Result<HashMap<NodeId, u64>, String> {
    raw.split_whitespace()
        .map(|part| {
            let (id, t) = part
                .rsplit_once('=')
                .ok_or_else(|| format!("bad token {part:?}"))?;
            let node = NodeId::new(id).map_err(|e| format!("token {part:?}: {e}"))?;
            Ok((
                node,
                t.parse().map_err(|_| format!("bad token in {part:?}"))?,
            ))
        })
        .collect()
}

/// A number field of the ring hash; absent (no ring yet, or written before the field
/// existed) is 0.
fn ring_number(layout: &Layout, field: &str, v: Option<String>) -> Result<u64, StoreError> {
    v.map_or(Ok(0), |v| {
        v.parse()
            .map_err(|_| damaged(&layout.ring(), format!("bad {field} {v:?}")))
    })
}

fn field<T: std::str::FromStr>(
    map: &HashMap<String, String>,
    name: &str,
) -> Result<Option<T>, String> {
    map.get(name)
        .map(|v| v.parse().map_err(|_| format!("bad {name} {v:?}")))
        .transpose()
}

/// Parses `members` (`id=weight id=weight ...`, as [`members_field`] writes it).
pub fn parse_members(raw: &str) -> Result<Vec<Member>, String> {
    raw.split_whitespace()
        .map(|part| {
            let (id, w) = part
                .rsplit_once('=')
                .ok_or_else(|| format!("bad member {part:?}"))?;
            Ok(Member {
                node: NodeId::new(id).map_err(|e| format!("member {part:?}: {e}"))?,
                weight: w.parse().map_err(|_| format!("bad weight in {part:?}"))?,
            })
        })
        .collect()
}

/// Deletes every read model of `layout` (a scratch namespace, before and after a rebuild).
pub async fn clear<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
) -> Result<(), StoreError> {
    let mut keys = vec![
        layout.nodes(),
        layout.ring(),
        layout.keymap(),
        layout.unowned(),
        layout.cmds(),
        layout.checkpoint(),
        layout.loads(),
        layout.node_loads(),
    ];
    keys.extend(crate::keys::matching(con, &layout.node_keys_pattern()).await?);
    crate::keys::delete(con, &keys).await?;
    Ok(())
}

/// Stages replacing the read models of `live` with the ones written to `scratch`, for one
/// fenced commit: every live read model is deleted and each scratch one that exists is
/// renamed into place (`nodes`: the nodes whose key sets the scratch may hold). The caller
/// stages the new checkpoint.
pub async fn stage_swap<'a, C: ConnectionLike + Send>(
    con: &mut C,
    batch: &mut Batch,
    live: &Layout,
    scratch: &Layout,
    nodes: impl IntoIterator<Item = &'a NodeId>,
) -> Result<(), StoreError> {
    let mut live_keys = crate::keys::matching(con, &live.node_keys_pattern()).await?;
    live_keys.extend([
        live.nodes(),
        live.keymap(),
        live.unowned(),
        live.cmds(),
        live.ring(),
        live.loads(),
        live.node_loads(),
    ]);
    for key in &live_keys {
        batch.call("DEL", &[key], std::iter::empty::<&str>());
    }
    let mut pairs = vec![
        (scratch.nodes(), live.nodes()),
        (scratch.keymap(), live.keymap()),
        (scratch.unowned(), live.unowned()),
        (scratch.cmds(), live.cmds()),
        (scratch.ring(), live.ring()),
        (scratch.loads(), live.loads()),
        (scratch.node_loads(), live.node_loads()),
    ];
    for node in nodes {
        pairs.push((scratch.node_keys(node), live.node_keys(node)));
    }
    for (from, to) in &pairs {
        if crate::keys::exists(con, from).await? {
            batch.call("RENAME", &[from, to], std::iter::empty::<&str>());
        }
    }
    batch.call("DEL", &[&scratch.checkpoint()], std::iter::empty::<&str>());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_parse_from_the_ring_hash_format() {
        let m = parse_members("a=1 node-b=3").unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].node.as_str(), "node-b");
        assert_eq!(m[1].weight, 3);
        assert!(parse_members("").unwrap().is_empty());
        assert!(parse_members("a").is_err());
        assert!(parse_members("a=x").is_err());
        assert!(parse_members("a b=1").is_err());
    }

    /// A state with a held and a damped node survives the trip through the stored records
    /// and the snapshot (checksum included), and records from before these fields load.
    #[test]
    fn held_and_damped_nodes_round_trip_through_records_and_snapshots() {
        use pantheon_domain::entry::{Command, LogEntry, ProbeResult};
        let join = |n: &str| {
            LogEntry::new(Command::Join {
                node: NodeId::new(n).unwrap(),
                url: format!("http://{n}.local/health"),
                weight: None,
                handoff: false,
            })
        };
        let probe = |n: &str, epoch: u64, ok: bool| {
            LogEntry::new(Command::Probe(ProbeResult {
                node: NodeId::new(n).unwrap(),
                epoch,
                ok,
                status: None,
                latency_ms: 1,
                error: None,
                prober: None,
            }))
        };
        let mut state = State::default();
        let mut t = 0u64;
        let mut apply = |state: &mut State, e: &LogEntry| {
            t += 100;
            state.apply(EntryId::new(t, 0), e).unwrap();
        };
        for (epoch, n) in ["a", "b", "c"].into_iter().enumerate() {
            apply(&mut state, &join(n));
            apply(&mut state, &probe(n, epoch as u64 + 1, true));
        }
        // a dies twice quickly (damped), then b dies: 2 of 3 out > 50%, so b is held.
        for ok in [false, false, false, true, true, false, false, false] {
            apply(&mut state, &probe("a", 1, ok));
        }
        for _ in 0..3 {
            apply(&mut state, &probe("b", 2, false));
        }
        let a = state.node(&NodeId::new("a").unwrap()).unwrap();
        let b = state.node(&NodeId::new("b").unwrap()).unwrap();
        assert!(a.damped && b.held, "{a:?} {b:?}");

        let records: Vec<NodeRecord> = state.nodes().map(NodeRecord::from_node).collect();
        let json: Vec<String> = records
            .iter()
            .map(|r| serde_json::to_string(r).unwrap())
            .collect();
        let nodes: Vec<Node> = json
            .iter()
            .map(|j| {
                serde_json::from_str::<NodeRecord>(j)
                    .unwrap()
                    .to_node()
                    .unwrap()
            })
            .collect();
        let keys: Vec<(String, Option<NodeId>)> = Vec::new();
        let mut restored = State::restore(*state.policy(), state.next_epoch(), nodes, keys, vec![]);
        // The token clock and floor live in the ring hash, not in the node records.
        restored.restore_tokens(state.tokens().clock(), state.tokens().floor());
        assert_eq!(restored.checksum(), state.checksum());
        assert_eq!(restored.placement().members(), state.placement().members());

        let snap = crate::snapshot::Snapshot::of(&state, EntryId::new(t, 0));
        let back: crate::snapshot::Snapshot =
            serde_json::from_slice(&serde_json::to_vec(&snap).unwrap()).unwrap();
        assert_eq!(back.restore().unwrap().0.checksum(), state.checksum());

        let old = r#"{"node":"x","state":"alive","health":"alive","draining":false,"url":"http://x/h","epoch":1,"weight":1,"fails":0,"successes":0,"last":"joined","since":"5-0","since_ms":5}"#;
        let node = serde_json::from_str::<NodeRecord>(old)
            .unwrap()
            .to_node()
            .unwrap();
        assert!(!node.held && !node.damped && node.penalty.value == 0);
    }
}
