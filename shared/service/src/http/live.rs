//! `/api/events` (`?cluster=NAME` in a fleet): server-sent events from the cluster's events stream, one per decided
//! fact, so an open dashboard updates within a blocking read's time of the commit.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use pantheon_domain::Event;
use pantheon_store::events;
use pantheon_store::stream::After;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::Shared;
use super::dashboard::PageQuery;

/// How long one blocking read waits before checking that the browser is still there.
const BLOCK: Duration = Duration::from_millis(1000);
/// Events read per XREAD.
const BATCH: usize = 100;

pub async fn events(State(shared): State<Arc<Shared>>, Query(q): Query<PageQuery>) -> Response {
    let Ok(permit) = shared.live_streams.clone().try_acquire_owned() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many live streams\n").into_response();
    };
    let client = match shared.client_for(q.cluster.as_deref()).await {
        Ok(c) => c,
        Err(refused) => return refused,
    };
    let (tx, rx) = mpsc::channel::<Result<SseEvent, Infallible>>(16);
    tokio::spawn(async move {
        let _permit = permit;
        let layout = client.layout().clone();
        let mut after = After::Now;
        let mut failures = 0;
        // One blocking connection per stream, opened again after a failure.
        let mut con = None;
        while !tx.is_closed() {
            if con.is_none() {
                match client.redis().blocking().await {
                    Ok(c) => con = Some(c),
                    Err(e) => {
                        failures += 1;
                        tracing::debug!(error = %e, "live events: cannot connect; retrying");
                        tokio::time::sleep(pantheon_store::handle::backoff(failures)).await;
                        continue;
                    }
                }
            }
            let Some(c) = con.as_mut() else { continue };
            let batch = match events::read_after(c, &layout, after, BATCH, BLOCK).await {
                Ok(batch) => batch,
                Err(e) => {
                    con = None;
                    failures += 1;
                    tracing::debug!(error = %e, "live events: read failed; retrying");
                    tokio::time::sleep(pantheon_store::handle::backoff(failures)).await;
                    continue;
                }
            };
            failures = 0;
            for entry in batch {
                after = After::Id(entry.id);
                let data = match Event::decode(&entry.fields) {
                    Ok(e) => serde_json::json!({
                        "id": entry.id.to_string(),
                        "type": e.kind.name(),
                        "node": e.kind.node().map(|(n, _)| n.to_string()),
                        "summary": pantheon_client::audit::summary(&e),
                    }),
                    Err(_) => serde_json::json!({ "id": entry.id.to_string() }),
                };
                let sse = SseEvent::default()
                    .event("cluster")
                    .id(entry.id.to_string())
                    .data(data.to_string());
                if tx.send(Ok(sse)).await.is_err() {
                    return;
                }
            }
        }
    });
    Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::default())
        .into_response()
}
