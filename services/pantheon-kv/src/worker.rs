//! `pantheon-kv worker`: serves `/kv/{key}` and `/health` on one listener, joins the cluster
//! with that health URL through [`pantheon_worker::Worker`] (the application answers health,
//! [`Health::External`]), keeps the values of its keys in [`Values`], and refuses keys it does
//! not own, or owns with a token that does not match the request's (the rule in the crate
//! docs). On SIGTERM it drains, hands each key over with its value, leaves, and stops.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use pantheon_worker::{Health, LoadMeter, NodeId, OwnedKeys, Pantheon, Replicas, Worker};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::rule::{self, Confirmed, First};
use crate::values::Values;
use crate::{AGE_MS_HEADER, FEED_FRESH, NODE_HEADER, READ_HEADER, REPLICA_OF_HEADER, TOKEN_HEADER};

/// How long a replica waits for the owner's value before it refuses the read (the router then
/// asks the owner itself).
const REPLICA_FETCH_TIMEOUT: Duration = Duration::from_secs(1);

/// What a worker needs to run (the `worker` flags, resolved).
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub node: String,
    pub listen: SocketAddr,
    pub advertise: Option<String>,
    pub weight: Option<u32>,
    pub state_file: PathBuf,
    pub max_value: usize,
    pub leave_timeout: Duration,
}

/// What the request handlers share.
#[derive(Debug)]
struct Shared {
    node: String,
    client: Pantheon,
    values: Values,
    /// Set once the worker has joined; until then nothing is owned.
    owned: OnceLock<OwnedKeys>,
    // std Mutex: held only to copy or set two numbers.
    confirmed: Mutex<Option<Confirmed>>,
    /// Requests per key: the hottest go to the log, the node's rate to the prober in
    /// `X-Pantheon-Load` (docs/adr/0018).
    meter: LoadMeter,
    /// The copies of hot keys this node is a read replica of.
    replicas: Replicas<Bytes>,
    /// Fetches those copies from their owners.
    http: reqwest::Client,
}

/// Why a request is refused (421), with the token this node holds the key with (0: none).
#[derive(Debug)]
struct Refusal {
    mine: u64,
    reason: String,
}

impl Shared {
    fn owns(&self, key: &str) -> Option<u64> {
        self.owned.get().and_then(|o| o.owns(key))
    }

    /// The token rule of the crate docs ([`rule`]), on a current feed: `Ok(mine)` when this
    /// node may serve `key` for a request carrying `request`.
    async fn admit(&self, key: &str, request: Option<u64>) -> Result<u64, Refusal> {
        let mine = self.by_token(key, request).await?;
        // Last, so that refusals cost no read: a worker that was paused or cut off from Redis
        // may hold a key that a death or a forced hand-off moved meanwhile, with the very
        // token the request carries.
        let owned = self.owned.get().ok_or_else(|| Refusal {
            mine: 0,
            reason: format!("{} has not joined yet", self.node),
        })?;
        let behind = |reason: String| Refusal { mine, reason };
        match owned.current_within(FEED_FRESH).await {
            Ok(true) => Ok(mine),
            Ok(false) => Err(behind(format!(
                "feed behind: {} has not read its feed within {FEED_FRESH:?} (paused, or cut \
                 off from Redis), so the key may have moved; locate it again",
                self.node
            ))),
            Err(e) => Err(behind(format!("cannot check this node's feed: {e}"))),
        }
    }

    /// Rules 1 to 4 of the crate docs.
    async fn by_token(&self, key: &str, request: Option<u64>) -> Result<u64, Refusal> {
        let known = *self
            .confirmed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (mine, req) = match rule::first(&self.node, self.owns(key), request, known) {
            First::Serve(mine) => return Ok(mine),
            First::Refuse { mine, reason } => return Err(Refusal { mine, reason }),
            First::CheckRecord { mine, req } => (mine, req),
        };
        let record = self
            .client
            .node_health(&self.node)
            .await
            .map_err(|e| Refusal {
                mine,
                reason: format!("cannot check this node's token: {e}"),
            })?;
        let member = record
            .filter(|r| matches!(r.state.as_str(), "alive" | "suspect") || r.held)
            .map(|r| r.token);
        rule::after_record(&self.node, mine, member).map_err(|reason| Refusal { mine, reason })?;
        if let Some(node_token) = member {
            // Only the floor rose: remember it, so the next requests need no Redis read.
            let mut known = self
                .confirmed
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            *known = Some(rule::remember(*known, req, node_token));
        }
        Ok(mine)
    }

