//! Load reporting (see `docs/adr/0018-load-aware-placement.md`): count requests with
//! [`LoadMeter::hit`]; the worker then reports, every [`REPORT_EVERY`], its hottest keys as a
//! `key_loads` entry (the top [`TOP_KEYS`], in requests per second over the last interval),
//! and its health answer carries the node's own rate in `X-Pantheon-Load`
//! ([`LoadMeter::header_value`]) for the prober. Aggregated per interval, never one entry per
//! request; the distinct keys counted per interval are bounded ([`MAX_COUNTED_KEYS`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use pantheon_client::Pantheon;
use tokio::sync::watch;
use tokio::time::Instant;

/// The response header a node reports its load in (read by the prober).
pub const HEADER: &str = "x-pantheon-load";
/// How often the hottest keys are reported (and the node's rate renewed).
pub const REPORT_EVERY: Duration = Duration::from_secs(2);
/// Keys per report.
pub const TOP_KEYS: usize = 32;
/// Distinct keys counted per interval; requests for further keys count only toward the
/// node's total (a scan over millions of keys must not grow memory).
pub const MAX_COUNTED_KEYS: usize = 100_000;

#[derive(Debug)]
struct Counts {
    keys: HashMap<String, u64>,
    total: u64,
    since: Instant,
    /// The node's rate over the last whole interval, in thousandths per second.
    last_rate: u64,
}

/// Counts a worker's requests per key. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct LoadMeter {
    counts: Arc<Mutex<Counts>>,
}

impl Default for LoadMeter {
    fn default() -> Self {
        Self::new()
    }
}

impl LoadMeter {
    pub fn new() -> Self {
        Self {
            counts: Arc::new(Mutex::new(Counts {
                keys: HashMap::new(),
                total: 0,
                since: Instant::now(),
                last_rate: 0,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One request for `key`.
    pub fn hit(&self, key: &str) {
        let mut c = self.lock();
        c.total += 1;
        if let Some(n) = c.keys.get_mut(key) {
            *n += 1;
        } else if c.keys.len() < MAX_COUNTED_KEYS {
            c.keys.insert(key.to_owned(), 1);
        }
    }

    /// The node's request rate over the last whole interval, as the `X-Pantheon-Load`
    /// header's value (requests per second).
    pub fn header_value(&self) -> String {
        pantheon_client::loads::format_load(self.lock().last_rate)
    }

    /// Ends the interval: the hottest keys with their rates (thousandths per second),
    /// hottest first, and the node's rate becomes the header's value.
    pub fn take(&self) -> Vec<(String, u64)> {
        self.take_at(Instant::now())
    }

    fn take_at(&self, now: Instant) -> Vec<(String, u64)> {
        let mut c = self.lock();
        let secs = now.duration_since(c.since).as_secs_f64().max(0.001);
        c.since = now;
        c.last_rate = (c.total as f64 * 1000.0 / secs) as u64;
        c.total = 0;
        let mut keys: Vec<(String, u64)> = c
            .keys
            .drain()
            .map(|(k, n)| (k, (n as f64 * 1000.0 / secs) as u64))
            .collect();
        drop(c);
        keys.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        keys.truncate(TOP_KEYS);
        keys
    }
}

/// Every [`REPORT_EVERY`], the hottest keys as a `key_loads` entry (an empty
/// one once after keys cooled down, then nothing while idle), until `stopped`.
pub(crate) async fn report(
    client: Pantheon,
    node: String,
    meter: LoadMeter,
    mut stopped: watch::Receiver<bool>,
) {
    let mut reported_any = false;
    loop {
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
            () = tokio::time::sleep(REPORT_EVERY) => {}
        }
        let keys = meter.take();
        if keys.is_empty() && !reported_any {
            continue;
        }
        reported_any = !keys.is_empty();
        if let Err(e) = client.report_key_loads(&node, &keys).await {
            // A lost report only delays balancing until the next one.
            tracing::warn!(%node, error = %e, "could not report key loads");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_the_hottest_keys_as_rates_and_the_node_rate_for_the_header() {
        let meter = LoadMeter::new();
        let t0 = meter.lock().since;
        assert_eq!(meter.header_value(), "0");
        for i in 0..40 {
            for _ in 0..=i {
                meter.hit(&format!("k{i}"));
            }
        }
        let top = meter.take_at(t0 + Duration::from_secs(2));
        assert_eq!(top.len(), TOP_KEYS);
        assert_eq!(top[0], ("k39".to_owned(), 20_000), "40 hits in 2 s = 20/s");
        assert!(top.windows(2).all(|w| w[0].1 >= w[1].1));
        // 1 + 2 + … + 40 = 820 requests in 2 s.
        assert_eq!(meter.header_value(), "410");
        assert!(meter.take_at(t0 + Duration::from_secs(4)).is_empty());
        assert_eq!(meter.header_value(), "0");
    }

    #[test]
    fn distinct_keys_are_bounded() {
        let meter = LoadMeter::new();
        for i in 0..(MAX_COUNTED_KEYS + 10) {
            meter.hit(&format!("k{i}"));
        }
        assert_eq!(meter.lock().keys.len(), MAX_COUNTED_KEYS);
        assert_eq!(meter.lock().total as usize, MAX_COUNTED_KEYS + 10);
    }
}
