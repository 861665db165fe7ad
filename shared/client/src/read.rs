//! Reads of the read models the projector commits atomically: nodes, a node's keys, a key's
//! owner. Large hashes and sets are read with HSCAN/SSCAN, never in one reply.

use pantheon_domain::{DecodeError, EntryId, Event, NodeId};
use pantheon_store::readmodel::{self, KeyTotals, NodeRecord};
use pantheon_store::{RawEntry, events};

use crate::{ClientError, Pantheon};

fn node_id(node: &str) -> Result<NodeId, ClientError> {
    NodeId::new(node).map_err(|e| ClientError::Invalid(DecodeError::from(e)))
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
        Ok(readmodel::nodes(&mut self.con(), &self.inner.layout).await?)
    }

    /// The cluster's policy as the projector last committed it (the defaults before any
    /// `policy` entry). [`Pantheon::set_policy`] changes it.
    pub async fn policy(&self) -> Result<pantheon_domain::Policy, ClientError> {
        Ok(readmodel::load_policy(&mut self.con(), &self.inner.layout).await?)
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
        Ok(readmodel::node(&mut self.con(), &self.inner.layout, &id).await?)
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
        let id = node_id(node)?;
        Ok(readmodel::node_keys(&mut self.con(), &self.inner.layout, &id).await?)
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
        Ok(readmodel::key_owner(&mut self.con(), &self.inner.layout, key).await?)
    }

    /// [`Pantheon::key_node`] with the owner's token ([`Pantheon::member_token`]), in one
    /// round trip of short replies: what a router sends with each request. The owners'
    /// tokens are read again only when the ring's version or token clock moved, so the cost
    /// does not grow with the cluster.
    pub async fn key_node_with_token(
        &self,
        key: &str,
    ) -> Result<Option<(NodeId, Option<u64>)>, ClientError> {
        Ok(self.key_route(key).await?.map(|r| (r.owner, r.token)))
    }

    /// [`Pantheon::key_node_with_token`] with the key's read replicas (docs/adr/0018), in the
    /// same round trip: a router may send reads to any of them, writes to the owner.
    pub async fn key_route(&self, key: &str) -> Result<Option<crate::KeyRoute>, ClientError> {
        let mut con = self.con();
        let layout = &self.inner.layout;
        let parts = readmodel::route_parts(&mut con, layout, key).await?;
        let Some(owner) = parts.owner else {
            return Ok(None);
        };
        let tokens = self
            .inner
            .tokens
            .at(&mut con, layout, parts.tokens_at)
            .await?;
        Ok(Some(crate::KeyRoute {
            token: tokens.get(&owner).copied(),
            owner,
            replicas: parts.replicas,
        }))
    }

    /// A hot key's read replicas (docs/adr/0018): nodes that serve reads of a cached value of
    /// it besides its owner. Empty for a key without.
    pub async fn replicas(&self, key: &str) -> Result<Vec<NodeId>, ClientError> {
        Ok(pantheon_store::loads::replicas_of(&mut self.con(), &self.inner.layout, key).await?)
    }

    /// For an assigned key, its owner with the owner's token (`None` inside: no node can own
    /// it now) and the ring version, in one round trip; `None` for a key that is not
    /// assigned (only the ring places it: [`Pantheon::locate`]).
    pub async fn assigned_key(&self, key: &str) -> Result<Option<crate::AssignedKey>, ClientError> {
        Ok(readmodel::assigned_key(&mut self.con(), &self.inner.layout, key).await?)
    }

    /// The events caused by the given log entries, oldest first, found among the latest
    /// `scan` events: what a write just applied did (its entries were just applied, so their
    /// events are near the end of the stream).
    pub async fn events_caused_by(
        &self,
        causes: &[EntryId],
        scan: usize,
    ) -> Result<Vec<Event>, ClientError> {
        let latest = self.latest_events(scan).await?;
        Ok(latest
            .into_iter()
            .filter_map(|e| Event::decode(&e.fields).ok())
            .filter(|e| causes.contains(&e.cause))
            .collect())
    }

    /// Keys owned by each node, in the order given (a node that owns none counts 0).
    ///
    /// ```no_run
    /// # async fn example(p: pantheon_client::Pantheon) -> Result<(), Box<dyn std::error::Error>> {
    /// let nodes = [pantheon_client::NodeId::new("node-1")?];
    /// println!("node-1 owns {} keys", p.node_key_counts(&nodes).await?[0]);
    /// # Ok(()) }
    /// ```
    pub async fn node_key_counts(&self, nodes: &[NodeId]) -> Result<Vec<u64>, ClientError> {
        Ok(readmodel::node_key_counts(&mut self.con(), &self.inner.layout, nodes).await?)
    }

    /// How many assigned keys have an owner, and how many no node can own right now.
    ///
    /// ```no_run
    /// # async fn example(p: pantheon_client::Pantheon) -> Result<(), pantheon_client::ClientError> {
    /// let totals = p.key_totals().await?;
    /// println!("{} owned, {} without an owner", totals.owned, totals.unowned);
    /// # Ok(()) }
    /// ```
    pub async fn key_totals(&self) -> Result<KeyTotals, ClientError> {
        Ok(readmodel::key_totals(&mut self.con(), &self.inner.layout).await?)
    }

    /// True when `key` is assigned but no node can own it right now (none alive and
    /// undrained); [`Pantheon::key_node`] then says `None` too.
    ///
    /// ```no_run
    /// # async fn example(p: pantheon_client::Pantheon) -> Result<(), pantheon_client::ClientError> {
    /// if p.is_unowned("user:1").await? {
    ///     println!("user:1 waits for a node that can own it");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn is_unowned(&self, key: &str) -> Result<bool, ClientError> {
        Ok(readmodel::is_unowned(&mut self.con(), &self.inner.layout, key).await?)
    }

    /// The last `limit` events, oldest first, as the stream holds them (decode each with
    /// [`Event::decode`]).
    ///
    /// ```no_run
    /// # async fn example(p: pantheon_client::Pantheon) -> Result<(), pantheon_client::ClientError> {
    /// for entry in p.latest_events(10).await? {
    ///     println!("{} {:?}", entry.id, pantheon_client::Event::decode(&entry.fields));
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn latest_events(&self, limit: usize) -> Result<Vec<RawEntry>, ClientError> {
        Ok(events::latest(&mut self.con(), &self.inner.layout, limit).await?)
    }
}
