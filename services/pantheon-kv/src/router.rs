//! `pantheon-kv router`: forwards each `/kv/{key}` request to the key's owner, as the key map
//! says (the committed owner of an assigned key and its token, read in one round trip with
//! [`Pantheon::key_node_with_token`]), with the token in `X-Pantheon-Token`. The first `PUT` of a key assigns
//! it. Through a hand-off gap (a 421, a refused connection, a key without an owner) it locates
//! again and retries with backoff, up to `--retry-ms`, then answers 503 saying why.
//!
//! A hot key's reads are spread over its owner and its read replicas (docs/adr/0018), in
//! turn; a replica that cannot answer (it is no replica any more, or cannot reach the owner)
//! is passed over for the owner in the same attempt. Writes always go to the owner.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use pantheon_client::{NodeId, Pantheon};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{AGE_MS_HEADER, NODE_HEADER, READ_HEADER, REPLICA_OF_HEADER, TOKEN_HEADER};

/// First pause between attempts; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_millis(200);

/// What a router needs to run (the `router` flags, resolved).
#[derive(Debug, Clone)]
pub struct RouterConfig {
    pub listen: SocketAddr,
    pub retry: Duration,
    pub forward_timeout: Duration,
    pub max_value: usize,
}

#[derive(Debug)]
struct Shared {
    client: Pantheon,
    http: reqwest::Client,
    retry: Duration,
    // std Mutex: held only to read or change the map, never across an await.
    bases: Mutex<HashMap<NodeId, String>>,
    /// Turns of hot keys' reads: which holder (the owner, then each replica) is next.
    turn: AtomicUsize,
}

/// Where a key is, as the key map says.
#[derive(Debug)]
enum Located {
    Owner {
        node: NodeId,
        token: Option<u64>,
        replicas: Vec<NodeId>,
    },
    /// Assigned, but no node can own it right now.
    Unowned,
    /// Never assigned (or unassigned).
    Unassigned,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Put,
    /// A read a hot key's replica answers from its copy.
    ReplicaGet,
}

impl Shared {
    async fn locate(&self, key: &str) -> Result<Located, pantheon_client::ClientError> {
        match self.client.key_route(key).await? {
            Some(r) => Ok(Located::Owner {
                node: r.owner,
                token: r.token,
                replicas: r.replicas,
            }),
            None if self.client.is_unowned(key).await? => Ok(Located::Unowned),
            None => Ok(Located::Unassigned),
        }
    }

    /// The node's base URL: its health URL without the `/health` it joined with.
    async fn base(&self, node: &NodeId) -> Result<String, String> {
        let cached = self
            .bases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(node)
            .cloned();
        if let Some(base) = cached {
            return Ok(base);
        }
        let record = self
            .client
            .node_health(node.as_str())
            .await
            .map_err(|e| format!("reading {node}'s record: {e}"))?
            .ok_or_else(|| format!("{node} has no record (it left)"))?;
        let base = crate::base_url(&record.url).to_owned();
        self.bases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(node.clone(), base.clone());
        Ok(base)
    }

    fn forget(&self, node: &NodeId) {
        self.bases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(node);
    }

    /// Sends the request to `node`: `Ok` with its answer, `Err` with why it could not.
    async fn send(
        &self,
        node: &NodeId,
        token: Option<u64>,
        method: Method,
        key: &str,
        body: &Bytes,
    ) -> Result<reqwest::Response, String> {
        let base = self.base(node).await?;
        let url = crate::kv_url(&base, key);
        let mut req = match method {
            Method::Get => self.http.get(&url),
            Method::Put => self.http.put(&url).body(body.clone()),
            Method::ReplicaGet => self.http.get(&url).header(READ_HEADER, "replica"),
        };
        if let Some(t) = token {
            req = req.header(TOKEN_HEADER, t);
        }
        req.send().await.map_err(|e| {
            // The node may have moved (a re-join at another address): read its record again.
            self.forget(node);
            format!("{node} at {base}: {}", error_chain(&e))
        })
    }

