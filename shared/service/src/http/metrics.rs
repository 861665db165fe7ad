//! `/metrics`: the Prometheus text format. The cluster's gauges are read from Redis at
//! scrape time, the process's counters come from [`pantheon_metrics`]. Labels are bounded:
//! node states, outcomes, reasons, consumer-group names; never a node id or a key.
//!
//! The read is [`Pantheon::status`](pantheon_client::Pantheon::status) without what only the
//! dashboard's table needs (keys per node, one `SCARD` each; ring shares): at 10,000 nodes
//! that roughly halves a scrape's CPU (docs/benchmarks.md, "Observability").

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use pantheon_client::Pantheon;
use pantheon_client::status::NODE_STATES;
use pantheon_store::monitor::{self, GroupLag, Progress};
use pantheon_store::{StoreError, probers, readmodel};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::Shared;

/// The Prometheus text format (prometheus-client writes the OpenMetrics flavour of it).
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabel {
    node: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabel {
    group: String,
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let g: Gauge = Gauge::default();
    g.set(value);
    registry.register(name, help, g);
}

fn float_gauge(registry: &mut Registry, name: &str, help: &str, value: f64) {
    let g: Gauge<f64, std::sync::atomic::AtomicU64> = Gauge::default();
    g.set(value);
    registry.register(name, help, g);
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The cluster's values that `/metrics` shows.
#[derive(Debug)]
struct ClusterGauges {
    /// Nodes per state, every state of [`NODE_STATES`] included.
    states: BTreeMap<String, u64>,
    owned_keys: u64,
    unowned_keys: u64,
    ring_version: u64,
    progress: Progress,
    lag_seconds: f64,
    probers: usize,
    event_groups: Vec<GroupLag>,
    /// Loads of the members that report one (ADR 0018), in the cluster's unit per second.
    loads: BTreeMap<String, f64>,
}

/// Reads [`ClusterGauges`]: the node records (one `HGETALL`; a record that does not parse is
/// left out of the counts), the key totals, the projector's progress, the prober registry
/// and the events' consumer groups.
async fn read_cluster(client: &Pantheon) -> Result<ClusterGauges, StoreError> {
    let mut con = client.redis().clone();
    let layout = client.layout();
    let records = readmodel::node_records(&mut con, layout).await?;
    let totals = readmodel::key_totals(&mut con, layout).await?;
    let progress = monitor::progress(&mut con, layout).await?;
    let event_groups = monitor::event_groups(&mut con, layout).await?;
    let registry = probers::read(&mut con, layout).await?;
    let mut states: BTreeMap<String, u64> =
        NODE_STATES.iter().map(|s| ((*s).to_owned(), 0)).collect();
    let mut damaged = 0;
    let loads = readmodel::node_loads(&mut con, layout)
        .await?
        .into_iter()
        .map(|(node, load)| (node, load as f64 / 1000.0))
        .collect();
    for record in &records {
        match record {
            Ok((_, r)) => {
                *states.entry(r.state.clone()).or_default() += 1;
            }
            Err(_) => damaged += 1,
        }
    }
    if damaged > 0 {
        tracing::debug!(
            damaged,
            "metrics: node records that do not parse are not counted"
        );
    }
    let lag_ms = match (progress.log_last, progress.applied_last) {
        (Some(last), Some(applied)) if progress.lag_entries > 0 => {
            last.ms.saturating_sub(applied.ms)
        }
        _ => 0,
    };
    Ok(ClusterGauges {
        states,
        owned_keys: totals.owned,
        unowned_keys: totals.unowned,
        ring_version: totals.ring_version,
        progress,
        lag_seconds: lag_ms as f64 / 1000.0,
        probers: registry.live().len(),
        event_groups,
        loads,
    })
}

/// Registers the cluster's gauges from one read.
fn register_cluster(registry: &mut Registry, s: &ClusterGauges) {
    let nodes = Family::<StateLabel, Gauge>::default();
    for (state, n) in &s.states {
        nodes
            .get_or_create(&StateLabel {
                state: state.clone(),
            })
            .set(int(*n));
    }
    registry.register("pantheon_nodes", "Nodes by state", nodes);
    let p = &s.progress;
    gauge(
        registry,
        "pantheon_log_lag_entries",
        "Log entries the projector has not applied yet",
        int(p.lag_entries),
    );
    float_gauge(
        registry,
        "pantheon_log_lag_seconds",
        "How much older the last applied log entry is than the newest one",
        s.lag_seconds,
    );
    gauge(
        registry,
        "pantheon_lease_held",
        "1 while some projector holds the cluster's lease",
        i64::from(p.lease_held),
    );
    gauge(
        registry,
        "pantheon_fence",
        "The lease's fence: bumped at every change of leader",
        int(p.fence),
    );
    gauge(
        registry,
        "pantheon_prober_replicas",
        "Live prober replicas",
        i64::try_from(s.probers).unwrap_or(i64::MAX),
    );
    let keys = Family::<StateLabel, Gauge>::default();
    keys.get_or_create(&StateLabel {
        state: "owned".into(),
    })
    .set(int(s.owned_keys));
    keys.get_or_create(&StateLabel {
        state: "unowned".into(),
    })
    .set(int(s.unowned_keys));
    registry.register(
        "pantheon_keys",
        "Assigned keys, owned or without an owner",
        keys,
    );
    gauge(
        registry,
        "pantheon_ring_version",
        "Bumped at every change of the ring",
        int(s.ring_version),
    );
    if !s.loads.is_empty() {
        let loads = Family::<NodeLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        for (node, load) in &s.loads {
            loads
                .get_or_create(&NodeLabel { node: node.clone() })
                .set(*load);
        }
        registry.register(
            "pantheon_node_load",
            "Each node's reported load, in the cluster's unit per second (nodes that report one)",
            loads,
        );
        let mean = s.loads.values().sum::<f64>() / s.loads.len() as f64;
        let busiest = s.loads.values().copied().fold(0.0, f64::max);
        float_gauge(
            registry,
            "pantheon_load_busiest_ratio",
            "The busiest node's load over the mean load (1 is perfectly even)",
            if mean > 0.0 { busiest / mean } else { 1.0 },
        );
    }
    let lag = Family::<GroupLabel, Gauge>::default();
    let pending = Family::<GroupLabel, Gauge>::default();
    for g in &s.event_groups {
        let label = GroupLabel {
            group: g.name.clone(),
        };
        if let Some(l) = g.lag {
            lag.get_or_create(&label).set(int(l));
        }
        pending.get_or_create(&label).set(int(g.pending));
    }
    registry.register(
        "pantheon_events_group_lag_entries",
        "Events not yet delivered to each consumer group",
        lag,
    );
    registry.register(
        "pantheon_events_group_pending_entries",
        "Events delivered to each consumer group and not yet acknowledged",
        pending,
    );
}

/// Renders the whole exposition; Redis trouble is a gauge (`pantheon_redis_up 0`), not a
/// failed scrape, so the process's own counters are still collected.
pub async fn render(shared: &Shared) -> String {
    let mut registry = Registry::default();
    pantheon_metrics::process().register(&mut registry);
    let status = match shared.client().await {
        Ok(client) => read_cluster(&client).await.map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    match &status {
        Ok(s) => register_cluster(&mut registry, s),
        Err(e) => tracing::debug!(error = %e, "metrics: cannot read the cluster status"),
    }
    gauge(
        &mut registry,
        "pantheon_redis_up",
        "1 when the last scrape read the cluster from Redis",
        i64::from(status.is_ok()),
    );
    let mut text = String::new();
    if let Err(e) = encode(&mut text, &registry) {
        tracing::warn!(error = %e, "metrics: cannot encode");
    }
    text
}

pub async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let text = render(&shared).await;
    (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}
