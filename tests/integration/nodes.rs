//! Real HTTP worker nodes on loopback whose health endpoint can be told to answer 200, answer
//! 500, answer slowly, hang (accept and never answer), stop (port closed: refused) and come
//! back on the same port, and can report a load (`X-Pantheon-Load`, docs/adr/0018).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Healthy = 0,
    Error = 1,
    Hang = 2,
    Slow = 3,
}

#[derive(Debug, Default)]
struct Shared {
    mode: AtomicU8,
    slow_ms: AtomicU64,
    hits: AtomicU64,
    /// The `X-Pantheon-Load` header of its answers, if any.
    load: Mutex<Option<String>>,
}

pub struct TestNode {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<(CancellationToken, JoinHandle<()>)>,
}

async fn health(State(s): State<Arc<Shared>>) -> Response {
    let load = s.load.lock().unwrap().clone();
    let answer = answer(&s).await;
    match load {
        Some(load) => ([("x-pantheon-load", load)], answer).into_response(),
        None => answer.into_response(),
    }
}

async fn answer(s: &Shared) -> (StatusCode, &'static str) {
    s.hits.fetch_add(1, Ordering::Relaxed);
    match s.mode.load(Ordering::Relaxed) {
        1 => (StatusCode::INTERNAL_SERVER_ERROR, "broken"),
        2 => std::future::pending().await,
        3 => {
            tokio::time::sleep(Duration::from_millis(s.slow_ms.load(Ordering::Relaxed))).await;
            (StatusCode::OK, "ok, slowly")
        }
        _ => (StatusCode::OK, "ok"),
    }
}

impl TestNode {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut node = Self {
            addr,
            shared: Arc::default(),
            stop: None,
        };
        node.serve(listener);
        node
    }

    fn serve(&mut self, listener: TcpListener) {
        let token = CancellationToken::new();
        let app = Router::new()
            .route("/health", get(health))
            .with_state(self.shared.clone());
        let t = token.clone();
        let handle = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(t.cancelled_owned())
                .await;
        });
        self.stop = Some((token, handle));
    }

    pub fn url(&self) -> String {
        format!("http://{}/health", self.addr)
    }

    pub fn set(&self, mode: Mode) {
        self.shared.mode.store(mode as u8, Ordering::Relaxed);
    }

    pub fn set_slow(&self, ms: u64) {
        self.shared.slow_ms.store(ms, Ordering::Relaxed);
        self.set(Mode::Slow);
    }

    /// Sends `X-Pantheon-Load: load` with every answer from now on.
    pub fn set_load(&self, load: &str) {
        *self.shared.load.lock().unwrap() = Some(load.to_owned());
    }

    pub fn hits(&self) -> u64 {
        self.shared.hits.load(Ordering::Relaxed)
    }

    /// Closes the port: probes now get "connection refused".
    pub async fn stop(&mut self) {
        if let Some((token, handle)) = self.stop.take() {
            token.cancel();
            // Hanging requests keep graceful shutdown waiting; the listener is what matters.
            handle.abort();
            let _ = handle.await;
        }
    }

    /// Serves again on the same port.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.set(Mode::Healthy);
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("rebind {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some((token, handle)) = self.stop.take() {
            token.cancel();
            handle.abort();
        }
    }
}
