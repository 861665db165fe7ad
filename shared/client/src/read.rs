//! Reads of the read models the projector commits atomically: nodes, a node's keys, a key's
//! owner. Large hashes and sets are read with HSCAN/SSCAN, never in one reply.

use pantheon_domain::{DecodeError, NodeId};
use pantheon_store::readmodel::{self, NodeRecord};

use crate::{ClientError, Pantheon};

fn node_id(node: &str) -> Result<NodeId, ClientError> {
    NodeId::new(node).map_err(|e| ClientError::Invalid(DecodeError::from(e)))
}

fn record(key: &str, node: &str, json: &str) -> Result<NodeRecord, ClientError> {
    serde_json::from_str(json).map_err(|e| ClientError::damaged(key, format!("node {node}: {e}")))
}

impl Pantheon {
    /// Every node that has joined and not left, sorted by id, with its state (`alive`,
    /// `suspect`, `dead`, `draining`), health URL, epoch and weight.
    ///
    /// ```no_run
    /// # async fn example(p: pantheon_client::Pantheon) -> Result<(), pantheon_client::ClientError> {
    /// for n in p.nodes().await? {
    ///     println!("{} {} {}", n.node, n.state, n.url);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>, ClientError> {
        let key = self.inner.layout.nodes();
        let fields: Vec<(String, String)> =
            readmodel::scan_all(&mut self.con(), "HSCAN", Some(&key), None).await?;
        let mut out = fields
            .iter()
            .map(|(node, json)| record(&key, node, json))
            .collect::<Result<Vec<_>, _>>()?;
        // HSCAN may return an element twice (while the hash is rehashed).
        out.sort_by(|a, b| a.node.cmp(&b.node));
        out.dedup_by(|a, b| a.node == b.node);
        Ok(out)
    }

    /// One node's record, or `None` if it never joined or has left.
    ///
    /// ```no_run
    /// # async fn example(p: pantheon_client::Pantheon) -> Result<(), pantheon_client::ClientError> {
    /// if let Some(n) = p.node_health("node-1").await? {
    ///     println!("node-1 is {} ({} failed probes)", n.state, n.fails);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn node_health(&self, node: &str) -> Result<Option<NodeRecord>, ClientError> {
        let id = node_id(node)?;
        let key = self.inner.layout.nodes();
        let json: Option<String> = redis::cmd("HGET")
            .arg(&key)
            .arg(id.as_str())
            .query_async(&mut self.con())
            .await?;
        json.map(|j| record(&key, node, &j)).transpose()
    }

    /// The assigned keys a node owns now (the Go library's `GetNodeKeys`), in no particular
    /// order. Read page by page, so a node with a million keys does not block Redis.
    ///
    /// ```no_run
    /// # async fn example(p: pantheon_client::Pantheon) -> Result<(), pantheon_client::ClientError> {
    /// let keys = p.node_keys("node-1").await?;
    /// println!("node-1 owns {} keys", keys.len());
    /// # Ok(()) }
    /// ```
    pub async fn node_keys(&self, node: &str) -> Result<Vec<String>, ClientError> {
        let key = self.inner.layout.node_keys(&node_id(node)?);
        let mut out: Vec<String> =
            readmodel::scan_all(&mut self.con(), "SSCAN", Some(&key), None).await?;
        // SSCAN may return an element twice (while the set is rehashed).
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// The committed owner of an assigned key (the Go library's `GetKeyNode`): `None` when
    /// the key was never assigned, or no node can own keys right now. For the owner of any
    /// key without a round trip, see [`Pantheon::locate`].
    ///
    /// ```no_run
    /// # async fn example(p: pantheon_client::Pantheon) -> Result<(), pantheon_client::ClientError> {
    /// match p.key_node("user:1").await? {
    ///     Some(node) => println!("user:1 is on {node}"),
    ///     None => println!("user:1 has no owner"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn key_node(&self, key: &str) -> Result<Option<NodeId>, ClientError> {
        let map = self.inner.layout.keymap();
        let node: Option<String> = redis::cmd("HGET")
            .arg(&map)
            .arg(key)
            .query_async(&mut self.con())
            .await?;
        node.map(|n| {
            NodeId::new(&n).map_err(|e| ClientError::damaged(&map, format!("key {key:?}: {e}")))
        })
        .transpose()
    }
}
