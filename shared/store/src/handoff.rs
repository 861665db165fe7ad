//! The state a node hands over with keys it releases (docs/adr/0016): a hash per releasing
//! node, `node:<id>:handoff`, key → value. The releasing worker writes the values *before* it
//! writes its `released` entry; the new owner reads them when its feed says `acquire` with
//! `state 1`, then deletes them. Every write renews a TTL, so values nobody took (the new
//! owner died, the move was undone) do not stay.

use redis::aio::ConnectionLike;

use crate::StoreError;
use crate::layout::Layout;
use pantheon_domain::NodeId;

/// Largest value one key may hand over.
pub const MAX_HANDOFF_VALUE_BYTES: usize = 1 << 20;
/// Largest total of values one release may hand over.
pub const MAX_HANDOFF_BYTES: usize = 64 << 20;
/// How long handed-over values wait for their new owner.
pub const HANDOFF_TTL_MS: u64 = 3600 * 1000;
/// Values written per `HSET` (bounded so one call stays small).
const WRITE_CHUNK: usize = 1000;

/// Why values cannot be handed over.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandoffTooLarge {
    #[error(
        "the state of key {key:?} is {len} bytes, more than the limit of {MAX_HANDOFF_VALUE_BYTES}"
    )]
    Value { key: String, len: usize },
    #[error(
        "the state handed over in one release is {len} bytes, more than the limit of {MAX_HANDOFF_BYTES}"
    )]
    Total { len: usize },
}

/// Checks the size limits before anything is written.
pub fn check_sizes(values: &[(String, Vec<u8>)]) -> Result<(), HandoffTooLarge> {
    let mut total = 0usize;
    for (key, value) in values {
        if value.len() > MAX_HANDOFF_VALUE_BYTES {
            return Err(HandoffTooLarge::Value {
                key: key.clone(),
                len: value.len(),
            });
        }
        total += value.len();
    }
    if total > MAX_HANDOFF_BYTES {
        return Err(HandoffTooLarge::Total { len: total });
    }
    Ok(())
}

/// Stores the values `from` hands over (call [`check_sizes`] first).
pub async fn put<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    from: &NodeId,
    values: &[(String, Vec<u8>)],
) -> Result<(), StoreError> {
    if values.is_empty() {
        return Ok(());
    }
    let key = layout.node_handoff(from);
    let mut pipe = redis::pipe();
    for chunk in values.chunks(WRITE_CHUNK) {
        let cmd = pipe.cmd("HSET").arg(&key);
        for (k, v) in chunk {
            cmd.arg(k).arg(v.as_slice());
        }
        cmd.ignore();
    }
    pipe.cmd("PEXPIRE").arg(&key).arg(HANDOFF_TTL_MS).ignore();
    pipe.query_async::<()>(con).await?;
    Ok(())
}

/// The values `from` handed over for `keys` (keys without one are left out).
pub async fn take<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    from: &NodeId,
    keys: &[String],
) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for chunk in keys.chunks(WRITE_CHUNK) {
        let values: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
            .arg(layout.node_handoff(from))
            .arg(chunk)
            .query_async(con)
            .await?;
        out.extend(
            chunk
                .iter()
                .zip(values)
                .filter_map(|(k, v)| Some((k.clone(), v?))),
        );
    }
    Ok(out)
}

/// Deletes the values of `keys` the new owner took.
pub async fn forget<C: ConnectionLike + Send>(
    con: &mut C,
    layout: &Layout,
    from: &NodeId,
    keys: &[String],
) -> Result<(), StoreError> {
    for chunk in keys.chunks(WRITE_CHUNK) {
        redis::cmd("HDEL")
            .arg(layout.node_handoff(from))
            .arg(chunk)
            .query_async::<()>(con)
            .await?;
    }
    Ok(())
}