    /// Locates, forwards and retries until an owner answers or the retry time is spent.
    async fn forward(&self, method: Method, key: &str, body: Bytes) -> Response {
        let started = Instant::now();
        let deadline = started + self.retry;
        let mut backoff = FIRST_BACKOFF;
        let mut assigned = false;
        let mut attempts = 0u32;
        let mut why;
        loop {
            attempts += 1;
            match self.locate(key).await {
                Ok(Located::Owner {
                    node,
                    token,
                    replicas,
                }) => {
                    if method == Method::Get
                        && let Some(answer) = self.ask_replica(&replicas, key).await
                    {
                        return answer;
                    }
                    match self.send(&node, token, method, key, &body).await {
                        Ok(resp) if resp.status() == StatusCode::MISDIRECTED_REQUEST => {
                            let text = resp.text().await.unwrap_or_default();
                            why = format!("{node} answered 421 ({text})");
                        }
                        Ok(resp) => return relay(resp).await,
                        Err(e) => why = e,
                    }
                }
                Ok(Located::Unassigned) if method == Method::Get => {
                    return (StatusCode::NOT_FOUND, "no such key (never assigned)\n")
                        .into_response();
                }
                Ok(Located::Unassigned) if !assigned => {
                    // The first PUT assigns the key (assigning an assigned key changes nothing,
                    // so two routers racing here are harmless); its owner learns of it from
                    // its feed, and the 421s until then are retried like any gap.
                    assigned = true;
                    match self.assign(key, deadline).await {
                        Ok(()) => continue,
                        Err(e) => why = e,
                    }
                }
                Ok(Located::Unassigned) => why = "the key was unassigned meanwhile".into(),
                Ok(Located::Unowned) => why = "no node can own the key right now".into(),
                Err(e) => why = format!("locating the key: {e}"),
            }
            let now = Instant::now();
            if now + backoff > deadline {
                tracing::warn!(key, attempts, "no owner answered: {why}");
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "no owner of {key:?} answered within {:?} ({attempts} attempts); last: {why}\n",
                        self.retry
                    ),
                )
                    .into_response();
            }
            tracing::debug!(key, attempts, "retrying in {backoff:?}: {why}");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// A replica's answer to a read of a hot key, when it is a replica's turn and it answers
    /// with the value (or that there is none); `None`: the owner's turn, or the replica could
    /// not answer (it is logged, and the owner is asked).
    async fn ask_replica(&self, replicas: &[NodeId], key: &str) -> Option<Response> {
        if replicas.is_empty() {
            return None;
        }
        let turn = self.turn.fetch_add(1, Ordering::Relaxed) % (replicas.len() + 1);
        let replica = replicas.get(turn.checked_sub(1)?)?;
        match self
            .send(replica, None, Method::ReplicaGet, key, &Bytes::new())
            .await
        {
            Ok(resp) if matches!(resp.status(), StatusCode::OK | StatusCode::NOT_FOUND) => {
                Some(relay(resp).await)
            }
            Ok(resp) => {
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                tracing::debug!(key, %replica, %status, "replica passed over: {}", text.trim());
                None
            }
            Err(e) => {
                tracing::debug!(key, %replica, "replica passed over: {e}");
                None
            }
        }
    }

    async fn assign(&self, key: &str, deadline: Instant) -> Result<(), String> {
        let ids = self
            .client
            .distribute([key])
            .await
            .map_err(|e| format!("assigning the key: {e}"))?;
        if let Some(last) = ids.last() {
            let wait = deadline.saturating_duration_since(Instant::now());
            self.client
                .wait_applied(*last, wait)
                .await
                .map_err(|e| format!("assigning the key: {e}"))?;
        }
        Ok(())
    }
}

/// An error with its causes on one line (reqwest's own message hides "connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        line.push_str(": ");
        line.push_str(&s.to_string());
        source = s.source();
    }
    line
}

/// The worker's answer as the router's: status, the node, token and replica headers, the body.
async fn relay(resp: reqwest::Response) -> Response {
    let status = resp.status();
    let mut headers = HeaderMap::new();
    for name in [NODE_HEADER, TOKEN_HEADER, REPLICA_OF_HEADER, AGE_MS_HEADER] {
        if let Some(v) = resp.headers().get(name) {
            headers.insert(name, v.clone());
        }
    }
    match resp.bytes().await {
        Ok(body) => (status, headers, body).into_response(),
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            format!("the owner's answer broke off: {}\n", error_chain(&e)),
        )
            .into_response(),
    }
}

async fn get_value(State(s): State<Arc<Shared>>, Path(key): Path<String>) -> Response {
    s.forward(Method::Get, &key, Bytes::new()).await
}

async fn put_value(State(s): State<Arc<Shared>>, Path(key): Path<String>, body: Bytes) -> Response {
    s.forward(Method::Put, &key, body).await
}

fn app(shared: Arc<Shared>, max_value: usize) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/kv/{key}", get(get_value).put(put_value))
        .layer(DefaultBodyLimit::max(max_value))
        .with_state(shared)
}

/// Runs a router until `shutdown` is cancelled.
pub async fn run(
    client: Pantheon,
    config: RouterConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let bound = listener.local_addr().context("the bound address")?;
    let http = reqwest::Client::builder()
        .timeout(config.forward_timeout)
        .connect_timeout(config.forward_timeout)
        .build()
        .context("the HTTP client")?;
    let shared = Arc::new(Shared {
        client,
        http,
        retry: config.retry,
        bases: Mutex::new(HashMap::new()),
        turn: AtomicUsize::new(0),
    });
    tracing::info!("routing /kv on {bound}");
    println!("pantheon-kv router serving on http://{bound}");
    axum::serve(listener, app(shared, config.max_value))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("the HTTP server stopped")?;
    Ok(())
}
