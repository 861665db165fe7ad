//! The read models: how the decided state is laid out in Redis, how a fold result becomes
//! commit operations, and how a `State` is loaded back at start-up.
//!
//! * `nodes`: hash node id → JSON [`NodeRecord`];
//! * `ring`: hash with `strategy`, `vnodes`, `members` (`id=weight` space-separated, sorted),
//!   `fall`, `rise`, `version` (bumped on every change, and by a rebuild), `probers` (live
//!   prober replicas, space-separated; absent until first reported);
//! * `keymap`: hash key → node; `node:<id>:keys`: set of a node's keys; `unowned`: set;
//! * `cmds`: hash client command id → log id (the de-duplication window);
//! * `checkpoint`: hash `last_id`, `checksum` (16 hex digits), `next_epoch`, `ring_version`,
//!   `keys`, `nodes`, `leader`.

use std::collections::{BTreeMap, HashMap};

use pantheon_domain::health::{Health, NodeHealth};
use pantheon_domain::placement::Strategy;
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
    /// `alive`, `suspect`, `dead` or `draining`.
    pub state: String,
    /// `alive`, `suspect` or `dead` (kept while draining).
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
            last: n.last.to_owned(),
            since: n.since.to_string(),
            since_ms: n.since.ms,
        }
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
            last: Node::transition_name(&self.last)
                .ok_or_else(|| format!("unknown transition {:?}", self.last))?,
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

/// Stages the ring definition.
pub fn stage_ring(batch: &mut Batch, layout: &Layout, state: &State, version: u64) {
    let p = state.policy();
    let fields = [
        ("strategy", p.strategy.as_str().to_owned()),
        ("vnodes", p.vnodes.to_string()),
        ("fall", p.fall.to_string()),
        ("rise", p.rise.to_string()),
        ("members", members_field(state)),
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
        ("nodes", state.nodes().count().to_string()),
        ("leader", leader.to_owned()),
    ];
    batch.hset(&layout.checkpoint(), &fields);
}

/// Stages the read-model changes of one applied entry (events are staged by the caller).
pub fn stage_applied(
    batch: &mut Batch,
    layout: &Layout,
    state: &State,
    id: EntryId,
    applied: &Applied,
) {
    for id in &applied.nodes_changed {
        match state.node(id) {
            Some(n) => {
                let json = serde_json::to_string(&NodeRecord::from_node(n)).unwrap_or_default();
                batch.hset(&layout.nodes(), &[(id.as_str(), json)]);
            }
            None => {
                batch.call("HDEL", &[&layout.nodes()], [id.as_str()]);
                batch.call("DEL", &[&layout.node_keys(id)], std::iter::empty::<&str>());
            }
        }
    }
    stage_key_changes(batch, layout, &applied.key_changes);
    if let Some(cmd) = &applied.cmd_recorded {
        batch.hset(&layout.cmds(), &[(cmd.as_str(), id.to_string())]);
    }
    if !applied.cmds_evicted.is_empty() {
        batch.call_chunked("HDEL", &layout.cmds(), &[], &applied.cmds_evicted);
    }
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
            KeyChange::Removed { key, owner } => (key, Some(owner.as_ref()), None, false),
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
                serde_json::to_string(&NodeRecord::from_node(n)).unwrap_or_default(),
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
    let cmds: Vec<(String, String)> = state
        .recent_cmds()
        .map(|(c, id)| (c.to_owned(), id.to_string()))
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

/// Reads the checkpoint; `None` when nothing was ever committed.
pub async fn load_checkpoint<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
) -> Result<Option<Checkpoint>, StoreError> {
    let key = layout.checkpoint();
    let map: HashMap<String, String> = redis::cmd("HGETALL").arg(&key).query_async(con).await?;
    if map.is_empty() {
        return Ok(None);
    }
    let get = |f: &str| {
        map.get(f)
            .ok_or_else(|| damaged(&key, format!("no field {f}")))
    };
    let last_id = match get("last_id")?.as_str() {
        "" => None,
        s => Some(
            s.parse()
                .map_err(|_| damaged(&key, format!("bad last_id {s:?}")))?,
        ),
    };
    let num = |f: &str| -> Result<u64, StoreError> {
        let v = get(f)?;
        v.parse()
            .map_err(|_| damaged(&key, format!("bad {f} {v:?}")))
    };
    let checksum_hex = get("checksum")?;
    Ok(Some(Checkpoint {
        last_id,
        checksum: u64::from_str_radix(checksum_hex, 16)
            .map_err(|_| damaged(&key, "bad checksum"))?,
        next_epoch: num("next_epoch")?,
        ring_version: num("ring_version")?,
    }))
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
    let mut cursor = 0u64;
    let mut out = Vec::new();
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
        out.extend(page);
        if next == 0 {
            return Ok(out);
        }
        cursor = next;
    }
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
    Ok(Policy {
        fall: num("fall")?,
        rise: num("rise")?,
        vnodes: num("vnodes")?,
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
    for (id, json) in scan_hash(con, &nodes_key).await? {
        let record: NodeRecord = serde_json::from_str(&json)
            .map_err(|e| damaged(&nodes_key, format!("node {id}: {e}")))?;
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
    for (cmd, id) in scan_hash(con, &cmds_key).await? {
        let id: EntryId = id
            .parse()
            .map_err(|_| damaged(&cmds_key, format!("bad id for {cmd}")))?;
        cmds.push((cmd, id));
    }
    let mut state = State::restore(policy, checkpoint.next_epoch, nodes, keys, cmds);
    let probers: Option<String> = redis::cmd("HGET")
        .arg(layout.ring())
        .arg("probers")
        .query_async(con)
        .await?;
    state.restore_probers(probers.map(|p| p.split_whitespace().map(str::to_owned).collect()));
    Ok(Some(Loaded { state, checkpoint }))
}