    /// An answer with the node and token headers.
    fn answer(&self, status: StatusCode, mine: u64, body: impl Into<Bytes>) -> Response {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&self.node) {
            headers.insert(NODE_HEADER, v);
        }
        headers.insert(TOKEN_HEADER, HeaderValue::from(mine));
        (status, headers, body.into()).into_response()
    }

    /// An answer whose body is a message for people, not a value.
    fn message(&self, status: StatusCode, mine: u64, text: impl Into<String>) -> Response {
        let mut resp = self.answer(status, mine, format!("{}\n", text.into()));
        resp.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        resp
    }

    fn refuse(&self, r: Refusal) -> Response {
        self.message(StatusCode::MISDIRECTED_REQUEST, r.mine, r.reason)
    }

    /// A read of `key` answered as its read replica (the crate docs, "Hot keys"): 421 when
    /// this node is none, or cannot get the value from the owner.
    async fn replica_read(&self, key: &str) -> Response {
        let read = self
            .replicas
            .read(key, |owner, token| self.fetch_from(owner, token, key))
            .await;
        let read = match read {
            Ok(read) => read,
            Err(e) => {
                return self.refuse(Refusal {
                    mine: 0,
                    reason: e.to_string(),
                });
            }
        };
        let mut resp = match read.value {
            Some(v) => self.answer(StatusCode::OK, 0, v),
            None => self.message(StatusCode::NOT_FOUND, 0, "no value"),
        };
        let headers = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(read.owner.as_str()) {
            headers.insert(REPLICA_OF_HEADER, v);
        }
        let age_ms = u64::try_from(read.age.as_millis()).unwrap_or(u64::MAX);
        headers.insert(AGE_MS_HEADER, HeaderValue::from(age_ms));
        resp
    }

    /// The owner's value of `key`, asked with the owner's token.
    async fn fetch_from(
        &self,
        owner: NodeId,
        token: Option<u64>,
        key: &str,
    ) -> Result<Option<Bytes>, String> {
        let record = self
            .client
            .node_health(owner.as_str())
            .await
            .map_err(|e| format!("reading {owner}'s record: {e}"))?
            .ok_or_else(|| format!("{owner} has no record (it left)"))?;
        let url = crate::kv_url(crate::base_url(&record.url), key);
        let mut req = self.http.get(&url);
        if let Some(t) = token {
            req = req.header(TOKEN_HEADER, t);
        }
        let resp = req.send().await.map_err(|e| format!("{url}: {e}"))?;
        match resp.status() {
            StatusCode::OK => resp
                .bytes()
                .await
                .map(Some)
                .map_err(|e| format!("{url}: {e}")),
            StatusCode::NOT_FOUND => Ok(None),
            status => {
                let text = resp.text().await.unwrap_or_default();
                Err(format!("{owner} answered {status}: {}", text.trim()))
            }
        }
    }
}

/// Whether the request asks for a read replica's answer (`X-Pantheon-Read: replica`).
fn wants_replica(headers: &HeaderMap) -> bool {
    headers
        .get(READ_HEADER)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"replica"))
}

/// The request's `X-Pantheon-Token`, if any (`Err`: present but not a number).
fn request_token(headers: &HeaderMap) -> Result<Option<u64>, String> {
    match headers.get(TOKEN_HEADER) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| format!("{TOKEN_HEADER} must be a number, got {v:?}")),
    }
}

