//! A demo worker node: a real HTTP server on 127.0.0.1 whose `/health` answers 200, which
//! can be stopped (its port then refuses connections, as when the process dies) and
//! restarted on the same port.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// One demo node.
#[derive(Debug)]
pub struct DemoNode {
    pub name: String,
    pub addr: SocketAddr,
    serving: Option<(CancellationToken, JoinHandle<()>)>,
}

impl DemoNode {
    /// Starts serving on a free port of 127.0.0.1.
    pub async fn start(name: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let mut node = Self {
            name: name.to_owned(),
            addr: listener.local_addr()?,
            serving: None,
        };
        node.serve(listener);
        Ok(node)
    }

    fn serve(&mut self, listener: TcpListener) {
        let token = CancellationToken::new();
        let body = format!("{} ok\n", self.name);
        let app = Router::new().route("/health", get(move || async move { body }));
        let stop = token.clone();
        let handle = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
        });
        self.serving = Some((token, handle));
    }

    /// The health URL the node joins with.
    pub fn url(&self) -> String {
        format!("http://{}/health", self.addr)
    }

    /// Closes the port: probes now get "connection refused".
    pub async fn stop(&mut self) {
        if let Some((token, handle)) = self.serving.take() {
            token.cancel();
            // Open keep-alive connections would hold a graceful shutdown: the listener is
            // what matters, so abort.
            handle.abort();
            let _ = handle.await;
        }
    }

    /// Serves again on the same port.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await;
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 100 => {
                    tries += 1;
                    tracing::debug!(error = %e, "port not free yet");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => anyhow::bail!("cannot listen on {} again: {e}", self.addr),
            }
        };
        self.serve(listener);
        Ok(())
    }
}

impl Drop for DemoNode {
    fn drop(&mut self) {
        if let Some((token, handle)) = self.serving.take() {
            token.cancel();
            handle.abort();
        }
    }
}
