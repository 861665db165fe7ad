//! [`EventTail`]: following the events stream with `XREAD BLOCK`, without a consumer group
//! (`pantheon events --follow`, the demo's narration). The read blocks, so it runs on a
//! connection of its own: a blocked read must not stall other commands.

use std::collections::VecDeque;
use std::time::Duration;

use pantheon_domain::EntryId;
use pantheon_store::stream::After;
use pantheon_store::{Layout, PinnedConnection, RawEntry, Redis, StoreError, events};
use tokio::time::Instant;

use crate::{ClientError, Pantheon};

/// Reads the events stream from a position onwards, entry by entry; from
/// [`Pantheon::tail_events`].
pub struct EventTail {
    redis: Redis,
    /// Reopened (on the master of the moment) after a failure.
    con: Option<PinnedConnection>,
    layout: Layout,
    /// The last id read (`Now` until the first entry when following from "now").
    last: After,
    buffer: VecDeque<RawEntry>,
}

impl std::fmt::Debug for EventTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventTail")
            .field("stream", &self.layout.events())
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl Pantheon {
    /// Follows the events after `after` (`None`: only events added from now on), read
    /// directly from the stream: nothing is acknowledged, nothing is redelivered. For
    /// at-least-once delivery use [`Pantheon::subscribe`].
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// # async fn example(p: pantheon_client::Pantheon) -> Result<(), pantheon_client::ClientError> {
    /// let mut tail = p.tail_events(None).await?;
    /// while let Some(entry) = tail.next(Duration::from_secs(5)).await? {
    ///     println!("event {}", entry.id);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn tail_events(&self, after: Option<EntryId>) -> Result<EventTail, ClientError> {
        let redis = self.redis();
        Ok(EventTail {
            con: Some(redis.blocking().await?),
            redis: redis.clone(),
            layout: self.layout().clone(),
            last: after.map_or(After::Now, After::Id),
            buffer: VecDeque::new(),
        })
    }
}

impl EventTail {
    /// The next entry, waiting at most `within`; `None` when none came.
    pub async fn next(&mut self, within: Duration) -> Result<Option<RawEntry>, ClientError> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(entry) = self.buffer.pop_front() {
                return Ok(Some(entry));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            // BLOCK 0 would wait forever: at least 1 ms, at most 1 s per read so a caller's
            // cancellation is noticed soon.
            let block = left
                .min(Duration::from_secs(1))
                .max(Duration::from_millis(1));
            if self.con.is_none() {
                match self.redis.blocking().await {
                    Ok(con) => self.con = Some(con),
                    // The handle backs off between attempts and logs the outage once.
                    Err(StoreError::Unavailable { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            let Some(con) = self.con.as_mut() else {
                continue;
            };
            let read = events::read_after(con, &self.layout, self.last, 1000, block).await;
            let entries = match read {
                Ok(entries) => entries,
                // The master failed over or the connection dropped: read again from the
                // same position on the master of the moment (the handle backs off).
                Err(e) if e.is_transient() => {
                    self.con = None;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if let Some(last) = entries.last() {
                self.last = After::Id(last.id);
            }
            self.buffer.extend(entries);
        }
    }
}
