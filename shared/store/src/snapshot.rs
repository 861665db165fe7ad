//! A snapshot: the whole state as of one log id, stored as JSON in one key. The log is only
//! ever trimmed below the snapshot's id, so a rebuild = snapshot + the log after it.

use pantheon_domain::placement::Strategy;
use pantheon_domain::{EntryId, NodeId, Policy, State};
use redis::aio::ConnectionLike;
use serde::{Deserialize, Serialize};

use crate::readmodel::NodeRecord;
use crate::{Batch, Layout, StoreError};

/// Reads the stored snapshot, if any. Bytes that are not a snapshot are
/// [`StoreError::Damaged`] (the reason is the JSON error).
pub async fn load<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
) -> Result<Option<Snapshot>, StoreError> {
    let key = layout.snapshot();
    let raw: Option<Vec<u8>> = redis::cmd("GET").arg(&key).query_async(con).await?;
    raw.map(|raw| {
        serde_json::from_slice(&raw).map_err(|e| StoreError::Damaged {
            key,
            reason: e.to_string(),
        })
    })
    .transpose()
}

/// Whether a snapshot was ever written.
pub async fn exists<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
) -> Result<bool, StoreError> {
    crate::keys::exists(con, &layout.snapshot()).await
}

/// Stages writing `json` (a serialized [`Snapshot`]) as the snapshot, for a fenced commit.
pub fn stage_write(batch: &mut Batch, layout: &Layout, json: &[u8]) {
    batch.call("SET", &[&layout.snapshot()], [json]);
}

fn default_panic() -> u32 {
    Policy::DEFAULT_PANIC
}

/// Serializable form of a [`State`].
#[derive(Debug, Serialize, Deserialize)]
pub struct Snapshot {
    pub format: u32,
    pub last_id: String,
    pub checksum: String,
    pub fall: u32,
    pub rise: u32,
    pub strategy: String,
    pub vnodes: u32,
    /// Absent in snapshots written before the panic threshold existed (= the default).
    #[serde(default = "default_panic")]
    pub panic: u32,
    /// Absent in snapshots written before flap damping existed (= the defaults).
    #[serde(default)]
    pub damping: Option<Vec<u32>>,
    pub next_epoch: u64,
    pub nodes: Vec<NodeRecord>,
    /// `[key, owner]`, owner `""` when unowned.
    pub keys: Vec<(String, String)>,
    pub cmds: Vec<(String, String)>,
    #[serde(default)]
    pub probers: Option<Vec<String>>,
    /// The ownership token clock and floor (docs/adr/0015); absent (0) in snapshots taken
    /// before tokens.
    #[serde(default)]
    pub token_clock: u64,
    #[serde(default)]
    pub token_floor: u64,
    /// The hand-off timeout (ms; docs/adr/0016); absent in snapshots taken before hand-offs
    /// (= the default).
    #[serde(default = "default_handoff_timeout")]
    pub handoff_timeout: u32,
}

fn default_handoff_timeout() -> u32 {
    Policy::DEFAULT_HANDOFF_TIMEOUT
}

impl Snapshot {
    pub const FORMAT: u32 = 1;

    pub fn of(state: &State, last_id: EntryId) -> Self {
        let p = state.policy();
        Self {
            format: Self::FORMAT,
            last_id: last_id.to_string(),
            checksum: format!("{:016x}", state.checksum()),
            fall: p.fall,
            rise: p.rise,
            strategy: p.strategy.as_str().to_owned(),
            vnodes: p.vnodes,
            panic: p.panic,
            damping: Some(p.damping_fields().iter().map(|(_, v)| *v).collect()),
            next_epoch: state.next_epoch(),
            nodes: state.nodes().map(NodeRecord::from_node).collect(),
            keys: state
                .keys()
                .iter()
                .map(|(k, o)| (k.to_owned(), o.map(|n| n.to_string()).unwrap_or_default()))
                .collect(),
            cmds: state
                .recent_cmds()
                .map(|(c, record)| (c.to_owned(), record.to_string()))
                .collect(),
            probers: state.probers().map(<[String]>::to_vec),
            token_clock: state.tokens().clock(),
            token_floor: state.tokens().floor(),
            handoff_timeout: p.handoff_timeout,
        }
    }

    /// The state and its log id; fails when the snapshot is damaged (checksum included).
    pub fn restore(&self) -> Result<(State, EntryId), String> {
        if self.format != Self::FORMAT {
            return Err(format!("snapshot format {} is unknown", self.format));
        }
        let strategy: Strategy = self.strategy.parse()?;
        let policy = Policy {
            fall: self.fall,
            rise: self.rise,
            strategy,
            vnodes: self.vnodes,
            panic: self.panic,
            handoff_timeout: self.handoff_timeout,
            ..Policy::default()
        };
        let policy = match self.damping.as_deref() {
            None => policy,
            Some(
                &[
                    damp_penalty,
                    damp_suppress,
                    damp_reuse,
                    damp_half_life,
                    damp_max_suppress,
                ],
            ) => Policy {
                damp_penalty,
                damp_suppress,
                damp_reuse,
                damp_half_life,
                damp_max_suppress,
                ..policy
            },
            Some(other) => {
                return Err(format!(
                    "snapshot damping has {} values, not 5",
                    other.len()
                ));
            }
        };
        let nodes = self
            .nodes
            .iter()
            .map(NodeRecord::to_node)
            .collect::<Result<Vec<_>, _>>()?;
        let mut keys = Vec::with_capacity(self.keys.len());
        for (k, o) in &self.keys {
            let owner = if o.is_empty() {
                None
            } else {
                Some(NodeId::new(o).map_err(|e| e.to_string())?)
            };
            keys.push((k.clone(), owner));
        }
        let mut cmds = Vec::with_capacity(self.cmds.len());
        for (c, id) in &self.cmds {
            cmds.push((c.clone(), id.parse().map_err(|e| format!("cmd {c}: {e}"))?));
        }
        let mut state = State::restore(policy, self.next_epoch, nodes, keys, cmds);
        state.restore_probers(self.probers.clone());
        state.restore_tokens(self.token_clock, self.token_floor);
        let last_id: EntryId = self.last_id.parse().map_err(|_| "bad last_id".to_owned())?;
        let checksum = format!("{:016x}", state.checksum());
        if checksum != self.checksum {
            return Err(format!(
                "snapshot checksum {} does not match its content ({checksum})",
                self.checksum
            ));
        }
        Ok((state, last_id))
    }
}
