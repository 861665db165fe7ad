//! Hand-offs of planned moves, from the releasing and the acquiring node's side (see
//! `docs/adr/0016-planned-moves-hand-off.md`). The worker library drives these; a worker in
//! another language does the same with the wire format:
//!
//! 1. its feed says `handoff` (keys, `peer`): it stores the keys' state with
//!    [`Pantheon::put_handoff_state`], then writes [`Pantheon::release`];
//! 2. the new owner's feed says `acquire` with `state`: it reads the values with
//!    [`Pantheon::take_handoff_state`] from the `peer`'s hash, uses them, then
//!    [`Pantheon::forget_handoff_state`].

use pantheon_domain::limits::MAX_BATCH_KEYS;
use pantheon_domain::{EntryId, LogEntry, NodeId};
use pantheon_store::handoff;

pub use pantheon_store::handoff::{
    HANDOFF_TTL_MS, HandoffTooLarge, MAX_HANDOFF_BYTES, MAX_HANDOFF_VALUE_BYTES,
};

use crate::{ClientError, Pantheon};

fn node_id(node: &str) -> Result<NodeId, ClientError> {
    NodeId::new(node).map_err(|e| ClientError::Config(e.to_string()))
}

impl Pantheon {
    /// `node` releases `keys` it was asked to hand off: those it is still handing off move
    /// to their new owners in one commit (keys it is no longer handing off are skipped).
    /// Sent as entries of at most 10,000 keys; returns their ids.
    pub async fn release(&self, node: &str, keys: &[String]) -> Result<Vec<EntryId>, ClientError> {
        let mut ids = Vec::new();
        for chunk in keys.chunks(MAX_BATCH_KEYS) {
            let mut f = vec![("type", "released".to_owned()), ("node", node.to_owned())];
            f.extend(chunk.iter().map(|k| ("key", k.clone())));
            let entry = LogEntry::decode(&f)?;
            ids.push(self.append_entry(entry).await?);
        }
        Ok(ids)
    }

    /// Stores the state `node` hands over with keys it is about to release (at most
    /// [`MAX_HANDOFF_VALUE_BYTES`] per value and [`MAX_HANDOFF_BYTES`] per call; kept
    /// [`HANDOFF_TTL_MS`]). Write it *before* [`Pantheon::release`].
    pub async fn put_handoff_state(
        &self,
        node: &str,
        values: &[(String, Vec<u8>)],
    ) -> Result<(), ClientError> {
        handoff::check_sizes(values).map_err(|e| ClientError::Config(e.to_string()))?;
        let from = node_id(node)?;
        Ok(handoff::put(&mut self.con(), self.layout(), &from, values).await?)
    }

    /// The state `from` handed over for `keys` (keys without a value are left out).
    pub async fn take_handoff_state(
        &self,
        from: &NodeId,
        keys: &[String],
    ) -> Result<Vec<(String, Vec<u8>)>, ClientError> {
        Ok(handoff::take(&mut self.con(), self.layout(), from, keys).await?)
    }

    /// Deletes the state of `keys` handed over by `from`, once the new owner has it.
    pub async fn forget_handoff_state(
        &self,
        from: &NodeId,
        keys: &[String],
    ) -> Result<(), ClientError> {
        Ok(handoff::forget(&mut self.con(), self.layout(), from, keys).await?)
    }
}