async fn get_value(
    State(s): State<Arc<Shared>>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    s.meter.hit(&key);
    let request = match request_token(&headers) {
        Ok(t) => t,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    if wants_replica(&headers) && s.owns(&key).is_none() {
        return s.replica_read(&key).await;
    }
    let mine = match s.admit(&key, request).await {
        Ok(mine) => mine,
        Err(r) => return s.refuse(r),
    };
    let value = {
        let inner = s.values.lock();
        // Checked again under the lock the release takes: the key may have gone meanwhile.
        if s.owns(&key) != Some(mine) {
            None
        } else {
            Some(inner.get(&key))
        }
    };
    match value {
        None => s.refuse(Refusal {
            mine: s.owns(&key).unwrap_or(0),
            reason: "the key's ownership changed during the request".into(),
        }),
        Some(Some(v)) => s.answer(StatusCode::OK, mine, v),
        Some(None) => s.message(StatusCode::NOT_FOUND, mine, "no value"),
    }
}

async fn put_value(
    State(s): State<Arc<Shared>>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    s.meter.hit(&key);
    let request = match request_token(&headers) {
        Ok(t) => t,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    let mine = match s.admit(&key, request).await {
        Ok(mine) => mine,
        Err(r) => return s.refuse(r),
    };
    let stored = {
        let mut inner = s.values.lock();
        let still = s.owns(&key) == Some(mine);
        if still {
            inner.put(&key, body);
        }
        still
    };
    if stored {
        s.answer(StatusCode::NO_CONTENT, mine, Bytes::new())
    } else {
        s.refuse(Refusal {
            mine: s.owns(&key).unwrap_or(0),
            reason: "the key's ownership changed during the request".into(),
        })
    }
}

/// 200 while the process runs, with this node's request rate for the prober.
async fn health(State(s): State<Arc<Shared>>) -> Response {
    (
        [(pantheon_worker::load::HEADER, s.meter.header_value())],
        "ok",
    )
        .into_response()
}

fn app(shared: Arc<Shared>, max_value: usize) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/kv/{key}", get(get_value).put(put_value))
        .layer(DefaultBodyLimit::max(max_value))
        .with_state(shared)
}

/// Runs a worker until `shutdown` is cancelled, then hands its keys off, leaves and stops.
pub async fn run(
    client: Pantheon,
    config: WorkerConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let bound = listener.local_addr().context("the bound address")?;
    let base = config
        .advertise
        .clone()
        .unwrap_or_else(|| format!("http://{bound}"));
    let health_url = format!("{}/health", base.trim_end_matches('/'));
    let values = Values::new(config.max_value);
    let node = NodeId::new(&config.node).with_context(|| format!("node id {:?}", config.node))?;
    let http = reqwest::Client::builder()
        .timeout(REPLICA_FETCH_TIMEOUT)
        .build()
        .context("the HTTP client")?;
    let shared = Arc::new(Shared {
        node: config.node.clone(),
        client: client.clone(),
        values: values.clone(),
        owned: OnceLock::new(),
        confirmed: Mutex::new(None),
        meter: LoadMeter::new(),
        replicas: Replicas::new(client.clone(), node),
        http,
    });
    // Serve before joining: the first probe comes right after the join.
    let stop_http = CancellationToken::new();
    let server = tokio::spawn(
        axum::serve(listener, app(shared.clone(), config.max_value))
            .with_graceful_shutdown(stop_http.clone().cancelled_owned())
            .into_future(),
    );
    let mut builder = Worker::builder(client, &config.node, &config.state_file)
        .health(Health::external(&health_url))
        .load_meter(shared.meter.clone());
    if let Some(w) = config.weight {
        builder = builder.weight(w);
    }
    let worker = tokio::select! {
        w = builder.start(values.clone()) => w.with_context(|| format!("node {} could not join", config.node))?,
        () = shutdown.cancelled() => {
            stop_http.cancel();
            return Ok(());
        }
    };
    let _ = shared.owned.set(worker.owned_keys());
    tracing::info!(node = %config.node, %health_url, "joined; serving /kv on {bound}");
    println!("pantheon-kv worker {} serving on {base}", config.node);

    let mut server = server;
    let served = tokio::select! {
        () = shutdown.cancelled() => None,
        r = &mut server => Some(r),
    };
    if let Some(r) = served {
        let _ = worker.shutdown().await;
        r.context("the HTTP server task")?
            .context("the HTTP server stopped")?;
        anyhow::bail!("the HTTP server stopped");
    }

    // Hand every key over with its value (drain, hand-offs, leave), still serving what it
    // owns meanwhile; then stop serving.
    let node = worker.node().to_owned();
    tracing::info!(%node, keys = worker.held(), "handing off and leaving");
    let handed = worker.graceful_shutdown(config.leave_timeout).await;
    stop_http.cancel();
    if tokio::time::timeout(Duration::from_secs(2), server)
        .await
        .is_err()
    {
        tracing::warn!("the HTTP server did not stop within 2 s");
    }
    handed.with_context(|| format!("node {node} could not hand off and leave"))?;
    tracing::info!(%node, "stopped");
    Ok(())
}
