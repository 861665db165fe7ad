//! Writes: each builds the log entry a producer in any language would XADD, checks it with
//! the projector's own decoder, tags it with a unique command id (`cmd`) and appends it.
//!
//! A write that fails on a dropped connection is retried. If the first XADD did land, the
//! log then holds the command twice; the projector applies the first and skips the second
//! as a duplicate of the same `cmd`, so a retry never applies a command twice.

use std::time::Duration;

use pantheon_domain::limits::MAX_BATCH_KEYS;
use pantheon_domain::policy::PolicyChange;
use pantheon_domain::{Command, EntryId, LogEntry};
use pantheon_store::StoreError;
use pantheon_store::log::{self, Replicated};

use crate::{ClientError, Pantheon};

/// The first retry waits this long; each further one twice as long.
const RETRY_BACKOFF: Duration = Duration::from_millis(50);

/// Key batches sent in one round trip by `distribute`/`unassign` (250,000 keys, a few MB):
/// with durability, one `WAIT` confirms them all.
const ENTRIES_PER_ROUND_TRIP: usize = 25;

/// A node joining, in the Go library's shape: the health URL is
/// `<address>:<port>/<path>`, e.g. `http://localhost` + `8080` + `health`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JoinOp {
    /// The node id: ASCII letters, digits and `. _ - : @`, at most 128 bytes.
    pub id: String,
    /// Scheme and host, like `http://10.0.0.5`.
    pub address: String,
    pub port: u16,
    /// Path of the health endpoint, with or without the leading `/`.
    pub path: String,
    /// Share of keys relative to other nodes, `1..=100` (default 1).
    pub weight: Option<u32>,
}

impl JoinOp {
    /// A join with the default weight.
    pub fn new(id: &str, address: &str, port: u16, path: &str) -> Self {
        Self {
            id: id.to_owned(),
            address: address.to_owned(),
            port,
            path: path.to_owned(),
            weight: None,
        }
    }

    /// Sets the weight.
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = Some(weight);
        self
    }
}

fn pairs(kind: &str) -> Vec<(&'static str, String)> {
    vec![("type", kind.to_owned())]
}

