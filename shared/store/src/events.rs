//! The events stream (decided facts for consumers): reading it back, following it, and
//! trimming it. Consumer groups on it are in [`crate::group`].

use std::time::Duration;

use pantheon_domain::EntryId;
use redis::aio::ConnectionLike;

use crate::stream::{self, After, Bound};
use crate::{Batch, Layout, RawEntry, StoreError};

/// The last `count` events, oldest first.
pub async fn latest<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    count: usize,
) -> Result<Vec<RawEntry>, StoreError> {
    let mut out =
        stream::rev_range(con, &layout.events(), Bound::Open, Bound::Open, Some(count)).await?;
    out.reverse();
    Ok(out)
}

/// Up to `count` events from `from` on, oldest first.
pub async fn range<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    from: Bound,
    count: usize,
) -> Result<Vec<RawEntry>, StoreError> {
    stream::range(con, &layout.events(), from, Bound::Open, Some(count)).await
}

/// Up to `count` events after `after`, waiting up to `block` for the first one (`XREAD
/// BLOCK`): pass a dedicated connection.
pub async fn read_after<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    after: After,
    count: usize,
    block: Duration,
) -> Result<Vec<RawEntry>, StoreError> {
    stream::read(con, &layout.events(), after, count, block).await
}

/// Events in the stream (0 also when it does not exist).
pub async fn len<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
) -> Result<u64, StoreError> {
    stream::len(con, &layout.events()).await
}

/// Stages trimming the events to about `max_len` entries (`~`: Redis trims whole macro
/// nodes, O(1) most of the time, so it can run with every commit).
pub fn stage_trim_len(batch: &mut Batch, layout: &Layout, max_len: u64) {
    batch.call(
        "XTRIM",
        &[&layout.events()],
        ["MAXLEN", "~", &max_len.to_string()],
    );
}

/// Stages trimming the events older than `keep_from`, approximately (as above).
pub fn stage_trim_before(batch: &mut Batch, layout: &Layout, keep_from: EntryId) {
    batch.call(
        "XTRIM",
        &[&layout.events()],
        ["MINID", "~", &keep_from.to_string()],
    );
}
