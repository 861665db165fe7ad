//! Following the events stream with `XREAD BLOCK` on a dedicated connection (a blocking read
//! must not stall other commands): `pantheon events --follow` and the demo's narration.

use std::collections::VecDeque;
use std::time::Duration;

use pantheon_domain::EntryId;
use pantheon_store::stream::After;
use pantheon_store::{Layout, PinnedConnection, RawEntry, Redis, StoreError, events};
use tokio::time::Instant;

/// Reads the events stream from a position onwards, entry by entry.
pub struct Tail {
    redis: Redis,
    /// Reopened (on the master of the moment) after a failure.
    con: Option<PinnedConnection>,
    layout: Layout,
    /// The last id read (`Now` until the first entry when following from "now").
    last: After,
    buffer: VecDeque<RawEntry>,
}

impl std::fmt::Debug for Tail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tail")
            .field("stream", &self.layout.events())
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl Tail {
    /// Follows the events of `layout` after `after` (`None` = only events added from now on).
    pub async fn new(
        redis: &Redis,
        layout: &Layout,
        after: Option<EntryId>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            con: Some(redis.blocking().await?),
            redis: redis.clone(),
            layout: layout.clone(),
            last: after.map_or(After::Now, After::Id),
            buffer: VecDeque::new(),
        })
    }

    /// The next entry, waiting at most `within`; `None` when none came.
    pub async fn next(&mut self, within: Duration) -> anyhow::Result<Option<RawEntry>> {
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
                Err(StoreError::Redis(e)) if pantheon_store::handle::is_transient(&e) => {
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
