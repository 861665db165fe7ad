//! The Redis key layout of one cluster. Every key sits under the hash tag `{cluster}` so the
//! atomic commit (one script over many keys) works unchanged on Redis Cluster.

use pantheon_domain::NodeId;

/// Key names of one cluster: `<prefix>:{<cluster>}:<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    base: String,
    prefix: String,
}

impl Layout {
    pub fn new(prefix: &str, cluster: &str) -> Self {
        Self {
            base: format!("{prefix}:{{{cluster}}}"),
            prefix: prefix.to_owned(),
        }
    }

    /// The same cluster with every read model under a scratch name, for rebuilds and
    /// `rebuild --verify` (the log and events are not duplicated).
    pub fn scratch(&self, name: &str) -> Self {
        Self {
            base: format!("{}:{name}", self.base),
            prefix: self.prefix.clone(),
        }
    }

    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.base)
    }

    /// The registries of processes sharing many clusters, as a key pattern (not under this
    /// cluster's hash tag: per prefix, see [`crate::fleet`]).
    pub fn fleet_pattern(&self) -> String {
        crate::fleet::pattern(&self.prefix)
    }

    /// Inputs: join/leave/assign/probe/... entries. The source of truth.
    pub fn log(&self) -> String {
        self.key("log")
    }
    /// The ids of the log entries a service process appended (see [`crate::attest`]): only the
    /// `service` and `operator` roles may write it.
    pub fn attest(&self) -> String {
        self.key("attest")
    }
    /// Decided facts for consumers.
    pub fn events(&self) -> String {
        self.key("events")
    }
    /// Events delivered too often without an ack (moved there by subscriptions).
    pub fn dead_letters(&self) -> String {
        self.key("events:dead")
    }
    /// Inputs that could not be applied, with the entry id and a reason.
    pub fn rejected(&self) -> String {
        self.key("rejected")
    }
    /// Hash node id → JSON record.
    pub fn nodes(&self) -> String {
        self.key("nodes")
    }
    /// Hash: load-aware placement (ADR 0018): `k:<node>` → the node's reported hot keys,
    /// `p:<key>` → where load placement put a hot key, `meta` → the nodes settling and above
    /// the band, `round` → the last round's log time.
    pub fn loads(&self) -> String {
        self.key("loads")
    }
    /// Hash node id → its reported load in thousandths (ADR 0018), apart from the node
    /// records so that a load report does not rewrite a whole record.
    pub fn node_loads(&self) -> String {
        self.key("node_loads")
    }
    /// Hash: the ring definition (strategy, vnodes, members, version) and health policy.
    pub fn ring(&self) -> String {
        self.key("ring")
    }
    /// Hash key → owning node.
    pub fn keymap(&self) -> String {
        self.key("keymap")
    }
    /// Set of the keys a node owns.
    pub fn node_keys(&self, node: &NodeId) -> String {
        self.key(&format!("node:{node}:keys"))
    }
    /// Stream: the node's ownership feed (see [`crate::feed`]).
    pub fn node_feed(&self, node: &NodeId) -> String {
        self.key(&format!("node:{node}:feed"))
    }
    /// Hash: the state a node handed off with keys it released, key → value, until the new
    /// owner takes it (see [`crate::handoff`]).
    pub fn node_handoff(&self, node: &NodeId) -> String {
        self.key(&format!("node:{node}:handoff"))
    }
    /// Set of assigned keys no node can own (no members).
    pub fn unowned(&self) -> String {
        self.key("unowned")
    }
    /// Hash client command id → log entry id (the de-duplication window).
    pub fn cmds(&self) -> String {
        self.key("cmds")
    }
    /// Hash: last applied log id, ring version, state checksum, epoch counter.
    pub fn checkpoint(&self) -> String {
        self.key("checkpoint")
    }
    /// String: the leader lease token.
    pub fn lease(&self) -> String {
        self.key("lease")
    }
    /// String: the snapshot's manifest (docs/adr/0017; before it, the whole serialized
    /// state). The log is trimmed only below the snapshot's log id.
    pub fn snapshot(&self) -> String {
        self.key("snapshot")
    }
    /// String: piece `n` (from 0) of the snapshot written as `id` (see [`crate::snapshot`]).
    pub fn snapshot_chunk(&self, id: &str, n: u32) -> String {
        self.key(&format!("snapshot:{id}:{n}"))
    }
    /// Every snapshot piece, of any write, for SCAN (the manifest itself does not match).
    pub fn snapshot_chunks_pattern(&self) -> String {
        self.key("snapshot:*")
    }
    /// String: written by `pantheon destroy` before it deletes the cluster's keys (with an
    /// expiry), so a running leader forgets the state it holds instead of re-seeding it.
    pub fn destroyed(&self) -> String {
        self.key("destroyed")
    }
    /// String: written by a projector that found Redis emptied and holds no state to put
    /// back, for `pantheon doctor`; removed by a re-seed or `pantheon destroy`.
    pub fn lost(&self) -> String {
        self.key("lost")
    }
    /// String: the schema version of this cluster's keys.
    pub fn schema(&self) -> String {
        self.key("schema")
    }
    /// Hash: formats of what is stored (written by migrations).
    pub fn meta(&self) -> String {
        self.key("meta")
    }
    /// String: held while migrations run.
    pub fn migrate_lock(&self) -> String {
        self.key("migrate-lock")
    }
    /// Hash prober id → last heartbeat (ms).
    pub fn probers(&self) -> String {
        self.key("probers")
    }
    /// Consumer group of the projector on the log.
    pub fn projector_group(&self) -> &'static str {
        "projector"
    }
    /// The per-node hand-off hashes (an ACL key pattern).
    pub fn node_handoff_pattern(&self) -> String {
        self.key("node:*:handoff")
    }
    /// Prefix of the per-node key sets, to find them all with SCAN.
    pub fn node_keys_pattern(&self) -> String {
        self.key("node:*:keys")
    }
    /// Every key of this cluster, for SCAN.
    pub fn all_keys_pattern(&self) -> String {
        self.key("*")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_shares_the_hash_tag() {
        let l = Layout::new("pantheon", "prod");
        let n = NodeId::new("n-1").unwrap();
        for k in [
            l.log(),
            l.events(),
            l.keymap(),
            l.node_keys(&n),
            l.scratch("rebuild").keymap(),
            l.snapshot_chunk("1-0.00ff", 3),
        ] {
            assert!(k.starts_with("pantheon:{prod}:"), "{k}");
        }
        assert_eq!(l.node_keys(&n), "pantheon:{prod}:node:n-1:keys");
    }
}
