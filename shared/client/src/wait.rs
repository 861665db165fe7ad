//! Read-your-writes: [`Pantheon::wait_applied`] polls the projector's checkpoint until it
//! covers a log entry, then looks the entry up in the `rejected` stream, where a rejection
//! carries the same stream id as the log entry it rejects.

use std::time::Duration;

use pantheon_domain::EntryId;
use pantheon_store::{readmodel, rejected};
use tokio::time::Instant;

use crate::{ClientError, Pantheon};

/// The first poll of the checkpoint comes this soon; later ones back off to
/// [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(5);
const MAX_POLL: Duration = Duration::from_millis(100);

/// An entry the projector applied successfully. (A rejected one is
/// [`ClientError::Rejected`], so `?` treats it as the failure it usually is.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// The entry waited for.
    pub id: EntryId,
    /// The projector's checkpoint when the wait ended (at or after `id`): reads now see at
    /// least this much of the log.
    pub checkpoint: EntryId,
}

enum Poll {
    /// The projector got to the entry: the outcome.
    Done(Result<Applied, ClientError>),
    /// Not yet; the projector's checkpoint.
    Behind(Option<EntryId>),
}

impl Pantheon {
    /// Waits until the projector has applied log entry `id`, for at most `timeout`.
    ///
    /// * `Ok(Applied)` — applied; every read model and the ring now reflect it (and
    ///   possibly later entries). A repeated command (same `cmd`) counts as applied.
    /// * `Err(ClientError::Rejected { reason, .. })` — the projector refused it, e.g.
    ///   `unknown node "n9"`; nothing changed.
    /// * `Err(ClientError::Timeout { .. })` — not applied in time: usually no projector is
    ///   running for this cluster, or it is far behind.
    ///
    /// Connection failures while polling are retried until the timeout.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use pantheon_client::ClientError;
    /// # async fn example(p: pantheon_client::Pantheon) -> Result<(), ClientError> {
    /// let id = p.leave("node-9").await?;
    /// match p.wait_applied(id, Duration::from_secs(5)).await {
    ///     Ok(_) => println!("node-9 left"),
    ///     Err(ClientError::Rejected { reason, .. }) => println!("refused: {reason}"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn wait_applied(
        &self,
        id: EntryId,
        timeout: Duration,
    ) -> Result<Applied, ClientError> {
        let start = Instant::now();
        let deadline = start + timeout;
        let mut pause = FIRST_POLL;
        let mut last_applied = None;
        loop {
            match self.poll_applied(id).await {
                Ok(Poll::Done(outcome)) => return outcome,
                Ok(Poll::Behind(last)) => last_applied = last,
                Err(ClientError::Redis(e)) if e.may_succeed_again() => {
                    tracing::debug!(error = %e, "polling the checkpoint failed; retrying");
                }
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ClientError::Timeout {
                    id,
                    waited: now - start,
                    last_applied,
                    cluster: self.inner.cluster.clone(),
                });
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(MAX_POLL);
        }
    }

    async fn poll_applied(&self, id: EntryId) -> Result<Poll, ClientError> {
        match self.last_applied().await? {
            Some(last) if last >= id => Ok(Poll::Done(match self.rejection(id).await? {
                Some(reason) => Err(ClientError::Rejected { id, reason }),
                None => Ok(Applied {
                    id,
                    checkpoint: last,
                }),
            })),
            last => Ok(Poll::Behind(last)),
        }
    }

    /// The last log entry the projector has applied (`None` before the first).
    ///
    /// ```no_run
    /// # async fn example(p: pantheon_client::Pantheon) -> Result<(), pantheon_client::ClientError> {
    /// println!("applied up to {:?}", p.last_applied().await?);
    /// # Ok(()) }
    /// ```
    pub async fn last_applied(&self) -> Result<Option<EntryId>, ClientError> {
        let checkpoint = readmodel::checkpoint(&mut self.con(), &self.inner.layout).await?;
        Ok(checkpoint.last_id()?)
    }

    /// Why the projector rejected log entry `id`, or `None` if it did not (or has not got
    /// to it yet: see [`Pantheon::wait_applied`]).
    ///
    /// ```no_run
    /// # async fn example(p: pantheon_client::Pantheon, id: pantheon_client::EntryId) -> Result<(), pantheon_client::ClientError> {
    /// if let Some(reason) = p.rejection(id).await? {
    ///     println!("{id} was rejected: {reason}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn rejection(&self, id: EntryId) -> Result<Option<String>, ClientError> {
        let found = rejected::find(&mut self.con(), &self.inner.layout, id).await?;
        Ok(found.map(|e| {
            e.get("reason")
                .unwrap_or("rejected (no reason recorded)")
                .to_owned()
        }))
    }
}
