//! The `rejected` stream: inputs the projector refused. A rejection reuses the log entry's id,
//! so "was entry X rejected?" is one `XRANGE rejected X X`.
//!
//! A rejected entry's fields are kept as evidence, but clipped: a hostile or broken producer
//! must not be able to make Pantheon store megabytes per bad entry. Each field name keeps at
//! most [`MAX_NAME_BYTES`] and each value at most [`MAX_VALUE_BYTES`] bytes; a clipped one
//! gets a `size:<name>` field with its original size in bytes.

use pantheon_domain::EntryId;
use redis::aio::ConnectionLike;

use crate::stream::{self, Bound};
use crate::{Layout, RawEntry, StoreError};

/// Most bytes of a rejected entry's field value kept in `rejected`.
pub const MAX_VALUE_BYTES: usize = 4096;
/// Most bytes of a rejected entry's field name kept in `rejected`.
pub const MAX_NAME_BYTES: usize = 256;

/// The fields of the rejection of log entry `id`: `entry`, `reason`, then the entry's first
/// `max_fields` fields as `raw:<name>` (clipped, with `size:<name>` when clipped), and
/// `truncated` = the entry's field count when it had more.
pub fn fields(
    id: EntryId,
    reason: &str,
    raw: &[(Vec<u8>, Vec<u8>)],
    max_fields: usize,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b"entry".to_vec(), id.to_string().into_bytes()),
        (b"reason".to_vec(), reason.as_bytes().to_vec()),
    ];
    for (k, v) in raw.iter().take(max_fields) {
        let name = &k[..k.len().min(MAX_NAME_BYTES)];
        let mut raw_name = b"raw:".to_vec();
        raw_name.extend_from_slice(name);
        out.push((raw_name, v[..v.len().min(MAX_VALUE_BYTES)].to_vec()));
        if v.len() > MAX_VALUE_BYTES || k.len() > MAX_NAME_BYTES {
            let mut size_name = b"size:".to_vec();
            size_name.extend_from_slice(name);
            out.push((size_name, v.len().to_string().into_bytes()));
        }
    }
    if raw.len() > max_fields {
        out.push((b"truncated".to_vec(), raw.len().to_string().into_bytes()));
    }
    out
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_fields_are_clipped_with_their_size() {
        let raw = vec![
            (b"type".to_vec(), b"join".to_vec()),
            (b"node".to_vec(), vec![b'x'; 2_000_000]),
        ];
        let out = fields(EntryId::new(5, 0), "too big", &raw, 64);
        let get = |name: &[u8]| out.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        assert_eq!(get(b"raw:type"), Some(b"join".to_vec()));
        assert_eq!(get(b"raw:node").map(|v| v.len()), Some(MAX_VALUE_BYTES));
        assert_eq!(get(b"size:node"), Some(b"2000000".to_vec()));
        assert_eq!(get(b"size:type"), None);
        let total: usize = out.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(total < 5 * 1024, "{total}");
    }
}
