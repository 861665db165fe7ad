//! What Pantheon's service binaries (`pantheon up`, `pantheon-projector`, `pantheon-prober`)
//! share:
//!
//! * [`http`] — the HTTP endpoint: `/healthz`, `/readyz`, `/metrics` and the live dashboard;
//! * [`fleet`] — many clusters served by a fleet of processes, split by rendezvous hashing
//!   (ADR 0010);
//! * `lib.rs` — the generic service main (`serve_service`, `serve`: start, supervise, drain),
//!   signals → a shutdown token, and logging set-up (text or JSON).

pub mod fleet;
pub mod http;

use std::time::Duration;

use pantheon_config::{LogFormat, Settings};

use tokio_util::sync::CancellationToken;
use tracing::info;

/// A token cancelled on the first SIGTERM or SIGINT. A second signal exits at once, for the
/// operator whose graceful shutdown is taking too long.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutting down (send the signal again to exit at once)");
        cancel.cancel();
        wait_for_signal().await;
        std::process::exit(130);
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

/// Logs to stderr as text; `RUST_LOG` overrides `default` (e.g. `info`, `pantheon=debug`).
pub fn init_logging(default: &str) {
    init_logging_as(default, LogFormat::Text);
}

/// Logs to stderr in `format` (JSON: one object per line, for log shippers). Text is
/// coloured only when stderr is a terminal and `NO_COLOR` is not set.
pub fn init_logging_as(default: &str, format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let ansi = colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Whether log lines carry ANSI colour codes: only for a person at a terminal. In a file or a
/// pipe (a log shipper, `grep`) the codes are noise. `NO_COLOR` set to anything but the empty
/// string turns colour off (https://no-color.org).
fn colour(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Starts the HTTP endpoint if `[http] listen` is set; `projector` says whether this process
/// runs one (for `/readyz`). Returns the bound address.
pub async fn start_http(
    settings: &Settings,
    projector: bool,
    shutdown: &CancellationToken,
) -> Result<Option<std::net::SocketAddr>, String> {
    let Some(addr) = settings.http_listen().map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let config = http::HttpConfig {
        deployment: settings.deployment().map_err(|e| e.to_string())?,
        cluster: settings.cluster.clone(),
        prefix: settings.prefix.clone(),
        projector,
    };
    let (bound, _task) = http::spawn(addr, config, shutdown.clone())
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    Ok(Some(bound))
}

/// The whole `main` of a stand-alone service binary with its settings: logging in the
/// configured format, the HTTP endpoint if configured, then [`serve`].
pub async fn serve_service<C, E, F, R>(
    name: &str,
    loaded: Result<pantheon_config::Loaded, pantheon_config::ConfigError>,
    config: impl Fn(&Settings) -> Result<C, pantheon_config::ConfigError>
    + Clone
    + Send
    + Sync
    + 'static,
    projector: bool,
    run: R,
) -> std::process::ExitCode
where
    R: Fn(C, CancellationToken) -> F + Clone + Send + 'static,
    C: Clone + Send + Sync + 'static,
    F: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display,
{
    let settings = loaded.map(|l| l.settings);
    let format = settings
        .as_ref()
        .ok()
        .and_then(|s| s.log_format().ok())
        .unwrap_or_default();
    init_logging_as("info", format);
    let settings = match settings {
        Ok(s) => s,
        Err(e) => return serve(name, Err::<C, _>(e), run).await,
    };
    if !settings.clusters.is_empty() {
        return serve_fleet(name, &settings, config, projector, run).await;
    }
    let config = config(&settings);
    if config.is_ok() {
        // The endpoint shares the service's shutdown: `serve` below makes the token.
        let shutdown = shutdown_on_signals();
        if let Err(e) = start_http(&settings, projector, &shutdown).await {
            eprintln!("{name}: {e}");
            return std::process::ExitCode::from(64);
        }
        return serve_with(name, config, run, shutdown).await;
    }
    serve(name, config, run).await
}

/// [`serve_service`] with `clusters` set: this process serves its share of them
/// ([`fleet::serve`]), splitting them with the other processes of its kind.
async fn serve_fleet<C, E, F, R>(
    name: &str,
    settings: &Settings,
    config: impl Fn(&Settings) -> Result<C, pantheon_config::ConfigError>
    + Clone
    + Send
    + Sync
    + 'static,
    projector: bool,
    run: R,
) -> std::process::ExitCode
where
    R: Fn(C, CancellationToken) -> F + Clone + Send + 'static,
    C: Clone + Send + Sync + 'static,
    F: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display,
{
    let usage = |e: &dyn std::fmt::Display| {
        eprintln!("{name}: {}", one_line(e));
        std::process::ExitCode::from(64)
    };
    let clusters = match settings.served_clusters() {
        Ok(c) => c,
        Err(e) => return usage(&e),
    };
    let patterns = match settings.cluster_patterns() {
        Ok(p) => p,
        Err(e) => return usage(&e),
    };
    // Check the settings once with the first cluster; each cluster's are made when it is
    // first led (clusters found by a pattern appear later).
    let for_cluster = {
        let base = settings.clone();
        move |cluster: &str| base.for_cluster(cluster)
    };
    if let Some(first) = clusters.first()
        && let Err(e) = config(&for_cluster(first))
    {
        return usage(&e);
    }
    let (role, id, ttl) = if projector {
        match settings.projector_config() {
            Ok(p) => ("projector", p.instance, p.lease_ttl),
            Err(e) => return usage(&e),
        }
    } else {
        match settings.prober_config() {
            Ok(p) => ("prober", p.id, p.registration_ttl),
            Err(e) => return usage(&e),
        }
    };
    let deployment = match settings.deployment() {
        Ok(d) => d,
        Err(e) => return usage(&e),
    };
    let shutdown = shutdown_on_signals();
    if let Err(e) = start_http(settings, projector, &shutdown).await {
        return usage(&e);
    }
    let mut fleet_config =
        fleet::FleetConfig::new(&id, role, &settings.prefix, clusters).timed(ttl);
    fleet_config.patterns = patterns;
    info!(id, role, "serving a share of the clusters");
    let work = move |cluster: String, token: CancellationToken| {
        let (config, run) = (config.clone(), run.clone());
        let one = for_cluster(&cluster);
        async move {
            let c = config(&one).map_err(|e| e.to_string())?;
            run(c, token).await.map_err(|e| e.to_string())
        }
    };
    let redis = pantheon_store::Redis::new(deployment, pantheon_store::fleet::TAG);
    fleet::serve(redis, fleet_config, work, shutdown, STOP_DEADLINE).await;
    std::process::ExitCode::SUCCESS
}

/// The whole `main` of a stand-alone service binary: logging, the configuration (a bad one
/// exits 64, like the CLI's usage errors, with its reason on one line), a shutdown token
/// cancelled by SIGTERM/SIGINT, then `run`; an error from it exits 1.
pub async fn serve<C, B, E, F>(
    name: &str,
    config: Result<C, B>,
    run: impl FnOnce(C, CancellationToken) -> F,
) -> std::process::ExitCode
where
    B: std::fmt::Display,
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    init_logging("info");
    if let Err(e) = &config {
        eprintln!("{name}: {}", one_line(e));
        return std::process::ExitCode::from(64);
    }
    serve_with(name, config, run, shutdown_on_signals()).await
}

async fn serve_with<C, B, E, F>(
    name: &str,
    config: Result<C, B>,
    run: impl FnOnce(C, CancellationToken) -> F,
    shutdown: CancellationToken,
) -> std::process::ExitCode
where
    B: std::fmt::Display,
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{name}: {}", one_line(&e));
            return std::process::ExitCode::from(64);
        }
    };
    // Shutdown has a deadline even while Redis hangs: a command in flight could otherwise
    // wait out its response timeout.
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(STOP_DEADLINE).await;
    };
    tokio::select! {
        result = run(config, shutdown.clone()) => match result {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{name}: {e}");
                std::process::ExitCode::FAILURE
            }
        },
        _ = deadline => {
            eprintln!("{name}: did not stop within {STOP_DEADLINE:?} of the signal (is Redis answering?); stopped anyway");
            std::process::ExitCode::FAILURE
        }
    }
}

/// How long a service may take to stop after SIGTERM/SIGINT.
pub const STOP_DEADLINE: Duration = Duration::from_secs(10);

/// A message on one line (a TOML syntax error quotes the offending lines).
fn one_line(e: &(impl std::fmt::Display + ?Sized)) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Waits for `task` to end, at most `grace`; returns false if it had to be abandoned.
pub async fn drain<F: std::future::Future>(task: F, grace: Duration) -> bool {
    tokio::time::timeout(grace, task).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::colour;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some(OsStr::new(""))));
        assert!(!colour(true, Some(OsStr::new("1"))));
        assert!(!colour(false, None));
    }
}
