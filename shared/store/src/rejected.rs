//! The `rejected` stream: inputs the projector refused. A rejection reuses the log entry's id,
//! so "was entry X rejected?" is one `XRANGE rejected X X`.

use pantheon_domain::EntryId;
use redis::aio::ConnectionLike;

use crate::stream::{self, Bound};
use crate::{Layout, RawEntry, StoreError};

/// The rejection of log entry `id` (fields `entry`, `reason`, `raw:*`), if it was rejected.
pub async fn find<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    id: EntryId,
) -> Result<Option<RawEntry>, StoreError> {
    let at = Bound::Including(id);
    Ok(stream::range(con, &layout.rejected(), at, at, None)
        .await?
        .into_iter()
        .next())
}
