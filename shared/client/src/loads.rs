//! Load reports (see `docs/adr/0018-load-aware-placement.md`): a worker's hottest keys, as a
//! `key_loads` entry. The node's own load goes in its health answer's `X-Pantheon-Load`
//! header, which the prober reads.

use pantheon_domain::entry::Command;
use pantheon_domain::load::MAX_KEY_LOADS;
use pantheon_domain::{EntryId, LogEntry, NodeId};

use crate::{ClientError, Pantheon};

pub use pantheon_domain::load::{format_load, parse_load};

/// The mean of the loads nodes report (`None`: none reports one).
pub fn mean_load<'a>(records: impl IntoIterator<Item = &'a crate::NodeRecord>) -> Option<u64> {
    let loads: Vec<u64> = records.into_iter().filter_map(|r| r.load).collect();
    (!loads.is_empty()).then(|| loads.iter().sum::<u64>() / loads.len() as u64)
}

/// A node's reported load and its share of the mean, as `nodes` and the dashboard show it:
/// `12.5 (1.08× mean)`; `-` without a report.
pub fn load_text(load: Option<u64>, mean: u64) -> String {
    match load {
        None => "-".to_owned(),
        Some(load) if mean == 0 => format_load(load),
        Some(load) => format!(
            "{} ({:.2}× mean)",
            format_load(load),
            load as f64 / mean as f64
        ),
    }
}

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

#[cfg(test)]
mod tests {
    #[test]
    fn load_text_shows_the_share_of_the_mean() {
        assert_eq!(super::load_text(Some(12_500), 10_000), "12.5 (1.25× mean)");
        assert_eq!(super::load_text(Some(3_000), 0), "3");
        assert_eq!(super::load_text(None, 10_000), "-");
    }
}
