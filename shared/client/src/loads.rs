//! Load reports (see `docs/adr/0018-load-aware-placement.md`): a worker's hottest keys, as a
//! `key_loads` entry. The node's own load goes in its health answer's `X-Pantheon-Load`
//! header, which the prober reads.

use pantheon_domain::entry::Command;
use pantheon_domain::load::MAX_KEY_LOADS;
use pantheon_domain::{EntryId, LogEntry, NodeId};

use crate::{ClientError, Pantheon};

pub use pantheon_domain::load::{format_load, parse_load};

impl Pantheon {
    /// `node`'s hottest keys with their loads in thousandths of the cluster's unit per second
    /// (at most 64; the heaviest are kept). An empty list says none is hot any more.
    pub async fn report_key_loads(
        &self,
        node: &str,
        keys: &[(String, u64)],
    ) -> Result<EntryId, ClientError> {
        let node = NodeId::new(node).map_err(|e| ClientError::Config(e.to_string()))?;
        let mut keys = keys.to_vec();
        keys.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        keys.truncate(MAX_KEY_LOADS);
        let entry = LogEntry::new(Command::KeyLoads { node, keys });
        // Through the decoder: what is appended is exactly what the fold will read.
        let entry = LogEntry::decode(&entry.encode())?;
        self.append_entry(entry).await
    }
}
