//! The health endpoint the prober calls: `GET /health` answers 200 while the process runs.
//! Served by the library, or by the application itself (then the library serves nothing).

use std::net::SocketAddr;

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::WorkerError;

/// Who answers the prober's health checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// The library listens on `listen` and answers `GET /health` with 200. The node joins
    /// with `http://<advertise or the bound address>/health`; set `advertise` (scheme, host
    /// and port, e.g. `http://10.0.0.5:8080`) when the prober must use another address
    /// than the one bound (`0.0.0.0`, a container's port mapping).
    Serve {
        listen: SocketAddr,
        advertise: Option<String>,
    },
    /// The application answers health itself at this full URL; the library serves nothing.
    External { url: String },
}

impl Health {
    /// Serve `GET /health` on `listen`, advertising the bound address.
    pub fn serve(listen: SocketAddr) -> Self {
        Health::Serve {
            listen,
            advertise: None,
        }
    }

    /// The application answers health at `url`.
    pub fn external(url: &str) -> Self {
        Health::External {
            url: url.to_owned(),
        }
    }
}

/// The running endpoint (if the library serves one) and the URL the node joins with.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub(crate) url: String,
    pub(crate) task: Option<JoinHandle<()>>,
}

/// Starts the endpoint for `health`; it stops when `stop` turns true.
pub(crate) async fn start(
    health: &Health,
    meter: Option<crate::LoadMeter>,
    stop: watch::Receiver<bool>,
) -> Result<Endpoint, WorkerError> {
    let (listen, advertise) = match health {
        Health::External { url } => {
            return Ok(Endpoint {
                url: url.clone(),
                task: None,
            });
        }
        Health::Serve { listen, advertise } => (*listen, advertise),
    };
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| WorkerError::Health {
            addr: listen,
            source,
        })?;
    let bound = listener
        .local_addr()
        .map_err(|source| WorkerError::Health {
            addr: listen,
            source,
        })?;
    let base = advertise
        .clone()
        .unwrap_or_else(|| format!("http://{bound}"));
    let app = Router::new().route(
        "/health",
        get(move || {
            let load = meter.as_ref().map(crate::LoadMeter::header_value);
            async move {
                match load {
                    Some(load) => ([(crate::load::HEADER, load)], "ok").into_response(),
                    None => "ok".into_response(),
                }
            }
        }),
    );
    let task = tokio::spawn(async move {
        let mut stop = stop;
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!(error = %e, "the health endpoint stopped");
        }
    });
    Ok(Endpoint {
        url: format!("{}/health", base.trim_end_matches('/')),
        task: Some(task),
    })
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// `GET /health` over a plain TCP connection: the whole answer as text.
    async fn get_health(url: &str) -> String {
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches("/health");
        let mut con = tokio::net::TcpStream::connect(addr).await.unwrap();
        con.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        con.read_to_string(&mut answer).await.unwrap();
        answer.to_ascii_lowercase()
    }

    #[tokio::test]
    async fn the_endpoint_sends_the_meters_load_and_none_without_a_meter() {
        let (_stop_tx, stop) = watch::channel(false);
        let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let meter = crate::LoadMeter::new();
        for _ in 0..10 {
            meter.hit("k");
        }
        let _ = meter.take();
        let metered = start(&Health::serve(listen), Some(meter.clone()), stop.clone())
            .await
            .unwrap();
        let answer = get_health(&metered.url).await;
        assert!(answer.starts_with("http/1.1 200"), "{answer}");
        let header = format!("{}: {}", crate::load::HEADER, meter.header_value());
        assert!(answer.contains(&header), "{answer}");
        assert_ne!(meter.header_value(), "0");

        let plain = start(&Health::serve(listen), None, stop).await.unwrap();
        let answer = get_health(&plain.url).await;
        assert!(answer.starts_with("http/1.1 200"), "{answer}");
        assert!(!answer.contains(crate::load::HEADER), "{answer}");
    }
}