/// Decodes the fields as the projector will; the error is the one it would write to
/// `rejected`.
fn checked(fields: &[(&'static str, String)]) -> Result<LogEntry, ClientError> {
    Ok(LogEntry::decode(fields)?)
}

/// A `join` by full health URL, with `handoff 1` when the node hands off.
fn join_url_fields(
    id: &str,
    url: &str,
    weight: Option<u32>,
    handoff: bool,
) -> Vec<(&'static str, String)> {
    let mut f = pairs("join");
    f.push(("node", id.to_owned()));
    f.push(("url", url.to_owned()));
    if let Some(w) = weight {
        f.push(("weight", w.to_string()));
    }
    if handoff {
        f.push(("handoff", "1".to_owned()));
    }
    f
}

fn new_cmd() -> String {
    format!("rs-{:032x}", rand::random::<u128>())
}

impl Pantheon {
    /// Adds a node (or re-adds it: a new epoch, its health starts over).
    ///
    /// ```no_run
    /// # async fn example(p: pantheon_client::Pantheon) -> Result<(), pantheon_client::ClientError> {
    /// use pantheon_client::JoinOp;
    /// let id = p.join(JoinOp::new("node-1", "http://localhost", 8080, "health")).await?;
    /// println!("join is log entry {id}");
    /// # Ok(()) }
    /// ```
    pub async fn join(&self, op: JoinOp) -> Result<EntryId, ClientError> {
        let mut f = pairs("join");
        f.push(("node", op.id));
        f.push(("address", op.address));
        f.push(("port", op.port.to_string()));
        f.push(("path", op.path));
        if let Some(w) = op.weight {
            f.push(("weight", w.to_string()));
        }
        self.append(checked(&f)?).await
    }

    /// Adds a node by its full health URL (`http` or `https`).
    ///
    /// ```no_run
    /// # async fn example(p: pantheon_client::Pantheon) -> Result<(), pantheon_client::ClientError> {
    /// p.join_url("node-2", "http://10.0.0.6:8080/health", Some(2)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn join_url(
        &self,
        id: &str,
        url: &str,
        weight: Option<u32>,
    ) -> Result<EntryId, ClientError> {
        self.append(checked(&join_url_fields(id, url, weight, false))?)
            .await
    }

    /// [`Pantheon::join_url`] for a node that hands off: a planned move of its keys waits
    /// until it released them (with their state), see `docs/adr/0016-planned-moves-hand-off.md`.
    /// The worker library joins so; a node that joins so must answer its feed's `handoff`
    /// lines with [`Pantheon::release`], or each planned move waits for the policy's
    /// `handoff_timeout`.
    pub async fn join_url_with_handoff(
        &self,
        id: &str,
        url: &str,
        weight: Option<u32>,
    ) -> Result<EntryId, ClientError> {
        self.append(checked(&join_url_fields(id, url, weight, true))?)
            .await
    }

    /// Removes a node for good; its keys move to the remaining nodes.
    ///
    /// ```no_run
    /// # async fn example(p: pantheon_client::Pantheon) -> Result<(), pantheon_client::ClientError> {
    /// p.leave("node-1").await?;
    /// # Ok(()) }
    /// ```
    pub async fn leave(&self, node: &str) -> Result<EntryId, ClientError> {
        self.node_command("leave", node).await
    }

    /// Keeps a node but moves its keys away (maintenance); [`Pantheon::undrain`] undoes it.
    ///
    /// ```no_run
    /// # async fn example(p: pantheon_client::Pantheon) -> Result<(), pantheon_client::ClientError> {
    /// p.drain("node-1").await?;
    /// # Ok(()) }
    /// ```
    pub async fn drain(&self, node: &str) -> Result<EntryId, ClientError> {
        self.node_command("drain", node).await
    }

    /// Lets a drained node own keys again.
    ///
    /// ```no_run
    /// # async fn example(p: pantheon_client::Pantheon) -> Result<(), pantheon_client::ClientError> {
    /// p.undrain("node-1").await?;
    /// # Ok(()) }
    /// ```
    pub async fn undrain(&self, node: &str) -> Result<EntryId, ClientError> {
        self.node_command("undrain", node).await
    }

    /// Changes a node's weight (`1..=100`): its share of keys relative to the others.
    ///
    /// ```no_run
    /// # async fn example(p: pantheon_client::Pantheon) -> Result<(), pantheon_client::ClientError> {
    /// p.set_weight("node-1", 3).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_weight(&self, node: &str, weight: u32) -> Result<EntryId, ClientError> {
        let mut f = pairs("weight");
        f.push(("node", node.to_owned()));
        f.push(("weight", weight.to_string()));
        self.append(checked(&f)?).await
    }

    /// Changes the cluster's policy (thresholds, placement, damping, hand-off, load): only
    /// the fields the change sets. Checked like every write, so a field out of range is
    /// [`ClientError::Invalid`] and nothing is appended; the fold may still reject a change
    /// that does not fit the cluster (damping thresholds, the ring's size). Applied, it
    /// emits `policy_changed` with the whole new policy (none when nothing changed).
    ///
    /// ```no_run
    /// # async fn example(p: pantheon_client::Pantheon) -> Result<(), Box<dyn std::error::Error>> {
    /// use pantheon_domain::policy::PolicyChange;
    /// let change = PolicyChange::decode(&[("load_epsilon", "10")])?;
    /// let id = p.set_policy(&change).await?;
    /// p.wait_applied(id, std::time::Duration::from_secs(5)).await?;
    /// println!("load_epsilon is now {}", p.policy().await?.load_epsilon);
    /// # Ok(()) }
    /// ```
    pub async fn set_policy(&self, change: &PolicyChange) -> Result<EntryId, ClientError> {
        let entry = LogEntry::new(Command::Policy(*change));
        self.append(checked(&entry.encode())?).await
    }

    /// Assigns keys: from now on each has an owner among the healthy nodes, kept up to date
    /// as nodes come and go. Sent as entries of at most [`MAX_BATCH_KEYS`] (10,000) keys
    /// each, up to 25 entries per round trip (on a replicated deployment, one `WAIT` per
    /// round trip); returns their ids in log order (wait for the last one to see all of them
    /// applied). Every batch is checked before the first is sent, so a bad key writes
    /// nothing. No keys, no entries. A [`ClientError::NotReplicated`] stops the call: the
    /// entries up to the one it names are on the master, later ones were not sent.
    ///
    /// ```no_run
    /// # async fn example(p: pantheon_client::Pantheon) -> Result<(), pantheon_client::ClientError> {
    /// let ids = p.distribute(["user:1", "user:2", "product:1"]).await?;
    /// if let Some(last) = ids.last() {
    ///     p.wait_applied(*last, std::time::Duration::from_secs(5)).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn distribute<I, K>(&self, keys: I) -> Result<Vec<EntryId>, ClientError>
    where
        I: IntoIterator<Item = K>,
        K: Into<String>,
    {
        self.key_batches("assign", keys).await
    }

    /// Unassigns keys (the opposite of [`Pantheon::distribute`]), in the same batches.
    ///
    /// ```no_run
    /// # async fn example(p: pantheon_client::Pantheon) -> Result<(), pantheon_client::ClientError> {
    /// p.unassign(["user:1"]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn unassign<I, K>(&self, keys: I) -> Result<Vec<EntryId>, ClientError>
    where
        I: IntoIterator<Item = K>,
        K: Into<String>,
    {
        self.key_batches("unassign", keys).await
    }

    async fn key_batches<I, K>(&self, kind: &str, keys: I) -> Result<Vec<EntryId>, ClientError>
    where
        I: IntoIterator<Item = K>,
        K: Into<String>,
    {
        let keys: Vec<String> = keys.into_iter().map(Into::into).collect();
        let entries = keys
            .chunks(MAX_BATCH_KEYS)
            .map(|chunk| {
                let mut f = pairs(kind);
                f.extend(chunk.iter().map(|k| ("key", k.clone())));
                checked(&f)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut ids = Vec::with_capacity(entries.len());
        for round_trip in entries.chunks(ENTRIES_PER_ROUND_TRIP) {
            ids.extend(self.append_all(round_trip.to_vec()).await?);
        }
        Ok(ids)
    }

    async fn node_command(&self, kind: &str, node: &str) -> Result<EntryId, ClientError> {
        let mut f = pairs(kind);
        f.push(("node", node.to_owned()));
        self.append(checked(&f)?).await
    }

    /// [`Pantheon::append`] for the other modules of the client.
    pub(crate) async fn append_entry(&self, entry: LogEntry) -> Result<EntryId, ClientError> {
        self.append(entry).await
    }

    /// Appends a checked entry under a fresh command id (see [`Pantheon::append_all`]).
    async fn append(&self, entry: LogEntry) -> Result<EntryId, ClientError> {
        let ids = self.append_all(vec![entry]).await?;
        ids.first()
            .copied()
            .ok_or_else(|| ClientError::Reply("XADD returned no id".to_owned()))
    }

    /// Appends checked entries, each under a fresh command id, in one round trip, retrying
    /// transient failures (with the same ids, so a retry of an append that did land is
    /// applied once). On a replicated deployment one `WAIT` after the last entry must see the
    /// configured number of replicas, else the result is [`ClientError::NotReplicated`]
    /// (naming the last entry; all of them are on the master), never success.
    async fn append_all(&self, entries: Vec<LogEntry>) -> Result<Vec<EntryId>, ClientError> {
        let entries: Vec<LogEntry> = entries
            .into_iter()
            .map(|entry| entry.with_cmd(new_cmd()))
            .collect();
        let durability = self.inner.redis.deployment().durability;
        let mut backoff = RETRY_BACKOFF;
        let mut attempt = 0;
        loop {
            let mut con = self.con();
            match log::append_all(&mut con, &self.inner.layout, &entries, durability).await {
                Ok((ids, Replicated::Enough)) => return Ok(ids),
                Ok((ids, Replicated::Short { acked, wanted })) => {
                    return Err(ClientError::NotReplicated {
                        id: ids.last().copied().unwrap_or(EntryId::ZERO),
                        acked,
                        wanted,
                        waited: durability.timeout,
                    });
                }
                Err(e) if attempt < self.inner.write_retries && e.may_succeed_again() => {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "XADD failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                Err(StoreError::Unavailable { .. }) if attempt < self.inner.write_retries => {
                    // The handle waits out its own backoff before resolving the master again.
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_join_op_becomes_the_url_the_decoder_builds() {
        let mut f = pairs("join");
        f.extend([
            ("node", "n1".to_owned()),
            ("address", "http://localhost".to_owned()),
            ("port", "8080".to_owned()),
            ("path", "health".to_owned()),
        ]);
        let entry = checked(&f).unwrap();
        assert_eq!(
            entry.to_string(),
            "v=1 type=join node=n1 url=http://localhost:8080/health"
        );
    }

    #[test]
    fn bad_input_gets_the_decoders_message() {
        let mut f = pairs("leave");
        f.push(("node", "a b".to_owned()));
        let err = checked(&f).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid input: bad node id: node id contains ' '; allowed are ASCII letters, digits and . _ - : @"
        );
    }

    #[test]
    fn command_ids_are_unique() {
        assert_ne!(new_cmd(), new_cmd());
    }
}
